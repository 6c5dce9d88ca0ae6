import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { git } from './git-remote.js';
import { gitHttpBackend } from './git-http-backend.js';

/** What one request carried: the host it named, its path, and its Authorization header. */
export interface SeenGitRequest {
  host: string;
  path: string;
  authorization?: string;
}

/**
 * Git's smart https on 127.0.0.1 (and `localhost`, a second host name for the same server), with
 * a self-signed certificate git is told to trust through GIT_SSL_CAINFO (which the runner's git
 * passes on). Anyone may clone and push: it records what each request carried, so a test sees
 * which host got the token. `redirect` answers a repository's requests with a 302 elsewhere.
 */
export class HttpsGitRemote {
  readonly requests: SeenGitRequest[] = [];
  readonly redirects = new Map<string, string>();
  /**
   * Who may fetch and push, when set (a GitHub App's installation tokens: GitHubStandIn.gitAccess);
   * a request it refuses is answered 401. Unset, anyone may.
   */
  authorize?: (request: { owner: string; repo: string; authorization?: string; push: boolean }) => boolean;
  /** Each request waits this long before it is answered: a slow host. */
  delayMs = 0;
  readonly caFile: string;
  private readonly root = mkdtempSync(join(tmpdir(), 'https-remote-'));
  private server?: Server;

  constructor() {
    this.caFile = join(this.root, 'cert.pem');
    const made = spawnSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(this.root, 'key.pem'), '-out', this.caFile,
    ], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`openssl could not make the test certificate: ${made.stderr}`);
  }

  async start(): Promise<this> {
    const tls = { key: readFileSync(join(this.root, 'key.pem')), cert: readFileSync(this.caFile) };
    this.server = createServer(tls, async (req, res) => {
      if (this.delayMs) await new Promise((resolve) => setTimeout(resolve, this.delayMs));
      const url = new URL(req.url ?? '/', 'https://127.0.0.1');
      this.requests.push({ host: req.headers.host ?? '', path: url.pathname, authorization: req.headers.authorization });
      const [, owner = '', repo = ''] = /^\/([^/]+)\/([^/]+?)(?:\.git)?\//.exec(url.pathname) ?? [];
      const push = url.pathname.endsWith('/git-receive-pack') || url.searchParams.get('service') === 'git-receive-pack';
      if (this.authorize && !this.authorize({ owner, repo, authorization: req.headers.authorization, push })) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="GitHub"' }).end('Invalid username or token.');
        return;
      }
      const moved = [...this.redirects].find(([from]) => url.pathname.startsWith(from));
      if (moved) {
        res.writeHead(302, { location: `${moved[1]}${url.pathname.slice(moved[0].length)}${url.search}` }).end();
        return;
      }
      void gitHttpBackend(this.root, req, res, url.pathname, url.search.slice(1)).catch((err: Error) => res.writeHead(500).end(err.message));
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    return this;
  }

  get port(): number {
    return (this.server!.address() as AddressInfo).port;
  }

  /** A bare repository at `<owner>/<name>.git` with one commit on main; returns its https URL. */
  repository(owner: string, name: string, host = '127.0.0.1'): string {
    const seed = join(this.root, 'seeds', owner, name);
    mkdirSync(seed, { recursive: true });
    git(seed, 'init', '--quiet', '--initial-branch=main');
    git(seed, 'commit', '--quiet', '--allow-empty', '-m', 'seed');
    const bare = join(this.root, owner, `${name}.git`);
    git(this.root, 'clone', '--quiet', '--bare', seed, bare);
    git(bare, 'config', 'http.receivepack', 'true');
    return this.url(owner, name, host);
  }

  /** Where a repository's bare directory is, to inspect it with git. */
  barePath(repo: string): string {
    return join(this.root, new URL(repo).pathname);
  }

  url(owner: string, name: string, host = '127.0.0.1'): string {
    return `https://${host}:${this.port}/${owner}/${name}.git`;
  }

  /** The Authorization headers that reached `host` (as the request named it). */
  authorizationsAt(host: string): (string | undefined)[] {
    return this.requests.filter((r) => r.host.startsWith(`${host}:`)).map((r) => r.authorization);
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
