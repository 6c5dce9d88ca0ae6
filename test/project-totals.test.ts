import { join } from 'node:path';
import { DeleteCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { runningTotal } from '../lib/github/session-report.js';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { loadWorkflowDefinition } from '../lib/local/workflow-definition.js';
import { MilestoneRepository } from '../lib/sessions/milestone-repository.js';
import { InvalidNextTokenError, SessionRepository } from '../lib/sessions/session-repository.js';
import { SESSION_SK, sessionPk } from '../lib/sessions/session-item.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { assertWithinBudget, monthStart } from '../lib/sessions/session-creation.js';
import { reapExecution } from '../lib/sessions/session-reaper.js';
import type { RunOutcome, SessionRecord } from '../lib/sessions/session-item.js';
import { addUsd } from '../lib/sessions/usage.js';
import { sumUsage, type UsageSums } from '../lib/sessions/usage-totals.js';
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

  it('a milestone\'s totals equal the figures of its tasks\' items after a mixed run: completed, failed, aborted with spend, refused the lease (the Catch branch)', async () => {
    const projectId = 'totals-milestone-mixed';
    const milestone = await env.runtime.milestones.open(projectId);
    const task = (prompt: string, sessionId = uuidv4()) => ({ prompt, projectId, mode: 'milestone', milestoneId: milestone.milestoneId, sessionId });
    // Prepare and Act: a session of no milestone beside them; a task completed; one failed (400); one aborted while Claude streams; one refused on the closed milestone
    env.anthropic.respondWith({ kind: 'text', text: 'fresh', usage: { input_tokens: 3, output_tokens: 1 } });
    expect((await env.runtime.run({ prompt: 'fresh', projectId })).session).toMatchObject({ status: 'COMPLETED' });
    env.anthropic.respondWith({ kind: 'text', text: 'ok', usage: { input_tokens: 10, output_tokens: 2 } });
    expect((await env.runtime.run(task('a'))).session).toMatchObject({ status: 'COMPLETED' });
    env.anthropic.respondByDefault({ kind: 'error', status: 400, message: 'bad request' });
    expect((await env.runtime.run(task('b'))).session).toMatchObject({ status: 'FAILED' });
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 1187, output_tokens: 3 } });
    const abortedId = uuidv4();
    const execution = env.runtime.startExecution(task('c', abortedId), abortedId);
    await waitFor(async () => env.anthropic.openStreams > 0 || undefined);
    execution.abort();
    expect((await execution.outcome).status).toBe('ABORTED');
    await waitFor(async () => ((await env.runtime.repository.get(abortedId))?.usage.inputTokens ? true : undefined));
    env.anthropic.respondByDefault({ kind: 'text' });
    await waitFor(async () => ((await env.runtime.milestones.get(milestone.milestoneId))?.leaseSessionId ? undefined : true));
    await env.runtime.milestones.close(milestone.milestoneId, projectId);
    expect((await env.runtime.run(task('d'))).session).toMatchObject({ status: 'FAILED', error: 'MilestoneUnavailable' });
    // Assess: the milestone's totals item (what its view reads) holds what its four tasks' items give, read by key
    const view = (await env.runtime.milestones.view(milestone.milestoneId))!;
    const kept = await env.runtime.milestones.totals(projectId, milestone.milestoneId);
    const tasks = await Promise.all(view.tasks.map((t) => env.runtime.repository.get(t.sessionId)));
    expect(tasks).toHaveLength(4);
    expect(comparable(kept)).toEqual(comparable(sumUsage(tasks.map((t) => t!))));
    expect(view.totals).toEqual(kept);
    expect(kept).toMatchObject({ sessions: 4, byStatus: { COMPLETED: 1, FAILED: 2, ABORTED: 1 } });
    expect(kept.usage.inputTokens).toBeGreaterThanOrEqual(10 + 1187);
    expect(await env.runtime.repository.totalsDrift(projectId)).toEqual([]);
    // The project's totals count the session of no milestone too
    expect((await env.runtime.repository.usageTotals(projectId)).sessions).toBe(5);
  });

  it('counts a milestone task once when the runner, the Catch branch and the reaper close it at once, and a stopped run\'s spend after them once', async () => {
    const projectId = 'totals-milestone-race';
    const repository = env.runtime.repository;
    const milestone = await env.runtime.milestones.open(projectId);
    const spent: number[] = [];
    for (let i = 0; i < 5; i++) {
      // Prepare
      const start = prepareSessionStart(
        { prompt: 'p', projectId, mode: 'milestone', milestoneId: milestone.milestoneId, sessionId: uuidv4() }, { executionArn: `arn:local:${uuidv4()}` },
      ).session;
      await repository.create(start);
      // Act: the state machine's close with the outcome, the Catch branch's close, the reaper's, and the runner's stopped-run spend, together
      await Promise.all([
        repository.close(start.sessionId, outcome('COMPLETED', 0.25, 100)),
        repository.closeWithError(start.sessionId, 'FAILED', 'Boom', 'the Catch branch'),
        reapExecution(repository, {
          status: 'ABORTED', name: start.sessionId, executionArn: start.executionArn,
          input: JSON.stringify({ prompt: 'p', projectId, mode: 'milestone', milestoneId: milestone.milestoneId, sessionId: start.sessionId }),
        }, { slots: env.runtime.slots, milestones: env.runtime.milestones }),
        repository.recordStoppedRun(start, outcome('ABORTED', 0.5, 7)),
        repository.recordStoppedRun(start, outcome('ABORTED', 0.5, 7)),
      ]);
      spent.push((await repository.get(start.sessionId))!.totalCostUsd);
    }
    // Assess: five tasks, each in one final status, and the spend their items hold
    const totals = await env.runtime.milestones.totals(projectId, milestone.milestoneId);
    expect(totals.sessions).toBe(5);
    expect(Object.values(totals.byStatus).reduce((a, b) => a + b, 0)).toBe(5);
    expect(totals.byStatus.RUNNING).toBeUndefined();
    expect(totals.totalCostUsd).toBe(spent.reduce(addUsd, 0));
    expect(await repository.totalsDrift(projectId)).toEqual([]);
  });
});

describe('a milestone\'s view: what it reads does not grow with its tasks', () => {
  it('reads its totals item and one page of its tasks (without their replies); a report\'s total as of its task reads only the tasks after it', async () => {
    // Prepare: one milestone of 3 tasks and one of 80, each created and closed by the repository's transactions; reads counted as bench/scale.ts counts them
    const definition = await loadWorkflowDefinition(join(process.cwd(), '.claude-sessions', 'cache'));
    const db = await LocalDynamoDb.start({ table: definition.table });
    const read = <T>(fn: () => Promise<T>) => db.countItemsRead(fn);
    try {
      const repository = new SessionRepository(db.documentClient, db.tableName);
      const milestones = new MilestoneRepository(db.documentClient, db.tableName);
      const projectId = 'view-scale';
      const base = Date.now() - 3_600_000;
      const closedTasks = async (milestoneId: string, n: number) => {
        const records: SessionRecord[] = [];
        for (let i = 0; i < n; i++) {
          const start = prepareSessionStart(
            { prompt: 'p', projectId, mode: 'milestone', milestoneId, sessionId: uuidv4() }, { executionArn: `arn:local:${uuidv4()}` },
          ).session;
          start.startedAt = new Date(base + i * 1_000).toISOString(); // one task after the other, as the lease has them
          await repository.create(start);
          await repository.close(start.sessionId, outcome('COMPLETED', 0.01 * (i + 1), 10 + i));
          records.push((await repository.get(start.sessionId))!);
        }
        return records;
      };
      const small = await milestones.open(projectId);
      const large = await milestones.open(projectId);
      await closedTasks(small.milestoneId, 3);
      const tasks = await closedTasks(large.milestoneId, 80);
      // Act
      const smallView = await read(() => milestones.view(small.milestoneId));
      const largeView = await read(() => milestones.view(large.milestoneId));
      const asOf = tasks[77]!;
      const reported = await read(() => milestones.view(large.milestoneId, { tasksAfter: asOf.startedAt }));
      // Assess: the milestone and its totals item, then one page of at most 50 tasks, whatever the number of tasks
      expect(smallView.items).toBe(2 + 3);
      expect(largeView.items).toBe(2 + 50);
      expect(largeView.value!.totals).toMatchObject({ sessions: 80, byStatus: { COMPLETED: 80 }, totalCostUsd: sumUsage(tasks).totalCostUsd });
      expect(largeView.value!.tasks.map((t) => t.sessionId)).toEqual(tasks.slice(0, 50).map((t) => t.sessionId));
      expect(largeView.value!.nextToken).toEqual(expect.any(String));
      expect(largeView.value!.tasks[0]).not.toHaveProperty('result');
      const nextPage = await milestones.view(large.milestoneId, { nextToken: largeView.value!.nextToken });
      expect(nextPage!.tasks.map((t) => t.sessionId)).toEqual(tasks.slice(50).map((t) => t.sessionId));
      // A page token of another milestone is refused naming nextToken, not handed to the store
      await expect(milestones.view(small.milestoneId, { nextToken: largeView.value!.nextToken })).rejects.toBeInstanceOf(InvalidNextTokenError);
      // A report made after two later tasks: the totals item less those two, read with them alone
      expect(reported.items).toBe(2 + 2);
      expect(comparable(runningTotal(asOf, reported.value!))).toEqual(comparable(sumUsage(tasks.slice(0, 78))));
      // A task's item gone (sessionRetentionDays): its milestone's totals still count it
      await db.documentClient.send(new DeleteCommand({ TableName: db.tableName, Key: { pk: sessionPk(tasks[0]!.sessionId), sk: SESSION_SK } }));
      expect((await milestones.view(large.milestoneId))!.totals.sessions).toBe(80);
    } finally {
      await db.close();
    }
  });
});

/** A sum as `usage` shows it: zero figures left out. */
function comparable(s: UsageSums): UsageSums {
  return { ...s, byStatus: Object.fromEntries(Object.entries(s.byStatus).filter(([, n]) => n !== 0)) };
}
