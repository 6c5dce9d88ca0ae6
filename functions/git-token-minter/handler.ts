import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import middy from '@middy/core';
import { checkedTokenScopes } from '../../lib/claude/repository-scopes.js';
import { GitHubAppTokens } from '../../lib/github/app-token.js';
import { checkedGitHubApiUrl } from '../../lib/github/github-client.js';
import { readGitHubApp } from '../../lib/github/github-token.js';
import { mintToken, tokenPurpose } from '../../lib/github/git-token-minter.js';
import { redactRepo } from '../../lib/claude/workspace.js';
import { lazy } from '../shared/lazy.js';

// Clients once per cold start; the environment at the first request, a missing variable named.
// Tokens are kept per repository while they last (GitHubAppTokens), so a warm minter gives a
// session's clone and push one token.
const logger = new Logger();
const tracer = new Tracer();
const secrets = tracer.captureAWSv3Client(new SecretsManagerClient({}));
const deps = lazy(() => ({
  tokens: new GitHubAppTokens(
    checkedGitHubApiUrl(process.env.GITHUB_API_URL, 'GITHUB_API_URL'),
    readGitHubApp(secrets, getStringFromEnv({ key: 'GITHUB_APP_SECRET_ARN' }), 'githubAppSecretName'),
    'githubAppSecretName',
  ),
  tokenScopes: checkedTokenScopes(getStringFromEnv({ key: 'GIT_TOKEN_SCOPES' }).split(','), 'GIT_TOKEN_SCOPES')!,
  // git (contents write, for the runners) or report (issues and pull requests write, for the reporter): one per minter.
  purpose: tokenPurpose(process.env.TOKEN_PURPOSE, 'TOKEN_PURPOSE'),
}));

/** `{repo}` from its one caller: a token of that one repository, with this minter's permissions. The token is never logged or traced. */
export const handler = middy(async (request: { repo?: unknown }) => {
  const { tokens, tokenScopes, purpose } = deps();
  const answer = await mintToken(request, tokens, tokenScopes, purpose);
  logger.info('token minted', { purpose, repo: typeof request?.repo === 'string' ? redactRepo(request.repo) : null });
  return answer;
})
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger));
