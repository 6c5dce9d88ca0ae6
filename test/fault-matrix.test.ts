import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { CLOSE_FAILED_UPDATE, CLOSE_UPDATE } from '../lib/sessions/session-item.js';
import { fakeClaude, startTestRuntime, useTestRuntime, type TestRuntime } from './support/runtime.js';
import { waitFor } from './support/wait-for.js';

/**
 * Faults injected for real (the real CLI against a misbehaving API, a misbehaving
 * executable, DynamoDB errors at the SDK boundary): every session ends final, with what
 * was spent recorded once, and nothing is left RUNNING.
 */
let env: TestRuntime;
useTestRuntime((started) => (env = started));

describe('fault matrix', () => {
  it('HTTP 429: FAILED with the API error, CLI retries bounded', async () => {
    env.anthropic.respondByDefault({ kind: 'error', status: 429, message: 'rate limited' });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'fault-429' });
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError', cause: expect.stringMatching(/429/) });
    expect(await env.runtime.repository.listRunning('fault-429')).toEqual([]);
  });

  it('max budget: FAILED, with the cost and the tokens recorded even when the CLI reports zero top-level usage', async () => {
    env.anthropic.respondByDefault({ kind: 'tool_use', usage: { input_tokens: 20_000, output_tokens: 2_000 } });
    const { session } = await env.runtime.run({ prompt: 'expensive', projectId: 'fault-budget', maxBudgetUsd: 0.01 });
    const served = env.anthropic.messageRequests.length;
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeMaxBudget' });
    expect(session!.totalCostUsd).toBeGreaterThan(0.01);
    expect(session!.usage).toMatchObject({ inputTokens: 20_000 * served, outputTokens: 2_000 * served });
  });

  it('crash mid-stream: FAILED, keeping the tokens the model had served', async () => {
    // A CLI that calls the model (through its gateway), prints the message's start, and is killed
    // before it ends: the record is what the gateway saw served, priced.
    const crashing = await startTestRuntime({
      claudePath: await fakeClaude(`
        const line = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
        line({ type: 'system', subtype: 'init', session_id: 'x' });
        fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', {
          method: 'POST', headers: { 'x-api-key': process.env.ANTHROPIC_API_KEY, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'claude-opus-5-5', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        }).then(async (answer) => {
          await answer.body.getReader().read();
          line({ type: 'stream_event', event: { type: 'message_start', message: { usage: { input_tokens: 900, output_tokens: 1 } } } });
          setTimeout(() => process.kill(process.pid, 'SIGKILL'), 50);
        });
      `),
    });
    try {
      crashing.anthropic.respondWith({ kind: 'stall', usage: { input_tokens: 900, output_tokens: 0 } });
      const { session } = await crashing.runtime.run({ prompt: 'hi', projectId: 'fault-crash' });
      expect(session).toMatchObject({
        status: 'FAILED', error: 'ClaudeCrashError', cause: expect.stringMatching(/signal SIGKILL/),
        usage: { inputTokens: 900, outputTokens: 1 }, numTurns: 1,
      });
      // CLI fact: 2.1.332 prices claude-opus-5-5 at $4 in, $20 out a million tokens
      expect(session!.totalCostUsd).toBeCloseTo((900 * 4 + 1 * 20) / 1e6, 9);
    } finally {
      await crashing.close();
    }
  });

  it('empty output with exit 0: FAILED through the Catch branch', async () => {
    const silent = await startTestRuntime({ claudePath: await fakeClaude('process.exit(0);') });
    try {
      const { outcome, session } = await silent.runtime.run({ prompt: 'hi', projectId: 'fault-empty' });
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'ClaudeOutputError' });
      expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeOutputError', cause: expect.stringMatching(/printed no JSON result/) });
    } finally {
      await silent.close();
    }
  });

  it('two starts with the same session id at once: one session, Claude run once', async () => {
    const sessionId = uuidv4();
    const input = { prompt: 'once', projectId: 'fault-dup', sessionId };
    const [a, b] = [env.runtime.startExecution(input, 'console-a'), env.runtime.startExecution(input, 'console-b')];
    const outcomes = await Promise.all([a.outcome, b.outcome]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['FAILED', 'SUCCEEDED']);
    expect(outcomes.find((o) => o.status === 'FAILED')).toMatchObject({ error: 'SessionAlreadyExists' });
    expect(env.anthropic.messageRequests).toHaveLength(1);
    expect((await env.runtime.repository.usageTotals('fault-dup')).sessions).toBe(1);
  });

  it('runner throttled at its reserved concurrency: RunClaude retries Lambda.TooManyRequestsException, then closes FAILED; nothing RUNNING, and the next session runs', async () => {
    // Prepare: a runner reserved one concurrent invocation, held by a session whose stream stalls
    const bounded = await startTestRuntime({}, { runnerConcurrency: 1 });
    try {
      bounded.anthropic.respondWith({ kind: 'stall' });
      const holder = bounded.runtime.startExecution({ prompt: 'long', projectId: 'fault-reserved' });
      await waitFor(async () => bounded.anthropic.messageRequests.length === 1, 'the first session\'s Claude calling');
      // Act: a second session while the first runs
      const throttled = bounded.runtime.startExecution({ prompt: 'second', projectId: 'fault-reserved' });
      const retries: string[] = [];
      for await (const event of throttled.events) {
        const e = event as { type: string; state?: { name: string }; retry?: { retrier: { ErrorEquals: string[] } } };
        if (e.type === 'StateRetried' && e.state?.name === 'RunClaude') retries.push(e.retry!.retrier.ErrorEquals.join());
      }
      const outcome = await throttled.outcome;
      // Assess: every retry of the throttling retrier, then the Catch closed it; its Claude never ran
      expect(retries).toEqual(Array(6).fill('Lambda.TooManyRequestsException'));
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'Lambda.TooManyRequestsException' });
      expect(await bounded.runtime.repository.get(throttled.name)).toMatchObject({
        status: 'FAILED', error: 'Lambda.TooManyRequestsException', usage: { inputTokens: 0 },
      });
      expect(bounded.anthropic.messageRequests).toHaveLength(1);
      holder.abort();
      await holder.outcome;
      expect(await bounded.runtime.repository.listRunning('fault-reserved')).toEqual([]);
      // The bound is freed once the aborted session's runner has noticed and recorded its spend (as on AWS, it outlives the abort)
      await waitFor(async () => {
        const { Item } = await bounded.runtime.dynamodb.client.send(new GetItemCommand({
          TableName: bounded.runtime.dynamodb.tableName, Key: { pk: { S: `SESSION#${holder.name}` }, sk: { S: 'SESSION' } }, ConsistentRead: true,
        }));
        return Item?.spendRecordedAfterStop?.BOOL === true;
      }, 'the aborted runner recording its spend');
      bounded.anthropic.respondWith({ kind: 'text' });
      const { session } = await bounded.runtime.run({ prompt: 'after', projectId: 'fault-reserved' });
      expect(session).toMatchObject({ status: 'COMPLETED' });
    } finally {
      await bounded.close();
    }
  }, 60_000);

  it('DynamoDB throttling on RecordUsage: retried, and the usage is counted once', async () => {
    const faults = failCloses(2, 'ProvisionedThroughputExceededException');
    try {
      env.anthropic.respondWith({ kind: 'text', usage: { input_tokens: 55, output_tokens: 5 } });
      const { outcome, session } = await env.runtime.run({ prompt: 'hi', projectId: 'fault-throttle' });
      expect(faults.count).toBe(2);
      expect(outcome.status).toBe('SUCCEEDED');
      expect(session).toMatchObject({ status: 'COMPLETED', usage: { inputTokens: 55, outputTokens: 5 } });
      expect(await env.runtime.repository.usageTotals('fault-throttle')).toMatchObject({ sessions: 1, usage: { inputTokens: 55 } });
    } finally {
      faults.remove();
    }
  });

  it('a close that keeps failing ends the execution failed, and the reaper closes the session', async () => {
    // RecordUsage and CloseFailed each try 4 times; the reaper's close then goes through.
    const faults = failCloses(8, 'InternalServerErrorException');
    try {
      const sessionId = uuidv4();
      const { outcome, session } = await env.runtime.run({ prompt: 'hi', projectId: 'fault-close', sessionId });
      expect(faults.count).toBe(8);
      // The closes are the SDK integration (aws-sdk:dynamodb:transactWriteItems): its errors are named DynamoDb.<name>.
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'DynamoDb.InternalServerErrorException' });
      expect(session).toMatchObject({ status: 'FAILED', error: 'DynamoDb.InternalServerErrorException' });
      expect(await env.runtime.repository.listRunning('fault-close')).toEqual([]);
    } finally {
      faults.remove();
    }
  });
});

/**
 * Makes the next `times` closes the workflow's states write fail with a DynamoDB error, at the SDK
 * boundary: each close is one TransactWriteItems with the session's update (CLOSE_UPDATE from
 * RecordUsage, CLOSE_FAILED_UPDATE from CloseFailed) and its project's totals. The other writes
 * (CreateSession's put, the runner's claim of its attempt) are not among them.
 */
function failCloses(times: number, errorName: string) {
  const faults = { count: 0, remove: () => void env.runtime.dynamodb.client.middlewareStack.remove('injectedFaults') };
  const closes = new Set([CLOSE_UPDATE, CLOSE_FAILED_UPDATE]);
  env.runtime.dynamodb.client.middlewareStack.add(
    (next, context) => async (args) => {
      const items = (args.input as { TransactItems?: { Update?: { UpdateExpression?: string } }[] }).TransactItems ?? [];
      const isClose = items.some((item) => closes.has(String(item.Update?.UpdateExpression)));
      if (context.commandName === 'TransactWriteItemsCommand' && isClose && faults.count < times) {
        faults.count += 1;
        throw Object.assign(new Error(`injected ${errorName}`), { name: errorName });
      }
      return next(args);
    },
    { step: 'initialize', name: 'injectedFaults' },
  );
  return faults;
}

describe('load', () => {
  it('50 sessions at once: all closed, none RUNNING, usage equal to what the stand-in served, no duplicates', async () => {
    // 50 CLIs on a 2-core machine start slowly: a generous no-output limit, so the test
    // measures accounting, not the machine.
    const load = await startTestRuntime({ idleTimeoutMs: 180_000 });
    try {
      await runLoad(load);
    } finally {
      await load.close();
    }
  }, 300_000);
});

async function runLoad(env: TestRuntime) {
  {
    env.anthropic.respondByDefault({ kind: 'text', usage: { input_tokens: 7, output_tokens: 3 } });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => env.runtime.run({ prompt: `task ${i}`, projectId: 'load-50' })));
    const causes = results.filter((r) => r.session?.status !== 'COMPLETED').map((r) => r.session?.cause ?? r.outcome.cause);
    expect(results.map((r) => `${r.session?.status} ${r.session?.error ?? ''}`.trim()), JSON.stringify(causes)).toEqual(Array(50).fill('COMPLETED'));
    expect(new Set(results.map((r) => r.session!.sessionId)).size).toBe(50);
    const served = env.anthropic.messageRequests.length;
    expect(served).toBe(50);
    expect(await env.runtime.repository.listRunning('load-50')).toEqual([]);
    expect(await env.runtime.repository.usageTotals('load-50')).toMatchObject({
      sessions: 50, byStatus: { COMPLETED: 50 }, usage: { inputTokens: 7 * served, outputTokens: 3 * served },
    });
  }
}
