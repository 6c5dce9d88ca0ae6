import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { AwsCredentialIdentity } from '@smithy/types';
import { codeCommitGitCredentials } from '../../lib/claude/codecommit-credentials.js';
import { git } from './git-remote.js';
import { gitHttpBackend } from './git-http-backend.js';

/** The host git is told to reach, and which the password must be signed for. */
export const CODECOMMIT_HOST = 'git-codecommit.eu-west-1.amazonaws.com';

/** What the stand-in saw of one request: its path, and the credentials it carried. */
export interface SeenRequest {
  path: string;
  username?: string;
  password?: string;
  accepted: boolean;
}

/**
 * CodeCommit's git over https, on 127.0.0.1: each request must carry the Basic credentials that
 * `credentials` sign for the repository's CodeCommit URL at the password's own timestamp (at most
 * five minutes old), else 403; an accepted one is served by `git http-backend` as a CGI.
 */
export class CodeCommitStandIn {
  readonly requests: SeenRequest[] = [];
  /** The runner's credentials as IAM knows them: what the signature is checked against. */
  credentials: AwsCredentialIdentity;
  private server?: Server;

  constructor(private readonly root: string, credentials: AwsCredentialIdentity) {
    this.credentials = credentials;
  }

  /** Where git reaches it (RunnerConfig.codeCommitEndpoint). */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  /** Serves the bare repository at `<root>/<name>`, pushes enabled; returns its CodeCommit URL. */
  serve(name: string): string {
    git(join(this.root, name), 'config', 'http.receivepack', 'true');
    return `https://${CODECOMMIT_HOST}/v1/repos/${name}`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res).catch((err: Error) => res.writeHead(500).end(err.message)));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
    return this;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const [, name, rest] = /^\/v1\/repos\/([A-Za-z0-9._-]+)(\/.*)$/.exec(url.pathname) ?? [];
    const [username, password] = Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString().split(/:(.*)/s);
    const seen: SeenRequest = { path: url.pathname, username: username || undefined, password, accepted: false };
    this.requests.push(seen);
    if (!req.headers.authorization) {
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="codecommit"' }).end();
      return;
    }
    const timestamp = /^(\d{8}T\d{6})Z[0-9a-f]{64}$/.exec(password ?? '')?.[1];
    const signedAt = timestamp ? new Date(timestamp.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)$/, '$1-$2-$3T$4:$5:$6Z')) : undefined;
    const expected = name && signedAt
      ? await codeCommitGitCredentials({ host: CODECOMMIT_HOST, region: 'eu-west-1', name, path: `/v1/repos/${name}` }, this.credentials, signedAt)
      : undefined;
    const fresh = signedAt && Math.abs(Date.now() - signedAt.getTime()) < 300_000;
    if (!expected || !fresh || username !== expected.username || password !== expected.password) {
      res.writeHead(403).end('signature does not match');
      return;
    }
    seen.accepted = true;
    await gitHttpBackend(this.root, req, res, `/${name}${rest}`, url.search.slice(1));
  }
}
