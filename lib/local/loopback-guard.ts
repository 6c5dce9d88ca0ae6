import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import type { AddressInfo, Server } from 'node:net';

/** The names a loopback server answers to; with DNS rebinding a website's own name points here too (issue 17). */
const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

/** Whether a URL's hostname is one of the loopback names (`new URL('http://[::1]/').hostname` is `[::1]`). */
export function isLoopbackName(hostname: string): boolean {
  return LOOPBACK_NAMES.includes(hostname.toLowerCase());
}

/** Methods that change nothing; any other may, so where a browser sent it matters. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Why this request is refused, or undefined: its Host must name this server on a loopback
 * name (with this port when it gives one), and a request that may change state and carries an
 * Origin must come from a page of this server. Clients with no Origin (curl, the SDK, the CLI)
 * pass: a browser always sends one on such a request.
 */
export function loopbackRefusal(req: IncomingMessage, port: number): string | undefined {
  const own = `http://127.0.0.1:${port}`;
  const host = req.headers.host;
  if (!host) return `the request has no Host header: use ${own}`;
  const name = host.toLowerCase();
  if (!LOOPBACK_NAMES.some((n) => name === n || name === `${n}:${port}`)) return `Host ${host} is not this server: use ${own}`;
  const origin = req.headers.origin;
  if (origin !== undefined && !SAFE_METHODS.has(req.method ?? 'GET')) {
    const from = origin.toLowerCase();
    if (!LOOPBACK_NAMES.some((n) => from === `http://${n}:${port}`)) {
      return `Origin ${origin} is not this server: only its own pages (${own}) may ${req.method} here`;
    }
  }
  return undefined;
}

/** Answers 403 with the reason and returns true when the request is refused. */
export function refuseForeignRequest(server: Server, req: IncomingMessage, res: ServerResponse): boolean {
  const reason = loopbackRefusal(req, (server.address() as AddressInfo).port);
  if (reason === undefined) return false;
  res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ message: reason }));
  return true;
}

/** A refusal, answered in the protocol of the service a server stands in for, so its SDK throws an error of that name. */
export type Refuse = (res: ServerResponse, refusal: { status: number; code: string; message: string }) => void;

/** A refusal in the AWS JSON protocol (DynamoDB, Step Functions): the SDK names its error by `__type`. */
export const refuseAsAwsJson: Refuse = (res, { status, code, message }) => {
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0' }).end(JSON.stringify({ __type: code, message }));
};

export interface OwnClients {
  /** The secret each of the server's own clients has as its credentials' session token, which the SDK sends as x-amz-security-token. */
  sessionToken: string;
  /** The service's code for a request it forbids (answered 403): one from elsewhere, by a foreign Host or Origin. */
  foreign: string;
  /** The service's answer to credentials it does not know: no token, or another. */
  stranger: { status: number; code: string };
  refuse: Refuse;
  /** Clients with a narrower credential of their own (the local Fargate tasks): refused, as `foreign`, what their scope does not allow. */
  scoped?: ScopedClients;
}

/** A request as a scope sees it; `body` is empty unless the scope reads bodies. */
export interface ScopedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface ScopedClients {
  /** What a token other than the owners' may do: why a request is refused, or undefined; no scope for a token not given out. */
  scopeOf(token: string): ((request: ScopedRequest) => string | undefined) | undefined;
  /** Whether the scope reads the body: the request is then buffered, and handed on from the buffer. */
  readsBody: boolean;
}

/**
 * Puts a server's request listeners behind loopbackRefusal and the session token of its own
 * clients, each refusal saying why: these servers check no signature, so without it any process
 * here, or a page by DNS rebinding, could read and write what they hold (issue 17). Call it
 * before the server listens.
 */
export function admitOwnClientsOnly<S extends HttpServer>(server: S, own: OwnClients): S {
  const listeners = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  return server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const reason = loopbackRefusal(req, (server.address() as AddressInfo).port);
    if (reason !== undefined) return own.refuse(res, { status: 403, code: own.foreign, message: reason });
    const pass = (request: IncomingMessage) => {
      for (const listener of listeners) listener.call(server, request, res);
    };
    if (carriesSessionToken(req, own.sessionToken)) return pass(req);
    const token = req.headers['x-amz-security-token'];
    const scope = typeof token === 'string' ? own.scoped?.scopeOf(token) : undefined;
    if (!scope) {
      return own.refuse(res, { ...own.stranger, message: 'the security token included in the request is not one this runtime gave its own clients' });
    }
    const admit = (body: Buffer) => {
      const refusal = scope({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body });
      if (refusal !== undefined) own.refuse(res, { status: 403, code: own.foreign, message: refusal });
      return refusal === undefined;
    };
    if (!own.scoped!.readsBody) {
      if (admit(Buffer.alloc(0))) pass(req);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.once('end', () => {
      const body = Buffer.concat(chunks);
      if (admit(body)) pass(replayed(req, body));
    });
  });
}

/** The request again, its body read from a buffer: what the scope read is what the server gets. */
function replayed(req: IncomingMessage, body: Buffer): IncomingMessage {
  const copy = new PassThrough();
  Object.assign(copy, {
    method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders,
    httpVersion: req.httpVersion, socket: req.socket, connection: req.socket,
  });
  copy.end(body);
  return copy as unknown as IncomingMessage;
}

function carriesSessionToken(req: IncomingMessage, sessionToken: string): boolean {
  const token = req.headers['x-amz-security-token'];
  if (typeof token !== 'string') return false;
  // Digests, so the comparison takes the same time whatever the length or the prefix that matches.
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(token), digest(sessionToken));
}
