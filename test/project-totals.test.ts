import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { assertWithinBudget, monthStart } from '../lib/sessions/session-creation.js';
import { reapExecution } from '../lib/sessions/session-reaper.js';
import type { RunOutcome } from '../lib/sessions/session-item.js';
import { addUsd } from '../lib/sessions/usage.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { waitFor } from './support/wait-for.js';

let env: TestRuntime;
useTestRuntime((started) => (env = started), {}, { policy: { runAttempts: 2, retryBaseSeconds: 0 } });


function outcome(status: RunOutcome['status'], costUsd: number, inputTokens: number): RunOutcome {
  return {
    status, endedAt: new Date().toISOString(), claudeSessionId: null,
    usage: { inputTokens, outputTokens: 1, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
    numTurns: 1, totalCostUsd: costUsd, durationMs: 5, modelUsage: { m: { inputTokens, outputTokens: 1, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, costUsd } },
    provider: 'anthropic', model: null, stopReason: null, result: 'r', error: null, cause: null, attempts: 1,
  };
}

describe('project totals: counted once in the write that closes a session', () => {
  it('equal the totals derived from the session items after a mixed run: completed, failed, aborted with spend, retried attempts', async () => {
    const projectId = 'totals-mixed';
    // Prepare and Act: a completed run; a failed one (400); a retried one (529, then an answer); a failure of the runner (Catch); an abort while Claude streams
    env.anthropic.respondWith({ kind: 'text', text: 'ok', usage: { input_tokens: 10, output_tokens: 2 } });
    expect((await env.runtime.run({ prompt: 'a', projectId })).session).toMatchObject({ status: 'COMPLETED' });
    // CLI fact: a 400 is re-sent up to 5 times (2.1.332): every call of this session is refused.
    env.anthropic.respondByDefault({ kind: 'error', status: 400, message: 'bad request' });
    expect((await env.runtime.run({ prompt: 'b', projectId })).session).toMatchObject({ status: 'FAILED' });
    env.anthropic.respondByDefault({ kind: 'text' });
    env.anthropic.respondWith(
      { kind: 'tool_use', usage: { input_tokens: 700, output_tokens: 70 } },
      { kind: 'error', status: 529, message: 'overloaded' },
      { kind: 'text', text: 'done', usage: { input_tokens: 300, output_tokens: 30 } },
    );
    expect((await env.runtime.run({ prompt: 'c', projectId })).session).toMatchObject({ status: 'COMPLETED', attempts: 2 });
    env.anthropic.respondWith(
      { kind: 'tool_use', usage: { input_tokens: 500, output_tokens: 50 } },
      { kind: 'error', status: 529, message: 'overloaded' },
    ).respondByDefault({ kind: 'error', status: 400, message: 'bad request' }); // the second attempt: every call refused
    expect((await env.runtime.run({ prompt: 'd', projectId })).session).toMatchObject({ status: 'FAILED', attempts: 2 });
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 1187, output_tokens: 3 } });
    const abortedId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'e', projectId, sessionId: abortedId }, abortedId);
    await waitFor(async () => env.anthropic.openStreams > 0 || undefined);
    execution.abort();
    expect((await execution.outcome).status).toBe('ABORTED');
    await waitFor(async () => ((await env.runtime.repository.get(abortedId))?.usage.inputTokens ? true : undefined));
    // Assess
    const kept = await env.runtime.repository.usageTotals(projectId);
    expect(kept).toMatchObject({ sessions: 5, byStatus: { COMPLETED: 2, FAILED: 2, ABORTED: 1 } });
    expect(kept.usage.inputTokens).toBeGreaterThanOrEqual(10 + 1_000 + 500 + 1187);
    expect(kept.totalCostUsd).toBeGreaterThan(0);
    expect(await env.runtime.repository.totalsDrift(projectId)).toEqual([]);
  });

  it('the monthly budget refuses a start at exactly the point the derived sum of the month does', async () => {
    const projectId = 'totals-budget';
    const policy = { monthlyBudgetUsd: 0.3 };
    const since = monthStart(new Date());
    const derived = async () => {
      let sum = 0;
      for await (const s of env.runtime.repository.allByProject(projectId)) if (s.startedAt >= since) sum = addUsd(sum, s.totalCostUsd);
      return sum;
    };
    const refuses = async (spent: () => Promise<number>) => assertWithinBudget(projectId, policy, spent).then(() => false, () => true);
    // Costs whose binary sum drifts (0.1 + 0.2): the budget is reached by the third session exactly
    for (const cost of [0.1, 0.1, 0.1, 0.05]) {
      expect(await refuses(() => env.runtime.repository.costSince(projectId, since))).toBe(await refuses(derived));
      expect(await env.runtime.repository.costSince(projectId, since)).toBe(await derived());
      const start = prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4() }, { executionArn: `arn:local:${uuidv4()}` }).session;
      await env.runtime.repository.create(start);
      expect(await env.runtime.repository.close(start.sessionId, outcome('COMPLETED', cost, 3))).toBe(true);
    }
    expect(await env.runtime.repository.costSince(projectId, since)).toBe(await derived());
    expect(await refuses(() => env.runtime.repository.costSince(projectId, since))).toBe(true);
  });

  it('counts a session once when the runner, the Catch branch and the reaper close it at once, and a stopped run\'s spend after them once', async () => {
    const projectId = 'totals-race';
    const repository = env.runtime.repository;
    for (let i = 0; i < 5; i++) {
      // Prepare
      const start = prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4() }, { executionArn: `arn:local:${uuidv4()}` }).session;
      await repository.create(start);
      // Act: the state machine's close with the outcome, the Catch branch's close, the reaper's, and the runner's stopped-run spend, together
      const results = await Promise.all([
        repository.close(start.sessionId, outcome('COMPLETED', 0.25, 100)),
        repository.closeWithError(start.sessionId, 'FAILED', 'Boom', 'the Catch branch'),
        reapExecution(repository, { status: 'ABORTED', name: start.sessionId, executionArn: start.executionArn, input: JSON.stringify({ prompt: 'p', projectId, sessionId: start.sessionId }) }, { slots: env.runtime.slots, milestones: env.runtime.milestones }),
        repository.recordStoppedRun(start, outcome('ABORTED', 0.5, 7)),
        repository.recordStoppedRun(start, outcome('ABORTED', 0.5, 7)),
      ]);
      void results;
    }
    // Assess: five sessions, each in one final status, and the spend the items hold
    const kept = await repository.usageTotals(projectId);
    expect(kept.sessions).toBe(5);
    expect(Object.values(kept.byStatus).reduce((a, b) => a + b, 0)).toBe(5);
    expect(kept.byStatus.RUNNING).toBeUndefined();
    expect(await repository.totalsDrift(projectId)).toEqual([]);
  });
});
