// The few GitHub REST calls the reporter makes (docs/GITHUB.md#what-comes-back), against a
// configurable base URL: https://api.github.com, or GitHub Enterprise Server's https://<host>/api/v3.

export const DEFAULT_GITHUB_API_URL = 'https://api.github.com';

/** A GitHub REST call that did not succeed: its method, path and status (the token never). */
export class GitHubApiError extends Error {
  override readonly name = 'GitHubApiError';
  constructor(readonly method: string, readonly path: string, readonly status: number, detail: string, options?: ErrorOptions) {
    super(`GitHub ${method} ${path} answered ${status || 'nothing'}: ${detail}`, options);
  }
}

/** The setting `githubApiUrl`: an https URL (http only on a loopback host, for a stand-in), without credentials. */
export function checkedGitHubApiUrl(value: string | undefined, setting: string): string {
  if (value === undefined || value === '') return DEFAULT_GITHUB_API_URL;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    // named below
  }
  const loopback = url && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (!url || !(url.protocol === 'https:' || (loopback && url.protocol === 'http:')) || url.username || url.password || url.search || url.hash) {
    throw new Error(`${setting} must be the https URL of GitHub's REST API, such as ${DEFAULT_GITHUB_API_URL} or https://github.example.com/api/v3; not ${JSON.stringify(value)}`);
  }
  return url.href.replace(/\/+$/, '');
}

export interface PullRequest {
  number: number;
  html_url: string;
  state: string;
  body?: string | null;
}

export interface IssueComment {
  id: number;
  body?: string | null;
  html_url: string;
}

/** A repository as GitHub names it: owner and name. */
export interface RepositoryName {
  owner: string;
  repo: string;
}

/** `owner/repo` of a repository's web or git URL (`https://github.com/acme/widgets(.git)`), on any host. */
export function repositoryName(url: string): RepositoryName | undefined {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return undefined;
  }
  const [owner, repo] = path.replace(/^\/+|\/+$/g, '').replace(/\.git$/, '').split('/');
  return owner && repo ? { owner, repo } : undefined;
}

/**
 * The token of a call: the deployment's one token, or one for the repository the call's path
 * names (a GitHub App's installation token is scoped to it; lib/github/app-token.ts).
 */
export type GitHubTokenSource = (repository: RepositoryName | undefined) => Promise<string>;

/** The repository a REST path is about (`/repos/{owner}/{repo}/…`), if any. */
function repositoryOfPath(path: string): RepositoryName | undefined {
  const match = /^\/repos\/([^/]+)\/([^/?]+)/.exec(path);
  return match ? { owner: match[1]!, repo: match[2]! } : undefined;
}

export class GitHubClient {
  constructor(private readonly apiUrl: string, private readonly token: GitHubTokenSource, private readonly fetchImpl: typeof fetch = fetch) {}

  async repository({ owner, repo }: RepositoryName): Promise<{ default_branch: string }> {
    return this.call('GET', `/repos/${owner}/${repo}`);
  }

  async issue({ owner, repo }: RepositoryName, number: number): Promise<{ title: string; html_url: string }> {
    return this.call('GET', `/repos/${owner}/${repo}/issues/${number}`);
  }

  /** The pull requests, open or closed, whose head is `branch` of this repository. */
  async pullRequestsFrom({ owner, repo }: RepositoryName, branch: string): Promise<PullRequest[]> {
    const query = new URLSearchParams({ head: `${owner}:${branch}`, state: 'all', per_page: '10' });
    return this.call('GET', `/repos/${owner}/${repo}/pulls?${query}`);
  }

  async createPullRequest({ owner, repo }: RepositoryName, pull: { title: string; head: string; base: string; body: string }): Promise<PullRequest> {
    return this.call('POST', `/repos/${owner}/${repo}/pulls`, pull);
  }

  /** Every comment of an issue or pull request, page by page (100 a page, GitHub's most). */
  async issueComments({ owner, repo }: RepositoryName, number: number): Promise<IssueComment[]> {
    const all: IssueComment[] = [];
    for (let page = 1; ; page++) {
      const batch = await this.call<IssueComment[]>('GET', `/repos/${owner}/${repo}/issues/${number}/comments?per_page=100&page=${page}`);
      all.push(...batch);
      if (batch.length < 100) return all;
    }
  }

  async createIssueComment({ owner, repo }: RepositoryName, number: number, body: string): Promise<IssueComment> {
    return this.call('POST', `/repos/${owner}/${repo}/issues/${number}/comments`, { body });
  }

  /** The App's installation on a repository (authenticated as the App: its JWT). */
  async installation({ owner, repo }: RepositoryName): Promise<{ id: number }> {
    return this.call('GET', `/repos/${owner}/${repo}/installation`);
  }

  /** An installation access token, narrowed to `repositories` and `permissions` (authenticated as the App). */
  async createInstallationToken(installationId: number, scope: { repositories: string[]; permissions: Record<string, string> }): Promise<{ token: string; expires_at: string }> {
    return this.call('POST', `/app/installations/${installationId}/access_tokens`, scope);
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.apiUrl}${path}`, {
        method,
        headers: {
          accept: 'application/vnd.github+json', 'x-github-api-version': '2022-11-28', 'user-agent': 'claude-sessions',
          authorization: `Bearer ${await this.token(repositoryOfPath(path))}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(20_000),
      });
    } catch (err) {
      throw new GitHubApiError(method, path.split('?')[0]!, 0, (err as Error).message, { cause: err });
    }
    const text = await response.text();
    if (!response.ok) {
      const message = (() => {
        try {
          return String((JSON.parse(text) as { message?: unknown }).message ?? text);
        } catch {
          return text;
        }
      })();
      throw new GitHubApiError(method, path.split('?')[0]!, response.status, message.slice(0, 300));
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }
}
