import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startTestRuntime, useTestRuntime, type TestRuntime } from './support/runtime.js';
import { runCli, startServe, stopEngine } from './support/cli-process.js';
import { waitFor } from './support/wait-for.js';
import { DEFAULT_BEDROCK_MODEL } from '../lib/claude/claude-process.js';
import type { RecordedRequest, StandInUsage } from '../lib/local/anthropic-stand-in.js';
import type { SessionRecord } from '../lib/sessions/session-item.js';

/**
 * Claude through Amazon Bedrock, locally: the real CLI with CLAUDE_CODE_USE_BEDROCK against the
 * stand-in's Bedrock routes (AWS event stream), the real state machine, the record it closes.
 * The faults of test/fault-matrix.test.ts that come from the model API, in Bedrock's shapes.
 */
let env: TestRuntime;
useTestRuntime((started) => (env = started), {}, { provider: 'bedrock', policy: { runAttempts: 2, retryBaseSeconds: 0 } });

const MODEL = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';

/** What the stand-in served, summed: the tokens a session must record, no more, no less. */
function servedTotal(requests: RecordedRequest[]) {
  const sum = { inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
  for (const { served } of requests) {
    const u: StandInUsage = served ?? { input_tokens: 0, output_tokens: 0 };
    sum.inputTokens += u.input_tokens;
    sum.outputTokens += u.output_tokens;
    sum.cacheReadInputTokens += u.cache_read_input_tokens ?? 0;
    sum.cacheCreationInputTokens += u.cache_creation_input_tokens ?? 0;
  }
  return sum;
}

describe('a session on Bedrock', () => {
  it('completes through invoke-with-response-stream on the pinned model, recording provider, model and exact usage', async () => {
    // Prepare
    env.anthropic.respondWith({ kind: 'text', text: 'Bedrock says hi', usage: { input_tokens: 120, output_tokens: 30, cache_read_input_tokens: 50, cache_creation_input_tokens: 10 } });
    // Act
    const { session } = await env.runtime.run({ prompt: 'hello', projectId: 'bedrock-happy' });
    // Assess
    const calls = env.anthropic.messageRequests;
    expect(calls.map((r) => [r.provider, r.path])).toEqual(calls.map(() => ['bedrock', `/model/${MODEL}/invoke-with-response-stream`]));
    expect(calls.every((r) => r.sessionId === session!.sessionId)).toBe(true);
    expect(session).toMatchObject({
      status: 'COMPLETED', provider: 'bedrock', model: MODEL, result: 'Bedrock says hi',
      usage: servedTotal(calls),
    });
    expect(Object.keys(session!.modelUsage)).toEqual([MODEL]);
    expect(session!.modelUsage[MODEL]).toMatchObject(servedTotal(calls));
    expect(session!.modelUsage[MODEL]!.costUsd).toBe(session!.totalCostUsd);
  });

  it('ThrottlingException (429): FAILED with the API error after its retries, nothing RUNNING', async () => {
    env.anthropic.respondByDefault({ kind: 'error', status: 429, message: 'Too many requests, please wait before trying again.' });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'bedrock-429' });
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError', cause: expect.stringMatching(/429/), attempts: 2, provider: 'bedrock' });
    expect(await env.runtime.repository.listRunning('bedrock-429')).toEqual([]);
  });

  it('ServiceUnavailableException (503) once: the workflow runs Claude again and the session completes', async () => {
    env.anthropic.respondWith({ kind: 'error', status: 503, message: 'Service unavailable' }, { kind: 'text', usage: { input_tokens: 9, output_tokens: 4 } });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'bedrock-503' });
    expect(session).toMatchObject({ status: 'COMPLETED', attempts: 2, usage: { inputTokens: 9, outputTokens: 4 } });
  });

  it('ValidationException (400): FAILED at once, not retried', async () => {
    env.anthropic.respondByDefault({ kind: 'error', status: 400, message: 'The provided model identifier is invalid.' });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'bedrock-400' });
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError', cause: expect.stringMatching(/400/), attempts: 1 });
    expect(env.anthropic.messageRequests).toHaveLength(1);
  });

  it('a stalled stream: TIMED_OUT, the streamed tokens kept under the model that streamed them', async () => {
    const stalled = { kind: 'stall', usage: { input_tokens: 700, output_tokens: 0 } } as const;
    env.anthropic.respondByDefault(stalled);
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'bedrock-stall', timeoutSeconds: 5 });
    expect(session).toMatchObject({ status: 'TIMED_OUT', error: 'ClaudeTimeoutError', usage: { inputTokens: 700 } });
    expect(Object.keys(session!.modelUsage)).toEqual([MODEL]);
    // Priced as the CLI prices the model (CLI fact: 2.1.332, Sonnet 4.5 at $3 in, $15 out a million tokens), though it printed no result
    expect(session!.modelUsage[MODEL]).toMatchObject({ inputTokens: 700, outputTokens: 1 });
    expect(session!.modelUsage[MODEL]!.costUsd).toBeCloseTo((700 * 3 + 1 * 15) / 1e6, 9);
  }, 60_000);

  it('runs on the Fargate runtime too (the image\'s task, through the Bedrock base URL)', async () => {
    env.anthropic.respondWith({ kind: 'text', usage: { input_tokens: 21, output_tokens: 2 } });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'bedrock-fargate', runtime: 'fargate' });
    expect(session).toMatchObject({ status: 'COMPLETED', runtime: 'fargate', provider: 'bedrock', model: MODEL, usage: { inputTokens: 21, outputTokens: 2 } });
  }, 120_000);

  it('project totals split the usage by model', async () => {
    env.anthropic.respondByDefault({ kind: 'text', usage: { input_tokens: 5, output_tokens: 1 } });
    await env.runtime.run({ prompt: 'one', projectId: 'bedrock-totals' });
    await env.runtime.run({ prompt: 'two', projectId: 'bedrock-totals' });
    const totals = await env.runtime.repository.usageTotals('bedrock-totals');
    expect(totals.byModel[MODEL]).toMatchObject({ ...servedTotal(env.anthropic.messageRequests) });
    expect(totals.usage).toEqual(servedTotal(env.anthropic.messageRequests));
  });
});

describe('a session whose subagent runs on the small model', () => {
  it('records every call the stand-in served, per model and in total (the CLI\'s top-level usage leaves the subagent out)', async () => {
    // Prepare: the main model asks the Agent tool for a haiku subagent, which answers; then the main model answers
    const HAIKU = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';
    const subagents = await startTestRuntime({}, { provider: 'bedrock', smallFastModel: HAIKU, policy: { allowedTools: ['Read', 'Glob', 'Agent'] } });
    try {
      subagents.anthropic.respondWith(
        { kind: 'tool_use', name: 'Agent', input: { description: 'look', prompt: 'Say hi', subagent_type: 'general-purpose', model: 'haiku' }, usage: { input_tokens: 100, output_tokens: 10, cache_read_input_tokens: 1_000, cache_creation_input_tokens: 10_000 } },
        { kind: 'text', text: 'hi', usage: { input_tokens: 200, output_tokens: 20, cache_read_input_tokens: 2_000, cache_creation_input_tokens: 20_000 } },
        { kind: 'text', text: 'Done.', usage: { input_tokens: 300, output_tokens: 30, cache_read_input_tokens: 3_000, cache_creation_input_tokens: 30_000 } },
      );
      // Act
      const { session } = await subagents.runtime.run({ prompt: 'delegate', projectId: 'bedrock-subagent', tools: ['Read', 'Glob', 'Agent'] });
      // Assess
      const calls = subagents.anthropic.messageRequests;
      expect(calls.map((r) => r.model)).toEqual([MODEL, HAIKU, MODEL]);
      expect(session).toMatchObject({ status: 'COMPLETED', result: 'Done.', usage: servedTotal(calls) });
      expect(session!.usage).toEqual({ inputTokens: 600, outputTokens: 60, cacheReadInputTokens: 6_000, cacheCreationInputTokens: 60_000 });
      expect(session!.modelUsage).toEqual({
        [MODEL]: { ...servedTotal(calls.filter((r) => r.model === MODEL)), costUsd: expect.any(Number) },
        [HAIKU]: { ...servedTotal(calls.filter((r) => r.model === HAIKU)), costUsd: expect.any(Number) },
      });
      expect(session!.modelUsage[MODEL]!.costUsd + session!.modelUsage[HAIKU]!.costUsd).toBeCloseTo(session!.totalCostUsd, 9);
    } finally {
      await subagents.close();
    }
  }, 60_000);
});

describe('credentials that expire', () => {
  it('stop the run before they do: TIMED_OUT within their lifetime, not FAILED on calls made after it', async () => {
    // Prepare: a runner whose model credentials (as an assumed role's) expire 36 s from now; a stream that stalls
    let expiring: TestRuntime | undefined;
    expiring = await startTestRuntime({
      sessionEndpoint: async () => ({
        ...expiring!.anthropic.bedrockEndpoint(MODEL),
        credentials: { accessKeyId: 'ASIAEXPIRING', secretAccessKey: 'secret', sessionToken: 'token', expiration: new Date(Date.now() + 36_000) },
      }),
    }, { provider: 'bedrock' });
    try {
      expiring.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 50, output_tokens: 0 } });
      // Act
      const started = Date.now();
      const { session } = await expiring.runtime.run({ prompt: 'hi', projectId: 'bedrock-expiry', timeoutSeconds: 600 });
      // Assess: the run's limit was the credentials' lifetime less the 30 s kept to report
      expect(session).toMatchObject({ status: 'TIMED_OUT', error: 'ClaudeTimeoutError', usage: { inputTokens: 50 } });
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(expiring.anthropic.messageRequests.every((r) => r.accessKeyId === 'ASIAEXPIRING')).toBe(true);
    } finally {
      await expiring.close();
    }
  }, 60_000);
});

describe('serve with AWS credentials that expire (SSO, an assumed role)', () => {
  it('signs each session started through its API with credentials resolved for it, not the ones the engine started with', async () => {
    // Prepare: a profile whose credential_process hands out a new key on each call, each good for 10 minutes
    // (shorter than a session's 14-minute limit); a serve on Bedrock through the stand-in with that profile
    const dir = await mkdtemp(join(tmpdir(), 'rotating-credentials-'));
    const counter = join(dir, 'issued');
    await writeFile(join(dir, 'credentials.mjs'), `
      import { readFileSync, writeFileSync } from 'node:fs';
      const n = Number(readFileSync(process.argv[2], { encoding: 'utf8', flag: 'a+' }) || 0) + 1;
      writeFileSync(process.argv[2], String(n));
      console.log(JSON.stringify({ Version: 1, AccessKeyId: 'ASIAROTATING' + String(n).padStart(8, '0'), SecretAccessKey: 'not-a-secret',
        SessionToken: 'token-' + n, Expiration: new Date(Date.now() + 10 * 60_000).toISOString() }));
    `);
    await writeFile(join(dir, 'config'), `[profile rotating]\ncredential_process = ${process.execPath} ${join(dir, 'credentials.mjs')} ${counter}\n`);
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|ANTHROPIC_|CLAUDE_)/.test(k)));
    const home = join(dir, 'state');
    const { child, url } = await startServe({
      ...clean, HOME: dir, CLAUDE_SESSIONS_HOME: home, CLAUDE_SESSIONS_STANDBY: '0', CLAUDE_CODE_USE_BEDROCK: '1',
      AWS_CONFIG_FILE: join(dir, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'), AWS_PROFILE: 'rotating',
      AWS_REGION: 'us-east-1', ANTHROPIC_BEDROCK_BASE_URL: env.anthropic.url, ANTHROPIC_MODEL: MODEL,
    });
    try {
      const atStart = Number(await readFile(counter, 'utf8'));
      // Act: two sessions through the engine's API, one after the other
      const sessions: SessionRecord[] = [];
      for (const prompt of ['first', 'second']) {
        const started = await fetch(`${url}/projects/rotating/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt }) });
        expect(started.status).toBe(202);
        const { sessionId } = (await started.json()) as { sessionId: string };
        sessions.push(await waitFor(async () => {
          const reply = await fetch(`${url}/projects/rotating/sessions/${sessionId}`);
          const session = reply.ok ? ((await reply.json()) as SessionRecord) : undefined; // 404 until CreateSession has put it
          return session && session.status !== 'RUNNING' && session;
        }, `session ${prompt} closed`));
      }
      // Assess: each session's calls signed with one key of its own, issued after the engine started
      expect(sessions.map((s) => s.status)).toEqual(['COMPLETED', 'COMPLETED']);
      const keys = sessions.map((s) => [...new Set(env.anthropic.messageRequests.filter((r) => r.sessionId === s.sessionId).map((r) => r.accessKeyId))]);
      expect(keys.map((k) => k.length)).toEqual([1, 1]);
      const issued = keys.map(([key]) => Number(/^ASIAROTATING(\d{8})$/.exec(key ?? '')?.[1]));
      expect(issued[0]).toBeGreaterThan(atStart);
      expect(issued[1]).toBeGreaterThan(issued[0]!);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  }, 120_000);
});

describe('CLAUDE_SESSIONS_PROVIDER=bedrock npx claude-sessions run', () => {
  it('runs against the built-in Bedrock stand-in when there are no AWS credentials, and says so', async () => {
    // Prepare: a HOME with no ~/.aws, no AWS or Anthropic variables
    const home = await mkdtemp(join(tmpdir(), 'bedrock-cli-home-'));
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(AWS_|ANTHROPIC_|CLAUDE_)/.test(k)));
    // Act
    const state = join(home, 'state');
    const run = await runCli(['run', 'Say hi', '--project', 'demo', '--json'], { ...clean, HOME: home, CLAUDE_SESSIONS_HOME: state, CLAUDE_SESSIONS_PROVIDER: 'bedrock' })
      .finally(() => stopEngine(state));
    // Assess
    expect(run.stderr).toMatch(new RegExp(`Claude \\(${DEFAULT_BEDROCK_MODEL.replaceAll('.', '\\.')}\\) runs through the built-in local Bedrock stand-in`));
    expect(run.code).toBe(0);
    const session = JSON.parse(run.stdout) as SessionRecord;
    expect(session).toMatchObject({ status: 'COMPLETED', projectId: 'demo', provider: 'bedrock', model: DEFAULT_BEDROCK_MODEL });
    expect(session.usage.inputTokens).toBeGreaterThan(0);
    expect(session.modelUsage[DEFAULT_BEDROCK_MODEL]).toMatchObject(session.usage);
  }, 60_000);

  it('refuses an unknown provider, naming where it came from', async () => {
    const run = await runCli(['run', 'hi', '--provider', 'vertex'], process.env);
    expect(run.stderr).toContain('--provider must be anthropic or bedrock, not "vertex"');
    expect(run.code).not.toBe(0);
  });
});
