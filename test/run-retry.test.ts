import { describe, expect, it } from 'vitest';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
// Three runs at most, no back-off wait in tests (production: 15 s, doubled).
useTestRuntime((started) => (env = started), {}, { policy: { runAttempts: 3, retryBaseSeconds: 0 } });

describe('the workflow runs Claude again after a transient API failure, keeping what every attempt spent', () => {
  it('529 once, then an answer: COMPLETED after 2 attempts, the usage of both summed once', async () => {
    // Prepare: attempt 1 takes a tool turn (tokens spent), then the API is overloaded; attempt 2 answers.
    env.anthropic.respondWith(
      { kind: 'tool_use', usage: { input_tokens: 700, output_tokens: 70 } },
      { kind: 'error', status: 529, message: 'overloaded' },
      { kind: 'text', text: 'done at last', usage: { input_tokens: 300, output_tokens: 30 } },
    );
    // Act
    const { execution, outcome, session } = await env.runtime.run({ prompt: 'hi', projectId: 'retry-ok' });
    // Assess
    expect(outcome.status).toBe('SUCCEEDED');
    expect(session).toMatchObject({ status: 'COMPLETED', attempts: 2, result: 'done at last', usage: { inputTokens: 1_000, outputTokens: 100 } });
    expect(session!.numTurns).toBeGreaterThanOrEqual(2);
    expect(env.anthropic.messageRequests).toHaveLength(3);
    void execution;
  });

  it('keeps failing transiently: FAILED after the last attempt, with every attempt\'s spend', async () => {
    env.anthropic.respondByDefault({ kind: 'error', status: 503, message: 'unavailable' });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'retry-exhausted' });
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError', attempts: 3, cause: expect.stringMatching(/503/) });
    expect(env.anthropic.messageRequests).toHaveLength(3);
    expect(await env.runtime.repository.listRunning('retry-exhausted')).toEqual([]);
  });

  it('does not run again for a failure that is not transient (400), nor for a milestone task', async () => {
    // CLI fact: the CLI itself re-sends a 400 up to 5 times, shedding request features (2.1.332), so every call answers 400.
    env.anthropic.respondByDefault({ kind: 'error', status: 400, message: 'bad request' });
    const { session } = await env.runtime.run({ prompt: 'hi', projectId: 'retry-400' });
    expect(session).toMatchObject({ status: 'FAILED', attempts: 1 });
    const callsOfOneRun = env.anthropic.messageRequests.length;
    expect(callsOfOneRun).toBeLessThanOrEqual(6);
    env.anthropic.respondByDefault({ kind: 'text' });
    const milestone = await env.runtime.milestones.open('retry-ms');
    env.anthropic.respondWith({ kind: 'error', status: 529 });
    const task = await env.runtime.run({ prompt: 'hi', projectId: 'retry-ms', milestoneId: milestone.milestoneId });
    expect(task.session).toMatchObject({ status: 'FAILED', attempts: 1 });
    expect(env.anthropic.messageRequests).toHaveLength(callsOfOneRun + 1);
  });
});
