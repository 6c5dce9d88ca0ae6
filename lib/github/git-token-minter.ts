import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { tokenScopeOf } from '../claude/repository-scopes.js';
import { appGitToken, GitHubAppError, type GitHubAppTokens } from './app-token.js';

// On AWS the runner never holds the App's private key: it asks a function of its own
// (cdk/git-token-minter.ts), which alone reads the key, for git's token of the one repository
// it clones and pushes (contents write only), when it clones and again when it pushes.

/** What the runner asks the minter: git's token for this repository URL. */
export interface GitTokenRequest {
  repo: string;
}

/** The minter's answer: a token for the repository asked, under the deployment's gitTokenScopes only. */
export async function mintGitToken(request: unknown, tokens: GitHubAppTokens, tokenScopes: readonly string[]): Promise<{ token: string }> {
  const repo = (request as Partial<GitTokenRequest> | null)?.repo;
  if (typeof repo !== 'string' || !repo) throw new GitHubAppError('the request names no repository: {"repo": "<its https URL>"}');
  // The same scopes the runner checks: a token is minted for no repository the deployment did not name.
  if (!tokenScopeOf(repo, tokenScopes)) throw new GitHubAppError(`${repo} is under none of gitTokenScopes: no token is minted for it`);
  const token = await appGitToken(tokens)(repo);
  return { token: token! };
}

/** The runner's git token: the minter's answer for the repository, through Lambda's Invoke. */
export function invokeGitTokenMinter(lambda: LambdaClient, functionName: string): (repo: string) => Promise<string> {
  return async (repo) => {
    const { Payload, FunctionError } = await lambda.send(new InvokeCommand({ FunctionName: functionName, Payload: JSON.stringify({ repo } satisfies GitTokenRequest) }));
    const answer = JSON.parse(Buffer.from(Payload ?? []).toString('utf8') || 'null') as { token?: unknown; errorMessage?: unknown } | null;
    // The minter's own error says what to fix (the setting, the installation); it never holds the token.
    if (FunctionError) throw new GitHubAppError(`the git token minter failed: ${String(answer?.errorMessage ?? FunctionError)}`);
    if (typeof answer?.token !== 'string') throw new GitHubAppError('the git token minter answered no token');
    return answer.token;
  };
}
