import { cbor } from '@smithy/core/cbor';
import { HttpRequest } from '@smithy/core/protocols';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity } from '@smithy/types';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/** One AWS API call as the caller made it: what IAM would be asked to allow. */
export interface RecordedCall {
  /** The principal whose `envFor` credentials signed the call, or 'unknown'. */
  principal: string;
  /** The signing name from the SigV4 credential scope (the IAM prefix): dynamodb, s3, states, events, secretsmanager, ... */
  service: string;
  /** The API operation: UpdateItem, SendTaskSuccess, GetObject, ListObjectsV2, ... */
  action: string;
  /** The request's JSON (or CBOR) body; for S3 { Bucket, Key?, prefix?, CopySource? }. */
  params: Record<string, unknown>;
}

export type AwsCallHandler = (params: any) => unknown | Promise<unknown>;

/**
 * What a 'lambda.Invoke' handler answers: the function's result, or the error it threw (Lambda
 * answers 200 either way, the error's JSON as the payload, marked by X-Amz-Function-Error).
 */
export type LambdaInvocation = { result: unknown } | { error: { errorType: string; errorMessage: string } };

/** A store calls are forwarded to, and the credentials it admits (LocalDynamoDb and LocalS3 are ones). */
export interface AwsUpstream {
  endpoint: string;
  credentials?: AwsCredentialIdentity;
}

export interface RecordingAwsEndpointOptions {
  /** Where calls of these services are served: a dynalite and an s3rver. */
  upstreams?: { dynamodb?: AwsUpstream; s3?: AwsUpstream };
  /**
   * Replies for other calls, by '<service>.<Action>' (service as in the credential scope: 'secretsmanager.GetSecretValue', 'states.SendTaskSuccess').
   * An AWS Query call (STS) returns { xml }: the inside of its <ActionResult> element.
   */
  handlers?: Record<string, AwsCallHandler>;
}

const REGION = 'us-east-1';
const SECRET_ACCESS_KEY = 'recording-aws-endpoint';
/** s3rver's only account, for an upstream that names no credentials (see lib/local/local-s3.ts). */
const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
/** The services the project's code calls: their own variables win over AWS_ENDPOINT_URL, so an inherited one would route calls past the recorder. */
const SERVICE_ENDPOINT_VARIABLES = ['DYNAMODB', 'S3', 'SFN', 'SECRETS_MANAGER', 'EVENTBRIDGE', 'LAMBDA', 'STS'];
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);

type Protocol = 'json' | 'rpc-v2-cbor' | 'rpc-v2-json' | 'query' | 'rest';

interface RpcCall {
  protocol: Protocol;
  action: string;
  params: Record<string, unknown>;
  /** The content type a JSON reply must carry (application/x-amz-json-1.0 or 1.1). */
  contentType: string;
}

/**
 * A local AWS endpoint for processes that each stand for one IAM principal: every call is
 * recorded (principal, service, action, params) and then served by dynalite, s3rver or a
 * handler, so tests can hold the calls against the principal's IAM policy.
 */
export class RecordingAwsEndpoint {
  readonly calls: RecordedCall[] = [];
  private readonly principals = new Map<string, string>();
  private readonly agent = new Agent({ keepAlive: true });
  private readonly s3Signer: SignatureV4;

  private constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly upstreams: { dynamodb?: AwsUpstream; s3?: AwsUpstream },
    private readonly handlers: Record<string, AwsCallHandler>,
  ) {
    this.s3Signer = new SignatureV4({
      service: 's3',
      region: REGION,
      credentials: upstreams.s3?.credentials ?? S3RVER_CREDENTIALS,
      // The hash the SDK's own Node runtime config gives its signer.
      sha256: Hash.bind(null, 'sha256'),
      // S3 signs the path as sent, without encoding it a second time.
      uriEscapePath: false,
      applyChecksum: true,
    });
  }

  static async start(options: RecordingAwsEndpointOptions = {}): Promise<RecordingAwsEndpoint> {
    let endpoint: RecordingAwsEndpoint | undefined;
    const server = createServer((req, res) => {
      endpoint!.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) replyJson(res, 500, 'application/json', { __type: 'InternalFailure', message: String(err) });
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    endpoint = new RecordingAwsEndpoint(server, `http://127.0.0.1:${port}`, options.upstreams ?? {}, options.handlers ?? {});
    return endpoint;
  }

  /** Environment for a process acting as `principal`: AWS_ENDPOINT_URL, region us-east-1, credentials whose access key id encodes the principal. */
  envFor(principal: string): Record<string, string> {
    // Hex keeps any principal name (ARNs, construct paths) free of the '/' that separates the credential scope.
    const accessKeyId = `LOCAL${Buffer.from(principal, 'utf8').toString('hex').toUpperCase()}`;
    this.principals.set(accessKeyId, principal);
    const env: Record<string, string> = {
      AWS_ENDPOINT_URL: this.url,
      AWS_REGION: REGION,
      AWS_DEFAULT_REGION: REGION,
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: SECRET_ACCESS_KEY,
    };
    for (const service of SERVICE_ENDPOINT_VARIABLES) env[`AWS_ENDPOINT_URL_${service}`] = this.url;
    return env;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.agent.destroy();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const scope = credentialScope(req.headers.authorization);
    const principal = (scope && this.principals.get(scope.accessKeyId)) ?? 'unknown';
    const service = scope?.service ?? 'unknown';
    if (service === 's3') return this.s3(req, res, principal, body);

    const call = rpcCall(req, body);
    this.calls.push({ principal, service, action: call.action, params: call.params });
    if (service === 'dynamodb' && this.upstreams.dynamodb) {
      // dynalite does not check signatures: the request goes on as it came, with the token the store admits.
      const headers = plainHeaders(req.headers);
      delete headers['x-amz-security-token'];
      const token = this.upstreams.dynamodb.credentials?.sessionToken;
      if (token) headers['x-amz-security-token'] = token;
      return this.forward(this.upstreams.dynamodb.endpoint, req.method ?? 'POST', req.url ?? '/', headers, body, res);
    }
    const handler = this.handlers[`${service}.${call.action}`];
    if (handler && service === 'lambda' && call.action === 'Invoke') return replyInvocation(res, await handler(call.params) as LambdaInvocation);
    if (!handler || call.protocol === 'rest') {
      return replyError(res, call, 'UnknownOperationException', `No handler or upstream for ${service}.${call.action} (called by ${principal})`);
    }
    let result: unknown;
    try {
      result = await handler(call.params);
    } catch (err) {
      if (err instanceof Error) return replyError(res, call, err.name, err.message);
      return replyError(res, call, 'InternalFailure', String(err), 500);
    }
    if (call.protocol === 'query') return replyQuery(res, call.action, (result as { xml?: string } | undefined)?.xml ?? '');
    replyResult(res, call, result ?? {});
  }

  private async s3(req: IncomingMessage, res: ServerResponse, principal: string, received: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    // Path-style addressing: the SDK uses it for an IP endpoint (and with forcePathStyle).
    const [, bucketSegment = '', ...keySegments] = url.pathname.split('/');
    const bucket = bucketSegment ? decodeURIComponent(bucketSegment) : undefined;
    const key = keySegments.length && keySegments.join('/') ? decodeURIComponent(keySegments.join('/')) : undefined;
    const method = req.method ?? 'GET';
    const action = s3Action(method, bucket, key, url.searchParams, req.headers);
    const params: Record<string, unknown> = {};
    if (bucket !== undefined) params.Bucket = bucket;
    if (key !== undefined) params.Key = key;
    if (action.startsWith('ListObject') && url.searchParams.has('prefix')) params.prefix = url.searchParams.get('prefix');
    const copySource = req.headers['x-amz-copy-source'];
    if (typeof copySource === 'string') params.CopySource = decodeURIComponent(copySource);
    this.calls.push({ principal, service: 's3', action, params });

    if (!this.upstreams.s3) {
      return replyS3Error(res, 'UnknownOperationException', `No upstream for s3.${action} (called by ${principal})`);
    }
    const headers = plainHeaders(req.headers);
    let body = received;
    if (headers['content-encoding']?.split(',').some((e) => e.trim() === 'aws-chunked')) {
      // The SDK streams bodies as aws-chunked with a checksum trailer, which s3rver would
      // store verbatim: the payload goes on decoded, the trailer as ordinary headers.
      const decoded = decodeAwsChunked(received);
      const expected = Number(headers['x-amz-decoded-content-length']);
      if (Number.isFinite(expected) && expected !== decoded.payload.length) {
        return replyS3Error(res, 'IncompleteBody', `aws-chunked body decoded to ${decoded.payload.length} bytes, x-amz-decoded-content-length says ${expected}`);
      }
      body = decoded.payload;
      const encodings = headers['content-encoding'].split(',').map((e) => e.trim()).filter((e) => e && e !== 'aws-chunked');
      if (encodings.length) headers['content-encoding'] = encodings.join(', ');
      else delete headers['content-encoding'];
      delete headers['x-amz-decoded-content-length'];
      delete headers['x-amz-trailer'];
      Object.assign(headers, decoded.trailers);
    }
    // s3rver knows only its own credentials: the request is signed again with them, by the SDK's signer.
    for (const name of ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256', 'content-length', 'expect']) delete headers[name];
    const upstream = new URL(this.upstreams.s3.endpoint);
    headers.host = upstream.host;
    if (body.length || method === 'PUT' || method === 'POST') headers['content-length'] = String(body.length);
    const query: Record<string, string | string[]> = {};
    for (const [name, value] of url.searchParams) {
      const had = query[name];
      query[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
    }
    const signed = await this.s3Signer.sign(
      new HttpRequest({
        method,
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port ? Number(upstream.port) : undefined,
        path: url.pathname,
        query,
        headers,
        body: body.length ? body : undefined,
      }),
    );
    return this.forward(this.upstreams.s3.endpoint, method, req.url ?? '/', signed.headers, body, res);
  }

  /** Sends the request to `upstream` and streams its reply back unchanged. */
  private forward(upstream: string, method: string, path: string, headers: Record<string, string>, body: Buffer, res: ServerResponse): Promise<void> {
    const target = new URL(upstream);
    const outgoing: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) if (!HOP_BY_HOP.has(name.toLowerCase())) outgoing[name] = value;
    outgoing.host = target.host;
    return new Promise<void>((resolve) => {
      const upstreamRequest = httpRequest(
        { agent: this.agent, hostname: target.hostname, port: target.port, method, path, headers: outgoing },
        (upstreamResponse) => {
          const replyHeaders: OutgoingHttpHeaders = {};
          for (const [name, value] of Object.entries(upstreamResponse.headers)) {
            if (value !== undefined && !HOP_BY_HOP.has(name)) replyHeaders[name] = value;
          }
          res.writeHead(upstreamResponse.statusCode ?? 502, replyHeaders);
          upstreamResponse.pipe(res);
          upstreamResponse.on('end', resolve);
          upstreamResponse.on('error', () => {
            res.destroy();
            resolve();
          });
        },
      );
      upstreamRequest.on('error', (err) => {
        if (!res.headersSent) replyJson(res, 502, 'application/json', { __type: 'UpstreamUnavailable', message: `${upstream}: ${err.message}` });
        else res.destroy();
        resolve();
      });
      upstreamRequest.end(body);
    });
  }
}

/** `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/dynamodb/aws4_request, ...` */
function credentialScope(authorization: string | undefined): { accessKeyId: string; region: string; service: string } | undefined {
  const match = /Credential=([^/,\s]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(authorization ?? '');
  return match ? { accessKeyId: match[1]!, region: match[2]!, service: match[3]! } : undefined;
}

/** Action and params of a non-S3 call, by the protocol the client spoke. */
function rpcCall(req: IncomingMessage, body: Buffer): RpcCall {
  const contentType = headerValue(req.headers['content-type']) ?? '';
  const target = headerValue(req.headers['x-amz-target']);
  if (target) {
    // AWS JSON 1.0 / 1.1: 'DynamoDB_20120810.UpdateItem', 'AWSStepFunctions.SendTaskSuccess', 'secretsmanager.GetSecretValue'.
    return {
      protocol: 'json',
      action: target.slice(target.lastIndexOf('.') + 1),
      params: body.length ? asRecord(JSON.parse(body.toString('utf8'))) : {},
      contentType: contentType || 'application/x-amz-json-1.1',
    };
  }
  const smithyProtocol = headerValue(req.headers['smithy-protocol'])?.toLowerCase();
  const operation = /\/service\/[^/]+\/operation\/([^/?]+)/.exec(req.url ?? '');
  if (operation && (smithyProtocol === 'rpc-v2-cbor' || smithyProtocol === 'rpc-v2-json')) {
    const cborBody = smithyProtocol === 'rpc-v2-cbor';
    const decoded: unknown = !body.length ? {} : cborBody ? cbor.deserialize(body) : JSON.parse(body.toString('utf8'));
    return {
      protocol: smithyProtocol,
      action: decodeURIComponent(operation[1]!),
      params: asRecord(decoded),
      contentType: cborBody ? 'application/cbor' : 'application/json',
    };
  }
  if (contentType.startsWith('application/x-www-form-urlencoded')) {
    // AWS Query (STS, SQS of old SDKs, CloudWatch): Action=...&Version=...&params.
    const form = new URLSearchParams(body.toString('utf8'));
    const action = form.get('Action');
    if (action) {
      const params: Record<string, unknown> = {};
      for (const [name, value] of form) if (name !== 'Action' && name !== 'Version') params[name] = value;
      return { protocol: 'query', action, params, contentType: 'text/xml' };
    }
  }
  // Lambda's Invoke (REST: POST /2015-03-31/functions/{FunctionName}/invocations): its params as IAM reads them, and the event.
  const invocation = /^\/2015-03-31\/functions\/([^/]+)\/invocations(?:\?(.*))?$/.exec(req.url ?? '');
  if (invocation && req.method === 'POST') {
    const query = new URLSearchParams(invocation[2] ?? '');
    const params: Record<string, unknown> = { FunctionName: decodeURIComponent(invocation[1]!), Payload: body.length ? JSON.parse(body.toString('utf8')) : null };
    if (query.get('Qualifier')) params.Qualifier = query.get('Qualifier');
    const invocationType = headerValue(req.headers['x-amz-invocation-type']);
    if (invocationType) params.InvocationType = invocationType;
    return { protocol: 'rest', action: 'Invoke', params, contentType: 'application/json' };
  }
  // Other REST services: recorded by method and path so the call shows up.
  return { protocol: 'rest', action: `${req.method ?? 'GET'} ${(req.url ?? '/').split('?')[0]}`, params: {}, contentType: 'application/json' };
}

/** The S3 operation a path-style REST request stands for. */
function s3Action(method: string, bucket: string | undefined, key: string | undefined, query: URLSearchParams, headers: IncomingHttpHeaders): string {
  // The SDK names most operations itself in the query string (?x-id=PutObject).
  const named = query.get('x-id');
  if (named) return named;
  if (bucket === undefined) return method === 'GET' ? 'ListBuckets' : `${method} /`;
  const has = (name: string) => query.has(name);
  if (key === undefined) {
    if (method === 'GET' && has('list-type')) return 'ListObjectsV2';
    if (method === 'GET' && has('versions')) return 'ListObjectVersions';
    if (method === 'GET' && has('uploads')) return 'ListMultipartUploads';
    if (method === 'GET' && has('location')) return 'GetBucketLocation';
    if (method === 'POST' && has('delete')) return 'DeleteObjects';
    const subresource = S3_BUCKET_SUBRESOURCES.find((s) => has(s.query));
    if (subresource) {
      const verb = method === 'GET' ? 'Get' : method === 'PUT' ? 'Put' : method === 'DELETE' ? 'Delete' : method;
      return `${verb}Bucket${subresource.name}`;
    }
    if (method === 'GET') return 'ListObjects';
    if (method === 'HEAD') return 'HeadBucket';
    if (method === 'PUT') return 'CreateBucket';
    if (method === 'DELETE') return 'DeleteBucket';
    return `${method} /${bucket}`;
  }
  if (has('tagging')) return method === 'GET' ? 'GetObjectTagging' : method === 'PUT' ? 'PutObjectTagging' : 'DeleteObjectTagging';
  if (has('acl')) return method === 'GET' ? 'GetObjectAcl' : 'PutObjectAcl';
  if (has('attributes')) return 'GetObjectAttributes';
  if (method === 'POST' && has('uploads')) return 'CreateMultipartUpload';
  if (method === 'POST' && has('uploadId')) return 'CompleteMultipartUpload';
  if (method === 'POST' && has('restore')) return 'RestoreObject';
  if (method === 'GET' && has('uploadId')) return 'ListParts';
  if (method === 'DELETE' && has('uploadId')) return 'AbortMultipartUpload';
  if (method === 'PUT' && has('uploadId')) return headers['x-amz-copy-source'] ? 'UploadPartCopy' : 'UploadPart';
  if (method === 'PUT') return headers['x-amz-copy-source'] ? 'CopyObject' : 'PutObject';
  if (method === 'GET') return 'GetObject';
  if (method === 'HEAD') return 'HeadObject';
  if (method === 'DELETE') return 'DeleteObject';
  return `${method} /${bucket}/${key}`;
}

const S3_BUCKET_SUBRESOURCES = [
  { query: 'tagging', name: 'Tagging' },
  { query: 'policy', name: 'Policy' },
  { query: 'cors', name: 'Cors' },
  { query: 'lifecycle', name: 'LifecycleConfiguration' },
  { query: 'versioning', name: 'Versioning' },
  { query: 'acl', name: 'Acl' },
  { query: 'encryption', name: 'Encryption' },
  { query: 'notification', name: 'NotificationConfiguration' },
  { query: 'website', name: 'Website' },
  { query: 'logging', name: 'Logging' },
  { query: 'ownershipControls', name: 'OwnershipControls' },
  { query: 'publicAccessBlock', name: 'PublicAccessBlock' },
];

/**
 * `<hex size>[;chunk-signature=...]\r\n<data>\r\n ... 0\r\n<trailer lines>\r\n\r\n`: the
 * aws-chunked content encoding (signed or unsigned chunks, optional trailing checksum).
 */
function decodeAwsChunked(body: Buffer): { payload: Buffer; trailers: Record<string, string> } {
  const parts: Buffer[] = [];
  const trailers: Record<string, string> = {};
  let offset = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', offset);
    if (lineEnd < 0) throw new Error('aws-chunked body ends inside a chunk header');
    const size = Number.parseInt(body.subarray(offset, lineEnd).toString('latin1').split(';')[0]!.trim(), 16);
    if (!Number.isFinite(size)) throw new Error('aws-chunked chunk header without a size');
    offset = lineEnd + 2;
    if (size === 0) break;
    if (offset + size > body.length) throw new Error('aws-chunked body ends inside a chunk');
    parts.push(body.subarray(offset, offset + size));
    offset += size + 2;
  }
  for (const line of body.subarray(offset).toString('latin1').split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    // The trailer's signature vouches for the client's signing only, not ours.
    if (name !== 'x-amz-trailer-signature') trailers[name] = line.slice(colon + 1).trim();
  }
  return { payload: Buffer.concat(parts), trailers };
}

function replyResult(res: ServerResponse, call: RpcCall, result: unknown): void {
  if (call.protocol === 'rpc-v2-cbor') {
    res.writeHead(200, { 'content-type': 'application/cbor', 'smithy-protocol': 'rpc-v2-cbor' });
    res.end(Buffer.from(cbor.serialize(result)));
    return;
  }
  const extra: Record<string, string> = call.protocol === 'rpc-v2-json' ? { 'smithy-protocol': 'rpc-v2-json' } : {};
  replyJson(res, 200, call.contentType, result, extra);
}

/** Lambda's answer to Invoke (RequestResponse): the payload as the body, a function error in its header. */
function replyInvocation(res: ServerResponse, invocation: LambdaInvocation): void {
  const extra: Record<string, string> = { 'x-amz-executed-version': '$LATEST' };
  if ('error' in invocation) extra['x-amz-function-error'] = 'Unhandled';
  replyJson(res, 200, 'application/json', 'error' in invocation ? invocation.error : invocation.result ?? null, extra);
}

/** An AWS Query (XML) answer: <ActionResponse><ActionResult>…</ActionResult>, as STS sends it. */
function replyQuery(res: ServerResponse, action: string, innerXml: string): void {
  res.writeHead(200, { 'content-type': 'text/xml' });
  res.end(`<${action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><${action}Result>${innerXml}</${action}Result>` +
    `<ResponseMetadata><RequestId>recording-aws-endpoint</RequestId></ResponseMetadata></${action}Response>`);
}

/** An error in the format the caller's protocol reads, so its SDK throws an exception of that name. */
function replyError(res: ServerResponse, call: RpcCall, type: string, message: string, status = 400): void {
  if (call.protocol === 'query') {
    res.writeHead(status, { 'content-type': 'text/xml' });
    res.end(`<ErrorResponse><Error><Type>Sender</Type><Code>${xmlEscape(type)}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>recording-aws-endpoint</RequestId></ErrorResponse>`);
    return;
  }
  if (call.protocol === 'rpc-v2-cbor') {
    res.writeHead(status, { 'content-type': 'application/cbor', 'smithy-protocol': 'rpc-v2-cbor' });
    res.end(Buffer.from(cbor.serialize({ __type: type, message })));
    return;
  }
  const extra: Record<string, string> = { 'x-amzn-errortype': type };
  if (call.protocol === 'rpc-v2-json') extra['smithy-protocol'] = 'rpc-v2-json';
  replyJson(res, status, call.contentType, { __type: type, message }, extra);
}

function replyS3Error(res: ServerResponse, code: string, message: string): void {
  res.writeHead(400, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(message)}</Message><RequestId>recording-aws-endpoint</RequestId></Error>`);
}

function replyJson(res: ServerResponse, status: number, contentType: string, value: unknown, extra: Record<string, string> = {}): void {
  const payload = Buffer.from(JSON.stringify(value), 'utf8');
  res.writeHead(status, { 'content-type': contentType, 'content-length': String(payload.length), ...extra });
  res.end(payload);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function plainHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const plain: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) plain[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return plain;
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : { value };
}

function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
