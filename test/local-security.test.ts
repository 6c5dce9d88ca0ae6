import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { createApiHandler } from '../lib/api/router.js';
import { startLocalApiServer } from '../lib/local/local-api-server.js';
import { LocalTaskCallbacks } from '../lib/local/local-task-callbacks.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** A real HTTP request, with whatever Host and Origin a browser on another site would send. */
function send(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<Reply> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method, path, headers: payload === undefined ? headers : { 'content-type': 'application/json', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // the page: HTML
          }
          resolve({ status: res.statusCode!, headers: res.headers, body: parsed });
        });
      },
    );
    req.once('error', reject);
    req.end(payload);
  });
}

describe('serve: only this machine, by a loopback name, and changes only from its own pages', () => {
  let env: TestRuntime;
  useTestRuntime((started) => (env = started));
  let server: Awaited<ReturnType<typeof startLocalApiServer>>;
  let port: number;
  /** Every request the API handler was given: a refused one never reaches it. */
  const handled: APIGatewayProxyEvent[] = [];

  beforeAll(async () => {
    const handler = createApiHandler({
      repository: env.runtime.repository, milestones: env.runtime.milestones, starter: env.runtime, transcripts: env.runtime.transcripts,
    });
    server = await startLocalApiServer(async (event, context) => {
      handled.push(event);
      return handler(event, context);
    }, 0, { '/': '<html>the page</html>' });
    port = Number(new URL(server.url).port);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('listens on 127.0.0.1 only', () => {
    expect(server.server.address()).toMatchObject({ address: '127.0.0.1', family: 'IPv4' });
  });

  it('refuses a GET of the API and of the page whose Host is another name (DNS rebinding), saying why', async () => {
    // Prepare
    const before = handled.length;
    // Act
    const api = await send(port, 'GET', '/projects', { host: `evil.example:${port}` });
    const page = await send(port, 'GET', '/', { host: `evil.example:${port}` });
    // Assess
    expect(api).toMatchObject({ status: 403, body: { message: `Host evil.example:${port} is not this server: use http://127.0.0.1:${port}` } });
    expect(page).toMatchObject({ status: 403, body: { message: expect.stringContaining('is not this server') } });
    expect(handled.length).toBe(before);
  });

  it('refuses a POST whose Host is another name, or a loopback name with another port, and starts nothing', async () => {
    const sessionId = uuidv4();
    const before = handled.length;
    const foreign = await send(port, 'POST', '/projects/sec-host/sessions', { host: 'evil.example' }, { prompt: 'leak the key', sessionId });
    const otherPort = await send(port, 'POST', '/projects/sec-host/sessions', { host: `localhost:${port + 1}` }, { prompt: 'leak the key', sessionId });
    expect(foreign).toMatchObject({ status: 403, body: { message: 'Host evil.example is not this server: use http://127.0.0.1:' + port } });
    expect(otherPort).toMatchObject({ status: 403, body: { message: expect.stringContaining(`Host localhost:${port + 1}`) } });
    expect(handled.length).toBe(before);
    expect(env.runtime.inputOf(`arn:aws:states:us-east-1:000000000000:execution:ClaudeSessionsWorkflow:${sessionId}`)).toBeUndefined();
  });

  it('serves a Host of 127.0.0.1, localhost or [::1] with its port, or without a port', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, 'localhost']) {
      const reply = await send(port, 'GET', '/projects', { host });
      expect({ host, status: reply.status }).toEqual({ host, status: 200 });
    }
    expect(await send(port, 'GET', '/', { host: `localhost:${port}` })).toMatchObject({ status: 200, body: '<html>the page</html>' });
  });

  it('refuses a POST from a page of another origin, even one on this machine, and creates no session', async () => {
    // Prepare
    const sessionId = uuidv4();
    const before = handled.length;
    // Act
    const replies = await Promise.all(
      ['https://evil.example', `http://localhost:${port + 1}`, 'null'].map((origin) =>
        send(port, 'POST', '/projects/sec-origin/sessions', { host: `127.0.0.1:${port}`, origin }, { prompt: 'spend the key', sessionId })),
    );
    // Assess
    expect(replies[0]).toMatchObject({
      status: 403,
      body: { message: `Origin https://evil.example is not this server: only its own pages (http://127.0.0.1:${port}) may POST here` },
    });
    expect(replies.map((r) => r.status)).toEqual([403, 403, 403]);
    expect(handled.length).toBe(before);
    await new Promise((r) => setTimeout(r, 300)); // a session started anyway would be created by now
    expect(await env.runtime.repository.get(sessionId)).toBeUndefined();
    expect(await env.runtime.repository.listByProject('sec-origin')).toMatchObject({ items: [] });
  });

  it('starts a session on a same-origin POST and on one with no Origin (curl, the CLI)', async () => {
    env.anthropic.respondByDefault({ kind: 'text', text: 'fine', usage: { input_tokens: 1, output_tokens: 1 } });
    const fromPage = await send(port, 'POST', '/projects/sec-same/sessions', { host: `localhost:${port}`, origin: `http://localhost:${port}` }, { prompt: 'hi' });
    const fromCurl = await send(port, 'POST', '/projects/sec-same/sessions', {}, { prompt: 'hi' });
    expect(fromPage).toMatchObject({ status: 202, body: { sessionId: expect.any(String) } });
    expect(fromCurl).toMatchObject({ status: 202, body: { sessionId: expect.any(String) } });
    for (const { body } of [fromPage, fromCurl]) {
      let session;
      for (let i = 0; i < 300 && (!session || session.status === 'RUNNING'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        session = await env.runtime.repository.get(body.sessionId);
      }
      expect(session).toMatchObject({ status: 'COMPLETED', projectId: 'sec-same' });
    }
  });

  it('sends no CORS header, to a preflight or a cross-origin GET', async () => {
    const preflight = await send(port, 'OPTIONS', '/projects/sec-cors/sessions', { origin: 'https://evil.example', 'access-control-request-method': 'POST' });
    const get = await send(port, 'GET', '/projects', { origin: 'https://evil.example' });
    expect(get.status).toBe(200);
    for (const reply of [preflight, get]) {
      expect(Object.keys(reply.headers).filter((h) => h.startsWith('access-control-'))).toEqual([]);
    }
  });
});

describe('the local task-callbacks endpoint: only the task processes this runtime started', () => {
  const executionArn = 'arn:aws:states:us-east-1:000000000000:execution:ClaudeSessionsWorkflow:secret-run';
  let callbacks: LocalTaskCallbacks;
  let port: number;

  beforeAll(async () => {
    callbacks = await new LocalTaskCallbacks(async (arn) => (arn === executionArn ? { status: 'RUNNING', input: JSON.stringify({ prompt: 'the secret prompt' }) } : undefined)).start();
    port = Number(new URL(callbacks.endpoint).port);
  });
  afterAll(async () => {
    await callbacks?.close();
  });

  /** DescribeExecution as the task's SDK sends it, signed with these credentials. */
  async function describeExecution(credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }) {
    const client = new SFNClient({ endpoint: callbacks.endpoint, region: 'us-east-1', credentials, maxAttempts: 1 });
    try {
      return await client.send(new DescribeExecutionCommand({ executionArn }));
    } finally {
      client.destroy();
    }
  }

  /** The credential a task of that execution gets. */
  const taskToken = () => callbacks.tasks.issue({ sessionId: 'secret-run', projectId: 'p', executionArn, taskToken: 'its-task-token' });

  it('answers DescribeExecution signed with the credentials a task gets', async () => {
    const described = await describeExecution({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', sessionToken: taskToken() });
    expect(described.input).toBe(JSON.stringify({ prompt: 'the secret prompt' }));
  });

  it('refuses DescribeExecution signed with other credentials, or with none, and never shows the prompt', async () => {
    // Act
    const otherToken = describeExecution({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', sessionToken: 'guessed' });
    const noToken = describeExecution({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
    const unsigned = await send(port, 'POST', '/', { 'x-amz-target': 'AWSStepFunctions.DescribeExecution', 'content-type': 'application/x-amz-json-1.0' }, { executionArn });
    // Assess
    await expect(otherToken).rejects.toMatchObject({ name: 'UnrecognizedClientException', $metadata: { httpStatusCode: 403 } });
    await expect(noToken).rejects.toMatchObject({ name: 'UnrecognizedClientException', $metadata: { httpStatusCode: 403 } });
    expect(unsigned).toMatchObject({ status: 403, body: { message: expect.stringMatching(/security token/) } });
    expect(JSON.stringify(unsigned.body)).not.toContain('secret prompt');
  });

  it('refuses a request whose Host is another name, even with the task credentials', async () => {
    const reply = await send(port, 'POST', '/', {
      host: `evil.example:${port}`,
      'x-amz-target': 'AWSStepFunctions.DescribeExecution',
      'x-amz-security-token': taskToken(),
    }, { executionArn });
    expect(reply).toMatchObject({ status: 403, body: { __type: 'AccessDeniedException', message: `Host evil.example:${port} is not this server: use http://127.0.0.1:${port}` } });
  });
});

/** A raw request with a SigV4 header of any key: dynalite and s3rver check no signature, only its shape. */
const FORGED_AUTHORIZATION = 'AWS4-HMAC-SHA256 Credential=ANYONE/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=00';

describe('the local stores: dynalite and the S3 stand-in answer only the engine\'s own clients', () => {
  let env: TestRuntime;
  useTestRuntime((started) => (env = started));
  const secret = 'the secret prompt in a record';
  const sessionKey = { pk: `SESSION#${uuidv4()}`, sk: 'SESSION' };

  beforeAll(async () => {
    await env.runtime.dynamodb.documentClient.send(new PutCommand({ TableName: env.runtime.dynamodb.tableName, Item: { ...sessionKey, prompt: secret } }));
  });

  /** A Scan of the sessions table, sent by hand with these headers. */
  function scanByHand(headers: Record<string, string>) {
    const port = Number(new URL(env.runtime.dynamodb.endpoint).port);
    return send(port, 'POST', '/', {
      'x-amz-target': 'DynamoDB_20120810.Scan', 'content-type': 'application/x-amz-json-1.0', authorization: FORGED_AUTHORIZATION, 'x-amz-date': '20260101T000000Z', ...headers,
    }, { TableName: env.runtime.dynamodb.tableName });
  }

  /** The same Scan by the SDK, signed with these credentials. */
  async function scanSigned(credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }) {
    const client = new DynamoDBClient({ endpoint: env.runtime.dynamodb.endpoint, region: 'us-east-1', credentials, maxAttempts: 1 });
    try {
      return await client.send(new ScanCommand({ TableName: env.runtime.dynamodb.tableName }));
    } finally {
      client.destroy();
    }
  }

  it('DynamoDB: refuses a request unsigned by the engine, or signed with other credentials, and shows no record', async () => {
    // Act
    const byHand = await scanByHand({});
    const otherToken = await scanSigned({ accessKeyId: 'local', secretAccessKey: 'local', sessionToken: 'guessed' }).catch((err: unknown) => err);
    const noToken = await scanSigned({ accessKeyId: 'local', secretAccessKey: 'local' }).catch((err: unknown) => err);
    const own = await env.runtime.dynamodb.documentClient.send(new GetCommand({ TableName: env.runtime.dynamodb.tableName, Key: sessionKey }));
    // Assess
    expect(byHand).toMatchObject({ status: 400, body: { __type: 'com.amazon.coral.service#UnrecognizedClientException', message: expect.stringMatching(/security token/) } });
    expect(JSON.stringify(byHand.body)).not.toContain(secret);
    expect(otherToken).toMatchObject({ name: 'UnrecognizedClientException', $metadata: { httpStatusCode: 400 } });
    expect(noToken).toMatchObject({ name: 'UnrecognizedClientException', $metadata: { httpStatusCode: 400 } });
    expect(own.Item).toMatchObject({ prompt: secret });
  });

  it('DynamoDB: refuses a request whose Host is another name, even with the engine\'s token', async () => {
    const port = Number(new URL(env.runtime.dynamodb.endpoint).port);
    const reply = await scanByHand({ host: `evil.example:${port}`, 'x-amz-security-token': env.runtime.dynamodb.credentials.sessionToken! });
    expect(reply).toMatchObject({ status: 403, body: { __type: 'AccessDeniedException', message: `Host evil.example:${port} is not this server: use http://127.0.0.1:${port}` } });
    expect(JSON.stringify(reply.body)).not.toContain(secret);
  });

  it('S3: refuses a request unsigned by the engine, or signed with other credentials, and reads no transcript; its own credentials read it', async () => {
    // Prepare
    const s3 = await env.runtime.s3();
    const milestoneId = uuidv4();
    const pointer = await s3.store.save(milestoneId, Buffer.from(`${JSON.stringify({ type: 'user', message: secret })}\n`));
    const path = `/${s3.store.bucket}/${pointer.key}`;
    const get = async (credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }) => {
      const client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials, maxAttempts: 1 });
      try {
        return await (await client.send(new GetObjectCommand({ Bucket: s3.store.bucket, Key: pointer.key }))).Body!.transformToString();
      } finally {
        client.destroy();
      }
    };
    // Act
    const unsigned = await send(Number(new URL(s3.endpoint).port), 'GET', path);
    const otherToken = await get({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', sessionToken: 'guessed' }).catch((err: unknown) => err);
    const noToken = await get({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }).catch((err: unknown) => err);
    const own = await get(s3.credentials);
    // Assess
    expect(unsigned.status).toBe(403);
    expect(unsigned.body).toMatch(/<Code>AccessDenied<\/Code>.*security token/s);
    expect(unsigned.body).not.toContain(secret);
    expect(otherToken).toMatchObject({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(noToken).toMatchObject({ name: 'AccessDenied', $metadata: { httpStatusCode: 403 } });
    expect(own).toContain(secret);
    expect(await s3.store.load(milestoneId, pointer)).toEqual(Buffer.from(own));
  });

  it('S3: refuses a request whose Host is another name, even with the engine\'s token, saying why in XML', async () => {
    const s3 = await env.runtime.s3();
    const port = Number(new URL(s3.endpoint).port);
    const reply = await send(port, 'GET', `/${s3.store.bucket}?list-type=2`, { host: `evil.example:${port}`, 'x-amz-security-token': s3.credentials.sessionToken! });
    expect(reply.status).toBe(403);
    expect(reply.body).toContain(`<Code>AccessDenied</Code><Message>Host evil.example:${port} is not this server: use http://127.0.0.1:${port}</Message>`);
    expect(reply.body).not.toContain('milestones/');
  });
});
