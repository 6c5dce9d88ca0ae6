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
        const [status, answer] = failure ? [500, { message: 'Server Error (the stand-in was told to fail)' }] as const : this.answer(call);
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

  /** The calls that created something (POST), as `POST <path>`. */
  get writes(): string[] {
    return this.calls.filter((c) => c.method === 'POST' && c.status < 300).map((c) => `POST ${c.path}`);
  }

  private answer(call: GitHubCall): [number, unknown] {
    let m: RegExpExecArray | null;
    const web = (path: string) => `https://github.example/${path}`;
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
