import { spawnSync } from 'node:child_process';
import { mkdtempSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AwsCredentialIdentity } from '@smithy/types';
import { v4 as uuidv4 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeCommitGitCredentials } from '../lib/claude/codecommit-credentials.js';
import type { RunnerConfig } from '../lib/claude/run-session-task.js';
import { cloneWorkspace } from '../lib/claude/workspace.js';
import { codeCommitRepository } from '../lib/sessions/codecommit-url.js';
import { parseExecutionInput } from '../lib/sessions/execution-input.js';
import { CodeCommitStandIn } from './support/codecommit-stand-in.js';
import { git, remoteRepository } from './support/git-remote.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

// The runner's role, as a Lambda or a task role has it: temporary credentials with a session token.
const ROLE: AwsCredentialIdentity = {
  accessKeyId: 'ASIAEXAMPLERUNNER001',
  secretAccessKey: 'runnerSecretAccessKey/Example+0123456789abcdef',
  sessionToken: 'IQoJb3JpZ2luX2VjEXAMPLE/session+token==',
};
const GIT_TOKEN = 'ghp_token_for_other_hosts_only';

/**
 * The AWS CLI's credential helper's algorithm (awscli/customizations/codecommit.py), computed by
 * botocore: the independent implementation our password must equal. Needs python3 with botocore.
 */
function botocorePassword(credentials: AwsCredentialIdentity, url: string, timestamp: string): { username: string; password: string } {
  const script = `
import json, re, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import urlsplit
from botocore.credentials import Credentials
access_key, secret_key, token, url, timestamp = sys.argv[1:]
credentials = Credentials(access_key, secret_key, token or None)
host = urlsplit(url).netloc.split(':')[0]
region = re.match(r'(vpce-.+\\.)?git-codecommit(-fips)?\\.([^.]+)\\.(vpce\\.)?amazonaws\\.com', host).group(3)
signer = SigV4Auth(credentials, 'codecommit', region)
request = AWSRequest()
request.url = url
request.method = 'GIT'
request.context['timestamp'] = timestamp
canonical_request = '{0}\\n{1}\\n\\nhost:{2}\\n\\nhost\\n'.format(request.method, urlsplit(url).path, host)
signature = signer.signature(signer.string_to_sign(request, canonical_request), request)
username = access_key + ('%' + token if token else '')
print(json.dumps({'username': username, 'password': '{0}Z{1}'.format(timestamp, signature)}))
`;
  const args = ['-c', script, credentials.accessKeyId, credentials.secretAccessKey, credentials.sessionToken ?? '', url, timestamp];
  const run = spawnSync('python3', args, { encoding: 'utf8' });
  if (run.error || run.status !== 0) {
    throw new Error(`python3 with botocore is needed to check the CodeCommit password (it comes with cfn-lint: pip install cfn-lint): ${run.error?.message ?? run.stderr}`);
  }
  return JSON.parse(run.stdout) as { username: string; password: string };
}

describe('the CodeCommit git password', () => {
  it.each([
    ['long-term keys', 'https://git-codecommit.us-east-1.amazonaws.com/v1/repos/widgets', { accessKeyId: 'AKIAEXAMPLE123456789', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' }],
    ['a role\'s session (token in the username)', 'https://git-codecommit-fips.us-gov-west-1.amazonaws.com/v1/repos/team.widgets_2', ROLE],
    ['a VPC endpoint\'s host', 'https://vpce-0a1b2c3d4e5f6a7b8-abcdefgh.git-codecommit.eu-central-1.vpce.amazonaws.com/v1/repos/widgets', ROLE],
    ['a China region\'s host', 'https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/widgets', ROLE],
  ])('equals the AWS CLI credential helper\'s, computed by botocore, for %s', async (_, url, credentials) => {
    // Prepare
    const signingDate = new Date('2026-03-04T05:06:07.890Z');
    // Act
    const ours = await codeCommitGitCredentials(codeCommitRepository(url)!, credentials, signingDate);
    // Assess
    expect(ours).toEqual(botocorePassword(credentials, url, '20260304T050607'));
    expect(ours.password).toMatch(/^20260304T050607Z[0-9a-f]{64}$/);
  });

  it('refuses a CodeCommit URL without a region or a repository, naming the field', () => {
    const start = (repo: string) => () => parseExecutionInput({ prompt: 'p', projectId: 'p', workspace: { repo } });
    expect(start('https://git-codecommit.us-east-1.amazonaws.com/widgets')).toThrow(/workspace\.repo must name the repository as https:\/\/git-codecommit\.<region>\.amazonaws\.com\/v1\/repos\/<name>/);
    expect(start('https://git-codecommit.us-east-1.amazonaws.com/v1/repos/widgets/extra')).toThrow(/workspace\.repo must name the repository/);
    expect(start('https://git-codecommit.nowhere.amazonaws.com/v1/repos/widgets')).toThrow(/workspace\.repo must name an AWS Region in its host .*not "nowhere"/);
    expect(start('https://git-codecommit.us-east-1.amazonaws.com/v1/repos/widgets?x=1')).toThrow(/workspace\.repo must be https:\/\/git-codecommit/);
    expect(start('https://git-codecommit.eu-west-1.amazonaws.com/v1/repos/widgets')).not.toThrow();
    expect(start('https://git-codecommit-fips.us-gov-west-1.amazonaws.com/v1/repos/widgets')).not.toThrow();
  });

  it('is never sent to another host: a remote elsewhere gets no signature (and the git token only in its scopes: test/git-token-scopes.test.ts)', async () => {
    // Prepare: a remote that records what git sends, and refuses it
    const headers: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      headers.push(req.headers.authorization);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const repo = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/repos/widgets`;
    const work = mkdtempSync(join(tmpdir(), 'clone-'));
    let signed = 0;
    try {
      // Act
      const clone = cloneWorkspace({ repo }, join(work, 'work'), work, { token: GIT_TOKEN, codeCommitCredentials: async () => (signed++, ROLE) });
      // Assess
      await expect(clone).rejects.toMatchObject({ name: 'WorkspaceCloneError' });
      expect(headers.length).toBeGreaterThan(0);
      expect(headers[0]).toBeUndefined();
      expect(signed).toBe(0);
    } finally {
      server.close();
    }
  });
});

describe('a session on a CodeCommit repository', () => {
  const root = mkdtempSync(join(tmpdir(), 'codecommit-'));
  const codecommit = new CodeCommitStandIn(root, ROLE);
  let credentialReads = 0;
  // The runner's own credentials, and git sent to the stand-in instead of CodeCommit's endpoint (set once it listens).
  const runner: Omit<RunnerConfig, 'endpoint'> = {
    codeCommitCredentials: async () => (credentialReads++, ROLE),
    gitToken: async () => GIT_TOKEN,
  };
  let env: TestRuntime;
  // Registered before the runtime's: the runner config it takes names the stand-in's port.
  beforeAll(async () => {
    await codecommit.start();
    runner.codeCommitEndpoint = codecommit.endpoint;
  });
  useTestRuntime((started) => (env = started), runner);
  afterAll(() => codecommit.close());

  /** A bare repository with one commit on main, served as CodeCommit repository `name`. */
  function codeCommitRepo(name: string): { url: string; bare: string; main: string } {
    const { bare, main } = remoteRepository();
    renameSync(bare, join(root, name));
    return { url: codecommit.serve(name), bare: join(root, name), main };
  }

  /** Everything the session left behind that a reader could see: its record, the execution's log and outcome. */
  async function visibleTrace(execution: { events: AsyncIterable<unknown> }, ...rest: unknown[]): Promise<string> {
    const events: unknown[] = [];
    for await (const event of execution.events) events.push(event);
    return JSON.stringify([events, ...rest, env.anthropic.messageRequests]);
  }

  it('clones and pushes with a password the runner\'s role signs for each git command, and leaks no secret', async () => {
    // Prepare
    const { url, bare, main } = codeCommitRepo('widgets');
    env.anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'CHANGELOG.md', content: '# Changes\n- widgets polished\n' } },
      { kind: 'text', text: 'Wrote the changelog' },
    );
    const sessionId = uuidv4();
    credentialReads = 0;
    codecommit.requests.length = 0;
    // Act
    const { execution, outcome, session } = await env.runtime.run({ prompt: 'Write a changelog', projectId: 'cc', sessionId, workspace: { repo: url } });
    // Assess: the branch holds Claude's file; the record keeps the URL as given
    const branch = `claude-sessions/${sessionId}`;
    expect(session).toMatchObject({ status: 'COMPLETED', workspace: { repo: url, baseCommit: main, branch, filesChanged: 1 } });
    expect(git(bare, 'show', `${branch}:CHANGELOG.md`)).toBe('# Changes\n- widgets polished');
    expect(git(bare, 'rev-parse', 'main')).toBe(main);
    // Every request was signed for the CodeCommit URL, the role's session token in the username; the token never went
    expect(codecommit.requests.length).toBeGreaterThan(2);
    expect(codecommit.requests.every((r) => r.accepted && r.username === `${ROLE.accessKeyId}%${ROLE.sessionToken}`)).toBe(true);
    expect(codecommit.requests.some((r) => r.path.endsWith('/git-receive-pack'))).toBe(true);
    expect(codecommit.requests.map((r) => `${r.username}:${r.password}`).join()).not.toContain(GIT_TOKEN);
    // Signed anew for the clone and for the push, the push no earlier than the clone
    expect(credentialReads).toBe(2);
    const signedAt = codecommit.requests.map((r) => r.password!.slice(0, 15));
    expect([...signedAt].sort()).toEqual(signedAt);
    // No secret in the record, the execution's log, its outcome, or what Claude was sent
    const trace = await visibleTrace(execution, session, outcome);
    for (const secret of [ROLE.secretAccessKey, ROLE.sessionToken!, ...codecommit.requests.map((r) => r.password!)]) expect(trace).not.toContain(secret);
  });

  it('fails WorkspaceCloneError before Claude runs when CodeCommit refuses the signature, leaving nothing RUNNING', async () => {
    // Prepare: IAM knows the role by another secret key than the runner signs with
    const { url } = codeCommitRepo('refused');
    codecommit.credentials = { ...ROLE, secretAccessKey: 'anotherSecretAccessKey/Example+0123456789ab' };
    codecommit.requests.length = 0;
    try {
      // Act
      const { execution, outcome, session } = await env.runtime.run({ prompt: 'hi', projectId: 'cc-refused', workspace: { repo: url } });
      // Assess
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'WorkspaceCloneError' });
      expect(session).toMatchObject({ status: 'FAILED', error: 'WorkspaceCloneError', cause: expect.stringMatching(/could not clone https:\/\/git-codecommit\.eu-west-1\.amazonaws\.com\/v1\/repos\/refused: .*403/) });
      expect(codecommit.requests.length).toBeGreaterThan(0);
      expect(codecommit.requests.every((r) => !r.accepted)).toBe(true);
      expect(env.anthropic.messageRequests).toEqual([]);
      expect(await env.runtime.repository.listRunning('cc-refused')).toEqual([]);
      const trace = await visibleTrace(execution, session, outcome);
      for (const secret of [ROLE.secretAccessKey, ROLE.sessionToken!, ...codecommit.requests.map((r) => r.password!)]) expect(trace).not.toContain(secret);
    } finally {
      codecommit.credentials = ROLE;
    }
  });
});
