import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_TRANSCRIPT_BUCKET, LocalS3 } from '../lib/local/local-s3.js';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { RecordingAwsEndpoint, type RecordedCall } from './support/aws-endpoint.js';

const require = createRequire(import.meta.url);
const dynalite = require('dynalite') as (options: { createTableMs?: number }) => Server;
const execFileAsync = promisify(execFile);

const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:123456789012:stateMachine:recorded';

/**
 * What a deployed function does with the SDK, in a process of its own configured only by
 * its environment: the way the tests of the Lambda bundles will run them.
 */
const CHILD = `
import { CreateTableCommand, DynamoDBClient, GetItemCommand, PutItemCommand, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeSecretCommand, GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { Readable } from 'node:stream';

const out = {};
const db = new DynamoDBClient({});
await db.send(new CreateTableCommand({
  TableName: 'recorded', BillingMode: 'PAY_PER_REQUEST',
  AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }], KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
}));
await waitUntilTableExists({ client: db, maxWaitTime: 30, minDelay: 0.05, maxDelay: 0.2 }, { TableName: 'recorded' });
await db.send(new PutItemCommand({ TableName: 'recorded', Item: { pk: { S: 'session-1' }, status: { S: 'RUNNING' } } }));
out.item = (await db.send(new GetItemCommand({ TableName: 'recorded', Key: { pk: { S: 'session-1' } } }))).Item;

const s3 = new S3Client({});
const Bucket = process.env.BUCKET;
await s3.send(new PutObjectCommand({ Bucket, Key: 'sessions/s-1/transcript.jsonl', Body: Buffer.from('{"line":1}\\n') }));
// A stream of known length: the SDK sends it aws-chunked with a CRC32 trailer.
await s3.send(new PutObjectCommand({ Bucket, Key: 'sessions/s-1/streamed.txt', Body: Readable.from([Buffer.from('hello '), Buffer.from('world')]), ContentLength: 11 }));
out.object = await (await s3.send(new GetObjectCommand({ Bucket, Key: 'sessions/s-1/transcript.jsonl' }))).Body.transformToString();
out.streamed = await (await s3.send(new GetObjectCommand({ Bucket, Key: 'sessions/s-1/streamed.txt' }))).Body.transformToString();
out.listed = ((await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'sessions/s-1/' }))).Contents ?? []).map((c) => c.Key);

const secrets = new SecretsManagerClient({});
out.secret = (await secrets.send(new GetSecretValueCommand({ SecretId: 'anthropic-api-key' }))).SecretString;
try { await secrets.send(new DescribeSecretCommand({ SecretId: 'missing' })); } catch (err) { out.describeError = err.name; }

const sfn = new SFNClient({ maxAttempts: 1 });
try {
  await sfn.send(new StartExecutionCommand({ stateMachineArn: process.env.STATE_MACHINE_ARN, input: '{}' }));
  out.startError = null;
} catch (err) { out.startError = { name: err.name, message: err.message }; }

for (const client of [db, s3, secrets, sfn]) client.destroy();
process.stdout.write(JSON.stringify(out));
`;

let db: Server;
let s3: LocalS3;
let endpoint: RecordingAwsEndpoint;

beforeAll(async () => {
  db = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    db.once('error', reject);
    db.listen(0, '127.0.0.1', () => resolve());
  });
  s3 = await LocalS3.start();
  const { port } = db.address() as { port: number };
  endpoint = await RecordingAwsEndpoint.start({
    upstreams: { dynamodb: { endpoint: `http://127.0.0.1:${port}` }, s3 },
    handlers: {
      'secretsmanager.GetSecretValue': (params: { SecretId: string }) => ({ Name: params.SecretId, SecretString: 'sk-ant-test' }),
      'secretsmanager.DescribeSecret': () => {
        throw Object.assign(new Error('Secrets Manager can\'t find the specified secret.'), { name: 'ResourceNotFoundException' });
      },
    },
  });
});
afterAll(async () => {
  await endpoint?.close();
  await s3?.close();
  db?.closeAllConnections();
  await new Promise<void>((resolve) => (db ? db.close(() => resolve()) : resolve()));
});

describe('RecordingAwsEndpoint', () => {
  it('records every call of a process by its principal, serving DynamoDB by dynalite, S3 by s3rver, others by handlers', async () => {
    // Prepare: a process that knows the endpoint only from its environment, as a Lambda bundle would.
    const env = {
      PATH: process.env.PATH ?? '',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      BUCKET: LOCAL_TRANSCRIPT_BUCKET,
      STATE_MACHINE_ARN,
      ...endpoint.envFor('RunnerFunction'),
    };

    // Act
    const { stdout } = await execFileAsync(process.execPath, ['--input-type=module', '-e', CHILD], { cwd: PROJECT_ROOT, env, timeout: 60_000 });
    const out = JSON.parse(stdout) as Record<string, unknown>;

    // Assess: the calls were served...
    expect(out.item).toEqual({ pk: { S: 'session-1' }, status: { S: 'RUNNING' } });
    expect(out.object).toBe('{"line":1}\n');
    expect(out.streamed).toBe('hello world');
    expect(out.listed).toEqual(['sessions/s-1/streamed.txt', 'sessions/s-1/transcript.jsonl']);
    expect(out.secret).toBe('sk-ant-test');
    expect(out.describeError).toBe('ResourceNotFoundException');
    expect(out.startError).toMatchObject({ name: 'UnknownOperationException', message: expect.stringContaining('states.StartExecution') });

    // ...and each one recorded under the principal, by IAM service prefix and API action.
    const calls = endpoint.calls.filter((c) => c.principal === 'RunnerFunction');
    expect(calls).toHaveLength(endpoint.calls.length);
    expect([...new Set(calls.map((c) => `${c.service}.${c.action}`))]).toEqual([
      'dynamodb.CreateTable',
      'dynamodb.DescribeTable',
      'dynamodb.PutItem',
      'dynamodb.GetItem',
      's3.PutObject',
      's3.GetObject',
      's3.ListObjectsV2',
      'secretsmanager.GetSecretValue',
      'secretsmanager.DescribeSecret',
      'states.StartExecution',
    ]);
    const call = (service: string, action: string, params: Record<string, unknown>): RecordedCall => ({
      principal: 'RunnerFunction', service, action, params: expect.objectContaining(params) as Record<string, unknown>,
    });
    expect(calls).toEqual(expect.arrayContaining([
      call('dynamodb', 'CreateTable', { TableName: 'recorded' }),
      call('dynamodb', 'PutItem', { TableName: 'recorded', Item: { pk: { S: 'session-1' }, status: { S: 'RUNNING' } } }),
      call('dynamodb', 'GetItem', { TableName: 'recorded', Key: { pk: { S: 'session-1' } } }),
      call('s3', 'PutObject', { Bucket: LOCAL_TRANSCRIPT_BUCKET, Key: 'sessions/s-1/transcript.jsonl' }),
      call('s3', 'PutObject', { Bucket: LOCAL_TRANSCRIPT_BUCKET, Key: 'sessions/s-1/streamed.txt' }),
      call('s3', 'GetObject', { Bucket: LOCAL_TRANSCRIPT_BUCKET, Key: 'sessions/s-1/transcript.jsonl' }),
      call('s3', 'ListObjectsV2', { Bucket: LOCAL_TRANSCRIPT_BUCKET, prefix: 'sessions/s-1/' }),
      call('secretsmanager', 'GetSecretValue', { SecretId: 'anthropic-api-key' }),
      call('states', 'StartExecution', { stateMachineArn: STATE_MACHINE_ARN }),
    ]));
    // ListObjectsV2 names no object.
    expect(calls.find((c) => c.action === 'ListObjectsV2')?.params).toEqual({ Bucket: LOCAL_TRANSCRIPT_BUCKET, prefix: 'sessions/s-1/' });
  });

  it('records a call signed with a key it did not give out as principal unknown', async () => {
    // Prepare
    const stranger = new SecretsManagerClient({
      endpoint: endpoint.url, region: 'us-east-1', credentials: { accessKeyId: 'AKIASTRANGER', secretAccessKey: 'x' },
    });
    const before = endpoint.calls.length;

    // Act
    const got = await stranger.send(new GetSecretValueCommand({ SecretId: 'other' }));
    stranger.destroy();

    // Assess
    expect(got.SecretString).toBe('sk-ant-test');
    expect(endpoint.calls.slice(before)).toEqual([
      { principal: 'unknown', service: 'secretsmanager', action: 'GetSecretValue', params: { SecretId: 'other' } },
    ]);
  });

  it('gives each principal its own access key id, with the endpoint and region', () => {
    // Act
    const a = endpoint.envFor('ApiFunction');
    const b = endpoint.envFor('arn:aws:iam::123456789012:role/Task/Role');

    // Assess
    expect(a).toMatchObject({ AWS_ENDPOINT_URL: endpoint.url, AWS_REGION: 'us-east-1' });
    expect(a.AWS_ACCESS_KEY_ID).not.toBe(b.AWS_ACCESS_KEY_ID);
    expect(b.AWS_ACCESS_KEY_ID).not.toContain('/');
  });
});
