import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { tokenScopeOf } from '../claude/repository-scopes.js';
import { appRepositoryToken, GIT_PERMISSIONS, gitHostOf, GitHubAppError, REPORT_PERMISSIONS, type GitHubAppTokens, type InstallationPermissions } from './app-token.js';
import type { GitHubTokenSource } from './github-client.js';

// On AWS no function but a minter holds the App's private key (cdk/git-token-minter.ts): the
// runner asks its git minter for git's token of the one repository it clones and pushes
// (contents write only), when it clones and again when it pushes; the reporter asks its report
// minter for a token of the session's repository (issues and pull requests write only). Each
// minter mints its one set of permissions, and each caller may invoke only its own minter.

/** What a minter's tokens are for: git's clone and push (the runners), or a session's report (the reporter). */
export type TokenPurpose = 'git' | 'report';
const TOKEN_PURPOSES: readonly TokenPurpose[] = ['git', 'report'];

/** The permissions a minter of each purpose mints, and nothing else. */
export const PURPOSE_PERMISSIONS: Readonly<Record<TokenPurpose, InstallationPermissions>> = { git: GIT_PERMISSIONS, report: REPORT_PERMISSIONS };

/** A minter's purpose from its environment: a missing or unknown one fails naming the variable. */
export function tokenPurpose(value: string | undefined, variable: string): TokenPurpose {
  if (!TOKEN_PURPOSES.includes(value as TokenPurpose)) throw new GitHubAppError(`${variable} must be one of ${TOKEN_PURPOSES.join(', ')}, not ${JSON.stringify(value ?? null)}`);
  return value as TokenPurpose;
}

/** What a caller asks a minter: a token of this repository URL. */
export interface GitTokenRequest {
  repo: string;
}

/** The minter's answer: a token of the repository asked, with its purpose's permissions, under the deployment's gitTokenScopes only. */
export async function mintToken(request: unknown, tokens: GitHubAppTokens, tokenScopes: readonly string[], purpose: TokenPurpose): Promise<{ token: string }> {
  const repo = (request as Partial<GitTokenRequest> | null)?.repo;
  if (typeof repo !== 'string' || !repo) throw new GitHubAppError('the request names no repository: {"repo": "<its https URL>"}');
  // The same scopes the runner checks: a token is minted for no repository the deployment did not name.
  if (!tokenScopeOf(repo, tokenScopes)) throw new GitHubAppError(`${repo} is under none of gitTokenScopes: no token is minted for it`);
  return { token: await appRepositoryToken(tokens, PURPOSE_PERMISSIONS[purpose])(repo) };
}

/** A minter's token for a repository URL, through Lambda's Invoke; `minter` names it in an error. */
export function invokeGitTokenMinter(lambda: LambdaClient, functionName: string, minter = 'the git token minter'): (repo: string) => Promise<string> {
  return async (repo) => {
    const { Payload, FunctionError } = await lambda.send(new InvokeCommand({ FunctionName: functionName, Payload: JSON.stringify({ repo } satisfies GitTokenRequest) }));
    const answer = JSON.parse(Buffer.from(Payload ?? []).toString('utf8') || 'null') as { token?: unknown; errorMessage?: unknown } | null;
    // The minter's own error says what to fix (the setting, the installation); it never holds the token.
    if (FunctionError) throw new GitHubAppError(`${minter} failed: ${String(answer?.errorMessage ?? FunctionError)}`);
    if (typeof answer?.token !== 'string') throw new GitHubAppError(`${minter} answered no token`);
    return answer.token;
  };
}

/**
 * How long the reporter reuses a minted token: a minter hands out one with 15 minutes left at
 * least (REUSE_MARGIN_MS in app-token.ts), so a report's few REST calls share one Invoke.
 */
const REPORT_TOKEN_REUSE_MS = 5 * 60_000;

/** The reporter's token for a REST call: its minter's, for the call's repository on the App's host (`apiUrl`'s), reused a few minutes. */
export function reportTokenFromMinter(mint: (repo: string) => Promise<string>, apiUrl: string, now = () => Date.now()): GitHubTokenSource {
  const held = new Map<string, { token: Promise<string>; at: number }>();
  return async (repository) => {
    if (!repository) throw new GitHubAppError('an App token is scoped to a repository, and this call names none');
    const repo = `https://${gitHostOf(apiUrl)}/${repository.owner}/${repository.repo}`;
    const key = repo.toLowerCase();
    const cached = held.get(key);
    if (cached && now() - cached.at < REPORT_TOKEN_REUSE_MS) return cached.token;
    const token = mint(repo);
    held.set(key, { token, at: now() });
    token.catch(() => held.delete(key)); // a failed mint is asked again at the next call
    return token;
  };
}
