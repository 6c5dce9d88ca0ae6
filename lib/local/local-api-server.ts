import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { MAX_BODY_BYTES } from '../api/http-errors.js';
import { refuseForeignRequest } from './loopback-guard.js';

type ApiHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

/**
 * A route API Gateway does not have, answered on the HTTP objects (a stream of events, the local
 * engine's own routes): returns undefined when the request is not one of its own.
 */
export type LocalRoute = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | undefined;

/**
 * API Gateway on 127.0.0.1: each HTTP request becomes the REST API's proxy event for
 * the very handler that runs on AWS, and its result becomes the HTTP response. Only requests
 * to this server by a loopback name, and changes only from its own pages or from clients that
 * send no Origin, are served (loopbackRefusal): a website's page can neither rebind its name to
 * it nor post to it. No CORS headers: no other origin may read an answer.
 */
export async function startLocalApiServer(
  handler: ApiHandler,
  port: number,
  /** Pages served as they are, by path (the web view at "/"), beside the API. */
  pages: Record<string, string> = {},
  /** Tried in order before the API, behind the same Host and Origin checks. */
  localRoutes: LocalRoute[] = [],
): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (refuseForeignRequest(server, req, res)) return;
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    for (const route of localRoutes) {
      const handled = route(req, res, url);
      if (!handled) continue;
      handled.catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'Internal error' }));
        process.stderr.write(`request failed: ${(err as Error)?.stack ?? String(err)}\n`);
      });
      return;
    }
    const page = req.method === 'GET' ? pages[url.pathname] : undefined;
    if (page !== undefined) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page);
      return;
    }
    void (async () => {
      const body = await readBody(req);
      if (body === undefined) {
        res.writeHead(413, { 'content-type': 'application/json' }).end(JSON.stringify({ message: `request body is larger than ${MAX_BODY_BYTES} bytes` }));
        return;
      }
      const result = await handler(toProxyEvent(req, body), lambdaContext());
      res.writeHead(result.statusCode, result.headers as Record<string, string>);
      res.end(result.body);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'Internal error' }));
      process.stderr.write(`request failed: ${(err as Error)?.stack ?? String(err)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The body as text, or undefined when it is over the limit (API Gateway would refuse it too). */
export async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES * 2) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function toProxyEvent(req: IncomingMessage, body: string): APIGatewayProxyEvent {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(',') : v;
  const query = Object.fromEntries(url.searchParams.entries());
  const requestId = randomUUID();
  return {
    resource: '/{proxy+}',
    path: decodeURIComponent(url.pathname),
    httpMethod: req.method ?? 'GET',
    headers,
    multiValueHeaders: {},
    queryStringParameters: Object.keys(query).length ? query : null,
    multiValueQueryStringParameters: null,
    pathParameters: { proxy: url.pathname.slice(1) },
    stageVariables: null,
    body: body.length ? body : null,
    isBase64Encoded: false,
    requestContext: {
      requestId,
      stage: 'local',
      httpMethod: req.method ?? 'GET',
      path: url.pathname,
      resourcePath: '/{proxy+}',
      identity: { sourceIp: '127.0.0.1' },
    } as APIGatewayProxyEvent['requestContext'],
  };
}

function lambdaContext(): Context {
  const requestId = randomUUID();
  return {
    awsRequestId: requestId,
    functionName: 'claude-sessions-api-local',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:claude-sessions-api-local',
    memoryLimitInMB: '256',
    logGroupName: 'local',
    logStreamName: 'local',
    callbackWaitsForEmptyEventLoop: false,
    getRemainingTimeInMillis: () => 29_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
