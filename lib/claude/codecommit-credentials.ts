import { createHash } from 'node:crypto';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity } from '@smithy/types';
import type { CodeCommitRepository } from '../sessions/codecommit-url.js';

// AWS CodeCommit's https git access with IAM credentials: a username and a SigV4 password for
// the repository's path, as `aws codecommit credential-helper` (awscli/customizations/codecommit.py)
// and git-remote-codecommit compute them. The password is good for minutes only: sign per git command.

/**
 * git's username and password for the repository at `signingDate`: the access key id (with the
 * session token after a `%`), and `<yyyymmddTHHMMSS>Z<signature>` of the canonical request
 * `GIT <path>` with the host as its one header, empty payload hash.
 */
export async function codeCommitGitCredentials(
  repository: CodeCommitRepository,
  credentials: AwsCredentialIdentity,
  signingDate = new Date(),
): Promise<{ username: string; password: string }> {
  const canonicalRequest = `GIT\n${repository.path}\n\nhost:${repository.host}\n\nhost\n`;
  const signer = new SignatureV4({ service: 'codecommit', region: repository.region, credentials, sha256: Hash.bind(null, 'sha256') });
  // The CLI's string to sign carries the timestamp without SigV4's Z (botocore's request.context['timestamp']).
  const timestamp = signingDate.toISOString().replace(/[-:]|\.\d{3}Z$/g, ''); // 20260101T120000
  const canonicalHash = createHash('sha256').update(canonicalRequest).digest('hex');
  const stringToSign = `AWS4-HMAC-SHA256\n${timestamp}\n${timestamp.slice(0, 8)}/${repository.region}/codecommit/aws4_request\n${canonicalHash}`;
  const signature = await signer.sign(stringToSign, { signingDate });
  const username = credentials.sessionToken ? `${credentials.accessKeyId}%${credentials.sessionToken}` : credentials.accessKeyId;
  return { username, password: `${timestamp}Z${signature}` };
}
