import type { IncomingMessage, ServerResponse } from 'node:http';
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

/**
 * Answers 403 with the reason and returns true when the request is refused. `error` shapes
 * the body for a protocol that names its errors (the AWS JSON protocol's `__type`).
 */
export function refuseForeignRequest(
  server: Server,
  req: IncomingMessage,
  res: ServerResponse,
  error: { contentType: string; fields: object } = { contentType: 'application/json', fields: {} },
): boolean {
  const reason = loopbackRefusal(req, (server.address() as AddressInfo).port);
  if (reason === undefined) return false;
  res.writeHead(403, { 'content-type': error.contentType }).end(JSON.stringify({ ...error.fields, message: reason }));
  return true;
}
