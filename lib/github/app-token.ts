import { createPrivateKey, createSign, type KeyObject } from 'node:crypto';
import { GitHubApiError, GitHubClient, repositoryName, type RepositoryName } from './github-client.js';

// A GitHub App's credentials (docs/GITHUB.md#create-the-app): the App signs a short JWT with its
// private key, and GitHub gives an installation access token for it, narrowed here to the one
// repository a session works on and the permissions the caller needs. The key is held only where
// tokens are minted (docs/ARCHITECTURE.md#workspaces); a token lasts an hour at most.

/** What the runner's git needs: clone and push. */
export const GIT_PERMISSIONS = { contents: 'write' } as const;
/** What the reporter needs: open a pull request, read the issue and comment on it. */
export const REPORT_PERMISSIONS = { issues: 'write', pull_requests: 'write' } as const;

export type InstallationPermissions = Readonly<Record<string, 'read' | 'write'>>;

/** The App: its id (the JWT's issuer) and private key. */
export interface GitHubApp {
  readonly appId: string;
  readonly privateKey: KeyObject;
}

/** The App's setting, or a token GitHub would not give for it: names the setting to fix. */
export class GitHubAppError extends Error {
  override readonly name = 'GitHubAppError';
}

/**
 * The App from its secret's text, JSON `{appId, privateKey}` (the PEM GitHub gave, PKCS#1 or
 * PKCS#8); a bad one fails naming `setting` and the field, never showing the key.
 */
export function parseGitHubApp(text: string, setting: string): GitHubApp {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new GitHubAppError(`${setting} must hold JSON {"appId": "<the App's id>", "privateKey": "<its PEM>"}`);
  }
  const { appId, privateKey } = (raw ?? {}) as { appId?: unknown; privateKey?: unknown };
  const id = typeof appId === 'number' ? String(appId) : appId;
  if (typeof id !== 'string' || !/^\d+$/.test(id)) throw new GitHubAppError(`${setting}: appId must be the App's numeric id (its settings page, "App ID")`);
  if (typeof privateKey !== 'string') throw new GitHubAppError(`${setting}: privateKey must be the App's private key, the PEM GitHub gave`);
  return { appId: id, privateKey: appPrivateKey(privateKey, setting) };
}

/** An RSA private key from its PEM, or an error naming the setting (not the key). */
export function appPrivateKey(pem: string, setting: string): KeyObject {
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'rsa') throw new Error('not RSA');
    return key;
  } catch {
    throw new GitHubAppError(`${setting}: privateKey is not an RSA private key in PEM (GitHub's .pem file, "-----BEGIN RSA PRIVATE KEY-----")`);
  }
}

/** The host a GitHub's repositories are cloned from: its REST API's own (GitHub Enterprise Server), github.com for api.github.com. */
export function gitHostOf(apiUrl: string): string {
  const host = new URL(apiUrl).hostname.toLowerCase();
  return host === 'api.github.com' ? 'github.com' : host;
}

const base64url = (value: string | Buffer) => Buffer.from(value).toString('base64url');

/**
 * The App's JWT (RS256; GitHub's "Generating a JSON Web Token for a GitHub App"): issued a minute
 * back for clock drift, valid nine minutes (GitHub takes ten at most). Signed with node:crypto
 * rather than universal-github-app-jwt, which does the same three claims: this keeps the runner
 * image and the functions' bundles free of a dependency for a dozen lines, and node:crypto reads
 * GitHub's PKCS#1 PEM as it comes.
 */
export function appJwt(app: GitHubApp, nowMs = Date.now()): string {
  const now = Math.floor(nowMs / 1000);
  const signed = `${base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))}.${base64url(JSON.stringify({ iat: now - 60, exp: now + 9 * 60, iss: app.appId }))}`;
  return `${signed}.${createSign('RSA-SHA256').update(signed).sign(app.privateKey, 'base64url')}`;
}

/** A token is used until this long before it expires, then another is minted. */
const REUSE_MARGIN_MS = 15 * 60_000;

/**
 * Installation tokens of one App, each scoped to one repository and the permissions asked,
 * kept until REUSE_MARGIN_MS before they expire (a session's clone and push share one; a push
 * after an hour gets a new one).
 */
export class GitHubAppTokens {
  private readonly cache = new Map<string, Promise<{ token: string; expiresAt: number }>>();

  /**
   * @param app the App, read when a token is first needed (a secret's read, cached by the caller)
   * @param setting where the App is configured, named when GitHub refuses it
   */
  constructor(
    private readonly apiUrl: string,
    private readonly app: () => Promise<GitHubApp>,
    private readonly setting: string,
    private readonly fetchImpl: typeof fetch = fetch,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** The host the App's repositories are cloned from (gitHostOf). */
  gitHost(): string {
    return gitHostOf(this.apiUrl);
  }

  async token(repository: RepositoryName, permissions: InstallationPermissions): Promise<string> {
    const key = `${repository.owner}/${repository.repo}`.toLowerCase() + JSON.stringify(Object.entries(permissions).sort());
    const cached = this.cache.get(key);
    if (cached) {
      const held = await cached.catch(() => undefined);
      if (held && held.expiresAt - this.now() > REUSE_MARGIN_MS) return held.token;
    }
    const minted = this.mint(repository, permissions);
    this.cache.set(key, minted);
    minted.catch(() => this.cache.delete(key));
    return (await minted).token;
  }

  private async mint(repository: RepositoryName, permissions: InstallationPermissions): Promise<{ token: string; expiresAt: number }> {
    const app = await this.app();
    const asApp = new GitHubClient(this.apiUrl, async () => appJwt(app, this.now()), this.fetchImpl);
    const where = `${repository.owner}/${repository.repo}`;
    try {
      const { id } = await asApp.installation(repository);
      const minted = await asApp.createInstallationToken(id, { repositories: [repository.repo], permissions: { ...permissions } });
      return { token: minted.token, expiresAt: Date.parse(minted.expires_at) };
    } catch (err) {
      if (!(err instanceof GitHubApiError)) throw err;
      const why = err.status === 401
        ? `GitHub refused the App's JWT: check ${this.setting} (appId and the App's current private key)`
        : err.status === 404 && err.path.endsWith('/installation')
          ? `the App of ${this.setting} is not installed on ${where} (install it there, or give it that repository)`
          : `the App of ${this.setting} got no token for ${where} with ${JSON.stringify(permissions)}`;
      throw new GitHubAppError(`${why}: ${err.message}`, { cause: err });
    }
  }
}

/** git's token for a repository URL: the App's, scoped to that repository, contents write. */
export function appGitToken(tokens: GitHubAppTokens): (repo: string) => Promise<string | undefined> {
  return appRepositoryToken(tokens, GIT_PERMISSIONS);
}

/** A token of the repository a URL names, with `permissions`: the App's, for a repository on its own host only. */
export function appRepositoryToken(tokens: GitHubAppTokens, permissions: InstallationPermissions): (repo: string) => Promise<string> {
  return async (repo) => {
    const name = repositoryName(repo);
    if (!name) throw new GitHubAppError(`${repo} names no owner/repo an App token could be scoped to`);
    // The token opens owner/repo on the App's GitHub: it goes to that host only, whatever
    // gitTokenScopes let through (a scope left from a token of another host).
    const host = new URL(repo).hostname.toLowerCase();
    if (host !== tokens.gitHost()) throw new GitHubAppError(`${repo} is not on ${tokens.gitHost()}, the GitHub App's host (githubApiUrl): no App token is minted for it`);
    return tokens.token(name, permissions);
  };
}

/** The reporter's token for a REST call: the App's, scoped to the call's repository. */
export function appReportToken(tokens: GitHubAppTokens): (repository: RepositoryName | undefined) => Promise<string> {
  return async (repository) => {
    if (!repository) throw new GitHubAppError('an App token is scoped to a repository, and this call names none');
    return tokens.token(repository, REPORT_PERMISSIONS);
  };
}
