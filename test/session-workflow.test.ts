import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { fakeClaude, startTestRuntime, useTestRuntime, type TestRuntime } from './support/runtime.js';
import { DEFAULT_TOOLS } from '../lib/sessions/session-limits.js';
import { offeredTools } from '../lib/local/anthropic-stand-in.js';

let env: TestRuntime;

useTestRuntime((started) => (env = started));

async function expectNothingRunning(projectId: string) {
  expect(await env.runtime.repository.listRunning(projectId)).toEqual([]);
  // Every close took its session out of the running index in the same write, whatever the path.
  expect(await env.runtime.repository.runningExecutions(projectId)).toEqual([]);
}

describe('the session workflow on the local state machine, with the real Claude CLI', () => {
  // CLI fact: the stream-json result line carries usage (input, output, cache read, cache creation), total_cost_usd,
  // num_turns and modelUsage; --session-id is honoured and sent as x-claude-code-session-id (claude-result.ts).
  it('records exactly the usage the API reported, against the one session UUID', async () => {
    // Prepare
    env.anthropic.respondWith({
      kind: 'text',
      text: 'All done.',
      usage: { input_tokens: 1234, output_tokens: 567, cache_read_input_tokens: 89, cache_creation_input_tokens: 10 },
    });
    const sessionId = uuidv4();
    // Act
    const { outcome, session } = await env.runtime.run({ prompt: 'Summarise the README', projectId: 'p-ok', sessionId });
    // Assess
    expect(outcome.status).toBe('SUCCEEDED');
    expect(outcome.output).toEqual(session);
    expect(session).toMatchObject({
      sessionId,
      claudeSessionId: sessionId,
      projectId: 'p-ok',
      mode: 'fresh',
      runtime: 'lambda',
      status: 'COMPLETED',
      usage: { inputTokens: 1234, outputTokens: 567, cacheReadInputTokens: 89, cacheCreationInputTokens: 10 },
      numTurns: 1,
      result: 'All done.',
      error: null,
      cause: null,
    });
    expect(session!.totalCostUsd).toBeGreaterThan(0);
    expect(session!.endedAt! >= session!.startedAt).toBe(true);
    // The CLI's request carried the session's UUID.
    expect(env.anthropic.messageRequests.map((r) => r.sessionId)).toEqual([sessionId]);
    await expectNothingRunning('p-ok');
  });

  it('offers the model only the allow-listed tools: no shell, no web by default (CLI fact: --tools is the allow-list; a defer_loading tool is not offered)', async () => {
    await env.runtime.run({ prompt: 'hi', projectId: 'p-tools' });
    const request = env.anthropic.messageRequests[0]!;
    expect(offeredTools(request).sort()).toEqual([...DEFAULT_TOOLS].sort());
    // CLI 2.1.332 adds a deferred "never call this" placeholder; nothing else is deferred (no tool search could load it).
    const deferred = (request.body.tools as { name: string; defer_loading?: boolean }[]).filter((t) => t.defer_loading).map((t) => t.name);
    expect(deferred.filter((name) => name !== 'DeferredToolPlaceholder')).toEqual([]);

    const readOnly = await startTestRuntime({ tools: ['Read'] });
    try {
      await readOnly.runtime.run({ prompt: 'hi', projectId: 'p-tools' });
      expect(offeredTools(readOnly.anthropic.messageRequests[0]!)).toEqual(['Read']);
    } finally {
      await readOnly.close();
    }
  });

  it('stores the prompt as its length and hash, never its text', async () => {
    const prompt = 'secret plans '.repeat(20);
    const { execution } = await env.runtime.run({ prompt, projectId: 'p-hash' });
    const { Item } = await env.runtime.dynamodb.documentClient.send(
      new (await import('@aws-sdk/lib-dynamodb')).GetCommand({
        TableName: env.runtime.dynamodb.tableName,
        Key: { pk: `SESSION#${execution.name}`, sk: 'SESSION' },
      }),
    );
    expect(Item).toMatchObject({ promptChars: prompt.length, promptSha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(JSON.stringify(Item)).not.toContain('secret plans');
  });

  // CLI fact: one argv entry is capped at 128 KiB; with --input-format stream-json the prompt goes to stdin as one user message.
  it('hands the CLI the largest prompt allowed, in any script, exactly (on stdin: one argv entry is capped at 128 KiB)', async () => {
    // The byte limit, not the character one, binds here: 65,500 characters, ~196 KB of UTF-8,
    // still past what one argv entry holds.
    const prompt = `  ${'提示'.repeat(32_745)}\nend\n\n`;
    expect(Buffer.byteLength(JSON.stringify(prompt))).toBeGreaterThan(196_000);
    expect(Buffer.byteLength(JSON.stringify(prompt))).toBeLessThanOrEqual(192 * 1024);
    const { session } = await env.runtime.run({ prompt, projectId: 'p-big' });
    expect(session).toMatchObject({ status: 'COMPLETED' });
    const sent = (env.anthropic.messageRequests[0]!.body.messages as { content: { text?: string }[] | string }[])
      .flatMap((m) => (Array.isArray(m.content) ? m.content.map((c) => c.text) : [m.content]));
    expect(sent).toContain(prompt);
  });

  it('hands on a prompt with a lone surrogate as U+FFFD (the stream-json line escapes it; the CLI sends UTF-8), and the session completes', async () => {
    const { session } = await env.runtime.run({ prompt: 'half a pair: \ud83d, then the rest', projectId: 'p-surrogate' });
    expect(session).toMatchObject({ status: 'COMPLETED' });
    const sent = JSON.stringify(env.anthropic.messageRequests[0]!.body.messages);
    expect(sent).toContain('half a pair: \ufffd, then the rest');
  });

  it('closes the session FAILED with the error text and the usage spent when the API answers 400 (CLI fact: a 400 is re-sent up to 5 times, shedding request features, whatever CLAUDE_CODE_MAX_RETRIES)', async () => {
    // Prepare: one paid turn asking for a tool, then a 400 on every later request: CLI 2.1.332
    // re-sends a rejected request (without thinking.display, its deferred placeholder tool …),
    // so a single 400 would be retried away.
    env.anthropic
      .respondWith({ kind: 'tool_use', usage: { input_tokens: 50, output_tokens: 5 } })
      .respondByDefault({ kind: 'error', status: 400, message: 'messages.1: unexpected tool_use_id' });
    // Act
    const { outcome, session } = await env.runtime.run({ prompt: 'hi', projectId: 'p-400' });
    // Assess
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError' });
    expect(session).toMatchObject({
      status: 'FAILED',
      error: 'ClaudeApiError',
      cause: expect.stringMatching(/HTTP 400.*unexpected tool_use_id/),
      usage: { inputTokens: 50, outputTokens: 5 },
    });
    expect(session!.totalCostUsd).toBeGreaterThan(0);
    await expectNothingRunning('p-400');
  });

  // CLI fact: CLAUDE_CODE_MAX_RETRIES bounds the CLI's retries of 401/429/5xx/529; an API failure exits 1 with
  // subtype "success", is_error true and api_error_status (claudeFailure).
  it.each([401, 529])('closes the session FAILED, not RUNNING, on HTTP %i with the CLI retries bounded', async (status) => {
    env.anthropic.respondByDefault({ kind: 'error', status });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: `p-${status}` });
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError', cause: expect.stringContaining(String(status)) });
    // maxRetries 0: one request, not the CLI's default ten over three minutes.
    expect(env.anthropic.messageRequests.length).toBeLessThanOrEqual(2);
    await expectNothingRunning(`p-${status}`);
  });

  // CLI fact: --max-turns (absent from --help) ends the run with subtype error_max_turns, usage kept.
  it('keeps the usage of a run stopped by --max-turns and closes it FAILED', async () => {
    env.anthropic.respondByDefault({ kind: 'tool_use', usage: { input_tokens: 100, output_tokens: 10 } });
    const { session } = await env.runtime.run({ prompt: 'loop', projectId: 'p-turns', maxTurns: 2 });
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeMaxTurns', cause: expect.stringMatching(/maximum number of turns/) });
    const requests = env.anthropic.messageRequests.length;
    expect(requests).toBe(2);
    expect(session!.usage).toMatchObject({ inputTokens: 100 * requests, outputTokens: 10 * requests });
    expect(session!.numTurns).toBeGreaterThanOrEqual(2);
    await expectNothingRunning('p-turns');
  });

  it('a second start with the same session id neither runs Claude again nor changes the first session', async () => {
    const sessionId = uuidv4();
    const first = await env.runtime.run({ prompt: 'first', projectId: 'p-dup', sessionId });
    const requestsAfterFirst = env.anthropic.messageRequests.length;
    const second = await env.runtime.run({ prompt: 'second', projectId: 'p-dup', sessionId });
    expect(second.outcome).toMatchObject({ status: 'FAILED', error: 'SessionAlreadyExists' });
    expect(env.anthropic.messageRequests.length).toBe(requestsAfterFirst);
    expect(second.session).toEqual(first.session);
  });

  it.each([
    ['a missing prompt', { projectId: 'p' }, 'prompt'],
    ['an empty prompt', { prompt: '', projectId: 'p' }, 'prompt'],
    ['a prompt over 100,000 characters', { prompt: 'x'.repeat(100_001), projectId: 'p' }, 'prompt'],
    ['an invalid UUID', { prompt: 'hi', projectId: 'p', sessionId: 'not-a-uuid' }, 'sessionId'],
    ['an unknown mode', { prompt: 'hi', projectId: 'p', mode: 'sometimes' }, 'mode'],
    ['a projectId with bad characters', { prompt: 'hi', projectId: 'has space' }, 'projectId'],
    ['maxTurns out of range', { prompt: 'hi', projectId: 'p', maxTurns: 0 }, 'maxTurns'],
  ])('a console input with %s fails naming the field and creates no session', async (_label, input, field) => {
    const { outcome, execution } = await env.runtime.run(input);
    expect(outcome.status).toBe('FAILED');
    expect(outcome.error).toBe('InvalidInputError');
    expect(JSON.parse(outcome.cause!).errorMessage).toMatch(new RegExp(`\\b${field}\\b`));
    expect(await env.runtime.repository.get(execution.name)).toBeUndefined();
    expect(env.anthropic.messageRequests).toEqual([]);
  });

  it('takes a UUID execution name as the session id when the input has none (console, schedules)', async () => {
    const name = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'hi', projectId: 'p-name' }, name);
    await execution.outcome;
    expect(await env.runtime.repository.get(name)).toMatchObject({ sessionId: name, status: 'COMPLETED' });
  });
});

describe('runner faults go through the Catch branch and close the session FAILED', () => {
  // CLI fact: --include-partial-messages prints message_start (with its usage) as it streams, so a killed run keeps the tokens.
  it('times out a stalled API, keeps the tokens reported before the stall, and closes TIMED_OUT', async () => {
    // 3 s without output: long enough that a loaded machine's CLI start is not taken for the stall.
    const stalled = await startTestRuntime({ idleTimeoutMs: 3_000 });
    try {
      stalled.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 42, output_tokens: 1 } });
      const started = Date.now();
      const { outcome, session } = await stalled.runtime.run({ prompt: 'hi', projectId: 'p-stall' });
      expect(Date.now() - started).toBeLessThan(60_000);
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'ClaudeTimeoutError' });
      expect(session).toMatchObject({
        status: 'TIMED_OUT',
        error: 'ClaudeTimeoutError',
        cause: expect.stringMatching(/printed nothing for 3 s/),
        usage: { inputTokens: 42 },
      });
      expect(await stalled.runtime.repository.listRunning('p-stall')).toEqual([]);
      expect(await stalled.runtime.repository.runningExecutions('p-stall')).toEqual([]);
    } finally {
      await stalled.close();
    }
  });

  it('closes FAILED when the CLI prints something that is not its JSON result', async () => {
    const broken = await startTestRuntime({ claudePath: await fakeClaude("console.log('Segmentation fault (core dumped)');") });
    try {
      const { outcome, session } = await broken.runtime.run({ prompt: 'hi', projectId: 'p-bad-json' });
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'ClaudeOutputError' });
      expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeOutputError', cause: expect.stringMatching(/not its JSON result/) });
      expect(await broken.runtime.repository.listRunning('p-bad-json')).toEqual([]);
      expect(await broken.runtime.repository.runningExecutions('p-bad-json')).toEqual([]); // CloseFailed removed its running key
    } finally {
      await broken.close();
    }
  });

  it('closes FAILED when the CLI exits non-zero with no output', async () => {
    const crashing = await startTestRuntime({ claudePath: await fakeClaude("process.stderr.write('boom'); process.exit(3);") });
    try {
      const { session } = await crashing.runtime.run({ prompt: 'hi', projectId: 'p-crash' });
      expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeCrashError', cause: expect.stringMatching(/exit code 3.*boom/) });
    } finally {
      await crashing.close();
    }
  });

  it('treats a reported session id that differs as a failure, not a warning', async () => {
    const other = uuidv4();
    const lying = await startTestRuntime({
      claudePath: await fakeClaude(
        `console.log(JSON.stringify({ type: 'result', subtype: 'success', is_error: false, session_id: '${other}', num_turns: 1, total_cost_usd: 0.01, result: 'ok', usage: { input_tokens: 5, output_tokens: 6 } }));`,
      ),
    });
    try {
      const sessionId = uuidv4();
      const { outcome, session } = await lying.runtime.run({ prompt: 'hi', projectId: 'p-mismatch', sessionId });
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'SessionIdMismatchError' });
      expect(session).toMatchObject({
        status: 'FAILED',
        error: 'SessionIdMismatchError',
        cause: `Claude reported session ${other}, expected ${sessionId}`,
      });
    } finally {
      await lying.close();
    }
  });
});
