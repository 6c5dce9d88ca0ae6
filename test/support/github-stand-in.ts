import { createVerify, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One REST call as the stand-in received it. */
export interface GitHubCall {
  method: string;
  /** The path without its query. */
  path: string;
  query: Record<string, string>;
  authorization?: string;
  body?: Record<string, unknown>;
  /** What the stand-in answered. */
  status: number;
}

/** A GitHub App installed on some repositories of one owner: its id, the public half of its key, what it may be given. */
export interface InstalledApp {
  appId: string;
  publicKey: KeyObject;
  installationId: number;
  /** `owner/repo` of each repository it is installed on. */
  repositories: string[];
  /** What the App was granted (its settings' "Repository permissions"); metadata read is implied. */
  permissions: Record<string, 'read' | 'write'>;
}

/** An installation token the stand-in gave: where it works, for what, until when. */
export interface MintedToken {
  token: string;
  /** `owner/repo`, lower case. */
  repositories: string[];
  permissions: Record<string, string>;
  expiresAt: number;
}

interface StoredPull { number: number; html_url: string; state: string; title: string; head: string; base: string; body: string }
interface StoredComment { id: number; html_url: string; body: string }

/**
 * GitHub's REST API on 127.0.0.1, for the calls the reporter makes (repository, issue, pulls of a
 * head, create a pull request, list and create issue comments), keeping what was created. It
 * records every call, and `failNext(n)` answers the next n calls 500, as an outage would (or of one
 * kind: the comment's POST after the pull request was opened).
 */
export class GitHubStandIn {
  readonly calls: GitHubCall[] = [];
  readonly pulls = new Map<string, StoredPull[]>();
  readonly comments = new Map<string, StoredComment[]>();
  /** Issue titles by `owner/repo#n`; an issue not set here is "Issue <n>". */
  readonly issues = new Map<string, string>();
  /** The installation tokens given, in order. */
  readonly minted: MintedToken[] = [];
  /** Installed, every REST call on a repository needs one of its tokens (or a token of `tokens`), and the App's calls its JWT. */
  private app?: InstalledApp;
  /** Tokens taken for any repository and permission (a PAT), once an App is installed. */
  readonly tokens = new Set<string>();
  private readonly failing: { left: number; matches: (call: GitHubCall) => boolean }[] = [];
  private nextId = 1;
  private server?: Server;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://127.0.0.1');
        const text = Buffer.concat(chunks).toString('utf8');
        const call: GitHubCall = {
          method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams), status: 0,
          authorization: req.headers.authorization, ...(text ? { body: JSON.parse(text) as Record<string, unknown> } : {}),
        };
        this.calls.push(call);
        const failure = this.failing.find((f) => f.left > 0 && f.matches(call));
        if (failure) failure.left--;
        const [status, answer] = failure ? [500, { message: 'Server Error (the stand-in was told to fail)' }] as const : this.refusal(call) ?? this.answer(call);
        call.status = status;
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    return this;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  /** The next `n` calls (of those `matches` picks) are answered 500. */
  failNext(n: number, matches: (call: GitHubCall) => boolean = () => true): void {
    this.failing.push({ left: n, matches });
  }

  /** From now on, GitHub as an App's installation sees it: JWTs checked against its public key, installation tokens checked on every call. */
  installApp(app: InstalledApp): void {
    this.app = { ...app, repositories: app.repositories.map((r) => r.toLowerCase()) };
  }

  /**
   * git's side of the same checks, for HttpsGitRemote.authorize: the Basic password must be a
   * token this stand-in minted, for that repository, with contents read (fetch) or write (push).
   */
  gitAccess(): (request: { owner: string; repo: string; authorization?: string; push: boolean }) => boolean {
    return ({ owner, repo, authorization, push }) => {
      const basic = /^Basic (.+)$/.exec(authorization ?? '')?.[1];
      const [user, token] = basic ? Buffer.from(basic, 'base64').toString().split(':') : [];
      if (user !== 'x-access-token' || !token) return false;
      return this.tokenAllows(token, `${owner}/${repo}`, 'contents', push ? 'write' : 'read') === undefined;
    };
  }

  /** Why `token` may not do `level` on `permission` of `repository`; undefined when it may. */
  private tokenAllows(token: string, repository: string, permission: string | undefined, level: 'read' | 'write'): string | undefined {
    if (this.tokens.has(token)) return undefined;
    const minted = this.minted.find((m) => m.token === token);
    if (!minted || minted.expiresAt < Date.now()) return 'Bad credentials';
    if (!minted.repositories.includes(repository.toLowerCase())) return 'Not Found';
    const held = permission === undefined ? 'read' : minted.permissions[permission];
    if (!held || (level === 'write' && held !== 'write')) return 'Resource not accessible by integration';
    return undefined;
  }

  /** The App's JWT checked as GitHub does: RS256 by the App's key, issued by its id, not expired, at most 10 minutes long. */
  private jwtRefusal(authorization: string | undefined): string | undefined {
    const app = this.app;
    if (!app) return 'Not Found';
    const jwt = /^Bearer (.+)$/.exec(authorization ?? '')?.[1] ?? '';
    const [header, payload, signature] = jwt.split('.');
    if (!header || !payload || !signature) return 'A JSON web token could not be decoded';
    const signed = createVerify('RSA-SHA256').update(`${header}.${payload}`).verify(app.publicKey, signature, 'base64url');
    if (!signed) return 'A JSON web token could not be decoded';
    const { alg } = JSON.parse(Buffer.from(header, 'base64url').toString()) as { alg?: string };
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { iat?: number; exp?: number; iss?: unknown };
    const now = Date.now() / 1000;
    if (alg !== 'RS256') return `'alg' must be RS256`;
    if (String(claims.iss) !== app.appId) return 'Integration not found';
    if (typeof claims.exp !== 'number' || claims.exp < now) return `'Expiration time' claim ('exp') must be a numeric value representing the future time`;
    if (typeof claims.iat !== 'number' || claims.iat > now + 60 || claims.exp - claims.iat > 600) return `'Expiration time' claim ('exp') is too far in the future`;
    return undefined;
  }

  /** Once an App is installed: the App's own calls need its JWT, the rest an installation token for their repository and permission. */
  private refusal(call: GitHubCall): [number, unknown] | undefined {
    if (!this.app) return undefined;
    let m: RegExpExecArray | null;
    if (/^\/repos\/[^/]+\/[^/]+\/installation$/.test(call.path) || call.path.startsWith('/app/')) {
      const why = this.jwtRefusal(call.authorization);
      return why ? [401, { message: why }] : undefined;
    }
    if (!(m = /^\/repos\/([^/]+)\/([^/]+)(\/(issues|pulls)\b.*)?$/.exec(call.path))) return [404, { message: 'Not Found' }];
    const token = /^(?:Bearer|token) (.+)$/.exec(call.authorization ?? '')?.[1] ?? '';
    // Comments on a pull request go through the issues API, as on GitHub.
    const permission = m[4] === 'pulls' ? 'pull_requests' : m[4] === 'issues' ? 'issues' : undefined;
    const why = this.tokenAllows(token, `${m[1]}/${m[2]}`, permission, call.method === 'GET' ? 'read' : 'write');
    if (!why) return undefined;
    return [why === 'Bad credentials' ? 401 : why === 'Not Found' ? 404 : 403, { message: why }];
  }

  /** The calls that created something (POST), as `POST <path>`. */
  get writes(): string[] {
    return this.calls.filter((c) => c.method === 'POST' && c.status < 300).map((c) => `POST ${c.path}`);
  }

  private answer(call: GitHubCall): [number, unknown] {
    let m: RegExpExecArray | null;
    const web = (path: string) => `https://github.example/${path}`;
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/installation$/.exec(call.path)) && call.method === 'GET') {
      if (!this.app?.repositories.includes(`${m[1]}/${m[2]}`.toLowerCase())) return [404, { message: 'Not Found' }];
      return [200, { id: this.app.installationId, app_id: Number(this.app.appId), account: { login: m[1] } }];
    }
    if ((m = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(call.path)) && call.method === 'POST' && this.app) {
      if (Number(m[1]) !== this.app.installationId) return [404, { message: 'Not Found' }];
      const body = call.body as { repositories?: string[]; permissions?: Record<string, string> };
      const owner = this.app.repositories[0]!.split('/')[0]!;
      const repositories = (body.repositories ?? []).map((r) => `${owner}/${r}`.toLowerCase());
      if (!repositories.length) return [422, { message: 'the stand-in mints only tokens narrowed to repositories' }];
      if (repositories.some((r) => !this.app!.repositories.includes(r))) return [422, { message: 'There is at least one repository that does not exist or is not accessible to the parent installation.' }];
      const permissions = body.permissions ?? {};
      for (const [name, level] of Object.entries(permissions)) {
        const granted = this.app.permissions[name];
        if (!granted || (level === 'write' && granted !== 'write')) return [422, { message: `The permissions requested are not granted to this installation: ${name}` }];
      }
      if (!Object.keys(permissions).length) return [422, { message: 'the stand-in mints only tokens narrowed to permissions' }];
      const minted = { token: `ghs_${randomBytes(18).toString('base64url')}`, repositories, permissions, expiresAt: Date.now() + 3_600_000 };
      this.minted.push(minted);
      return [201, { token: minted.token, expires_at: new Date(minted.expiresAt).toISOString(), permissions, repository_selection: 'selected' }];
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)$/.exec(call.path)) && call.method === 'GET') {
      return [200, { full_name: `${m[1]}/${m[2]}`, default_branch: 'main' }];
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)$/.exec(call.path)) && call.method === 'GET') {
      const key = `${m[1]}/${m[2]}#${m[3]}`;
      return [200, { number: Number(m[3]), title: this.issues.get(key) ?? `Issue ${m[3]}`, html_url: web(`${m[1]}/${m[2]}/issues/${m[3]}`) }];
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/pulls$/.exec(call.path))) {
      const repo = `${m[1]}/${m[2]}`;
      const pulls = this.pulls.get(repo) ?? [];
      if (call.method === 'GET') {
        const head = call.query.head?.split(':')[1];
        return [200, pulls.filter((p) => head === undefined || p.head === head)];
      }
      const body = call.body as { title?: string; head?: string; base?: string; body?: string };
      if (!body.title || !body.head || !body.base) return [422, { message: 'Validation Failed' }];
      if (pulls.some((p) => p.head === body.head && p.state === 'open')) return [422, { message: `A pull request already exists for ${m[1]}:${body.head}.` }];
      const number = 1000 + this.nextId++;
      const pull = { number, html_url: web(`${repo}/pull/${number}`), state: 'open', title: body.title, head: body.head, base: body.base, body: body.body ?? '' };
      this.pulls.set(repo, [...pulls, pull]);
      return [201, pull];
    }
    if ((m = /^\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/.exec(call.path))) {
      const key = `${m[1]}/${m[2]}#${m[3]}`;
      const comments = this.comments.get(key) ?? [];
      if (call.method === 'GET') {
        const perPage = Number(call.query.per_page ?? 30);
        const page = Number(call.query.page ?? 1);
        return [200, comments.slice((page - 1) * perPage, page * perPage)];
      }
      const id = this.nextId++;
      const comment = { id, html_url: web(`${m[1]}/${m[2]}/issues/${m[3]}#issuecomment-${id}`), body: String((call.body as { body?: unknown }).body ?? '') };
      this.comments.set(key, [...comments, comment]);
      return [201, comment];
    }
    return [404, { message: 'Not Found' }];
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
