import { DynamoDBClient, GetItemCommand, ScanCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, SendTaskSuccessCommand, SFNClient } from '@aws-sdk/client-sfn';
import { readFileSync } from 'node:fs';
import { v4 as uuidv4 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TOOLS } from '../lib/sessions/session-limits.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

// A local Fargate task is a process of its own; where the engine is not root, the CLI it starts
// (and a shell the CLI starts) runs as the same user and can read its environment. So what the
// task holds must be worth no more than its own session (issue 22).

/** A process's environment, as anything of its user (or root) reads it from /proc. */
function environmentOf(pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((line) => {
    const at = line.indexOf('=');
    return [line.slice(0, at), line.slice(at + 1)];
  }));
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

describe('a local Fargate task\'s credential', () => {
  let env: TestRuntime;
  useTestRuntime((started) => (env = started), {}, { fargateHeartbeatSeconds: 5 });

  it('is its own: its session\'s item, its execution and its token only, not the engine\'s; revoked when the task ends', async () => {
    // Prepare: another project's finished session, then a Fargate task waiting on the model
    env.anthropic.respondWith({ kind: 'text', text: 'the other project\'s secret reply', usage: { input_tokens: 3, output_tokens: 1 } });
    const other = await env.runtime.run({ prompt: 'other work', projectId: 'fg-cred-other' });
    const s3 = await env.runtime.s3();
    const otherTranscript = await s3.store.save(uuidv4(), Buffer.from('{"type":"user","message":"another milestone"}\n'));
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 41, output_tokens: 1 } });
    const sessionId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'own work', projectId: 'fg-cred', runtime: 'fargate', sessionId }, sessionId);
    await until(() => env.anthropic.openStreams > 0, 'the task\'s CLI to call the model');
    const task = env.runtime.fargateTasks.get(sessionId)!;
    const taskEnv = environmentOf(task.pid!);
    const credentials = { accessKeyId: taskEnv.AWS_ACCESS_KEY_ID!, secretAccessKey: taskEnv.AWS_SECRET_ACCESS_KEY!, sessionToken: taskEnv.AWS_SESSION_TOKEN! };
    const dynamodb = new DynamoDBClient({ endpoint: taskEnv.AWS_ENDPOINT_URL_DYNAMODB, region: 'us-east-1', credentials, maxAttempts: 1 });
    const sfn = new SFNClient({ endpoint: taskEnv.AWS_ENDPOINT_URL_SFN, region: 'us-east-1', credentials, maxAttempts: 1 });
    const s3Client = new S3Client({ endpoint: s3.endpoint, forcePathStyle: true, region: 'us-east-1', credentials, maxAttempts: 1 });
    const TableName = env.runtime.dynamodb.tableName;
    const key = (id: string) => ({ pk: { S: `SESSION#${id}` }, sk: { S: 'SESSION' } });
    try {
      // Act
      const own = await dynamodb.send(new GetItemCommand({ TableName, Key: key(sessionId) }));
      const ownExecution = await sfn.send(new DescribeExecutionCommand({ executionArn: execution.executionArn }));
      const refusals = await Promise.all([
        dynamodb.send(new ScanCommand({ TableName })),
        dynamodb.send(new GetItemCommand({ TableName, Key: key(other.execution.name) })),
        dynamodb.send(new UpdateItemCommand({ TableName, Key: key(other.execution.name), UpdateExpression: 'SET totalCostUsd = :zero', ExpressionAttributeValues: { ':zero': { N: '0' } } })),
        sfn.send(new DescribeExecutionCommand({ executionArn: other.execution.executionArn })),
        sfn.send(new SendTaskSuccessCommand({ taskToken: 'another-tasks-token', output: '{}' })),
        s3Client.send(new GetObjectCommand({ Bucket: s3.store.bucket, Key: otherTranscript.key })),
      ].map((call) => call.then(() => 'allowed', (err: Error) => err.name)));
      // Assess: its own session and execution it reads; everything else is refused as access denied
      expect(credentials.sessionToken).not.toBe(env.runtime.dynamodb.credentials.sessionToken);
      expect(own.Item?.sessionId?.S).toBe(sessionId);
      expect(JSON.parse(ownExecution.input!)).toMatchObject({ prompt: 'own work' });
      expect(refusals).toEqual(['AccessDeniedException', 'AccessDeniedException', 'AccessDeniedException', 'AccessDeniedException', 'AccessDeniedException', 'AccessDenied']);
      expect((await env.runtime.repository.get(other.execution.name))?.totalCostUsd).toBe(other.session!.totalCostUsd);

      // Act: the execution ends; the task stops Claude, records its spend with its own credential, and exits
      execution.abort();
      await new Promise<void>((resolve) => (task.exitCode !== null ? resolve() : task.once('exit', () => resolve())));
      const afterExit = await dynamodb.send(new GetItemCommand({ TableName, Key: key(sessionId) })).then(() => 'allowed', (err: Error) => err.name);
      // Assess
      expect(await env.runtime.repository.get(sessionId)).toMatchObject({ status: 'ABORTED', usage: { inputTokens: 41 } });
      expect(afterExit).toBe('UnrecognizedClientException');
    } finally {
      for (const client of [dynamodb, sfn, s3Client]) client.destroy();
    }
  });
});

describe('a shell on a local Fargate task that cannot run the CLI as a user of its own (the engine is not root)', () => {
  let env: TestRuntime;
  useTestRuntime((started) => (env = started), { permissionRules: ['Bash'] }, {
    fargateHeartbeatSeconds: 5, fargateSeparateUser: false, policy: { allowedTools: [...DEFAULT_TOOLS, 'Bash'], shellOnLambda: true },
  });

  it('is refused before anything runs, naming tools; the same session without a shell runs', async () => {
    // Act
    const shell = await env.runtime.run({ prompt: 'run the tests', projectId: 'fg-nonroot', runtime: 'fargate', tools: ['Read', 'Bash'] });
    env.anthropic.respondWith({ kind: 'text', text: 'read only', usage: { input_tokens: 2, output_tokens: 1 } });
    const noShell = await env.runtime.run({ prompt: 'read the code', projectId: 'fg-nonroot', runtime: 'fargate', tools: ['Read'] });
    // Assess
    expect(shell.outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInputError', cause: expect.stringMatching(/tools.*may name Bash on runtime fargate only where the task runs the CLI as a user of its own: this engine is not root/) });
    expect(shell.session).toBeUndefined();
    expect(noShell.session).toMatchObject({ status: 'COMPLETED', result: 'read only' });
    expect(env.anthropic.messageRequests).toHaveLength(1);
  });
});
