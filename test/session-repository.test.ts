import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { loadWorkflowDefinition } from '../lib/local/workflow-definition.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { SessionAlreadyExists, SessionRepository } from '../lib/sessions/session-repository.js';
import type { RunOutcome } from '../lib/sessions/session-item.js';
import { join } from 'node:path';

let db: LocalDynamoDb;
let repository: SessionRepository;

beforeAll(async () => {
  const definition = await loadWorkflowDefinition(join(process.cwd(), '.claude-sessions', 'cache'));
  db = await LocalDynamoDb.start({ table: definition.table });
  repository = new SessionRepository(db.documentClient, db.tableName);
});
afterAll(async () => {
  await db.close();
});

function start(projectId: string, minute: number) {
  return prepareSessionStart(
    { prompt: 'p', projectId, sessionId: uuidv4() },
    { executionArn: 'arn:local', now: new Date(Date.UTC(2026, 0, 1, 0, minute)) },
  ).session;
}

function outcome(inputTokens: number, costUsd: number): RunOutcome {
  return {
    status: 'COMPLETED', endedAt: new Date().toISOString(), claudeSessionId: null,
    usage: { inputTokens, outputTokens: 2 * inputTokens, cacheReadInputTokens: 1, cacheCreationInputTokens: 0 },
    numTurns: 1, totalCostUsd: costUsd, durationMs: 10, modelUsage: {}, provider: 'anthropic', model: null, stopReason: 'end_turn',
    result: 'ok', error: null, cause: null, attempts: 1,
  };
}

describe('SessionRepository on dynalite, with the table the stack defines', () => {
  it('creates a session once: another execution\'s create with the same id is refused, the same execution\'s retry is not', async () => {
    const s = start('r-create', 0);
    await repository.create(s);
    await expect(repository.create({ ...s, executionArn: `${s.executionArn}-other` })).rejects.toBeInstanceOf(SessionAlreadyExists);
    await expect(repository.create(s, s.startedAt)).resolves.toBeUndefined(); // a retried call whose first answer was lost
    // The same ARN for a later execution (the local runtime reuses names): not ours.
    await expect(repository.create(s, '2099-01-01T00:00:00.000Z')).rejects.toBeInstanceOf(SessionAlreadyExists);
    expect(await repository.get(s.sessionId)).toMatchObject({ status: 'RUNNING', projectId: 'r-create' });
  });

  it('closes only from RUNNING: a late close changes neither the status nor the usage', async () => {
    const s = start('r-close', 0);
    await repository.create(s);
    expect(await repository.close(s.sessionId, outcome(10, 0.5))).toBe(true);
    expect(await repository.closeWithError(s.sessionId, 'ABORTED', 'ExecutionAborted', 'late')).toBe(false);
    expect(await repository.close(s.sessionId, outcome(999, 9))).toBe(false);
    expect(await repository.get(s.sessionId)).toMatchObject({ status: 'COMPLETED', usage: { inputTokens: 10 }, totalCostUsd: 0.5 });
  });

  it('lists a project newest first across pages, and filters by status', async () => {
    const made = [];
    for (let minute = 0; minute < 7; minute++) {
      const s = start('r-list', minute);
      await repository.create(s);
      if (minute % 2 === 0) await repository.close(s.sessionId, outcome(1, 0.01));
      made.push(s.sessionId);
    }
    const seen: string[] = [];
    let nextToken: string | null = null;
    let pages = 0;
    do {
      const page = await repository.listByProject('r-list', { limit: 3, nextToken });
      seen.push(...page.items.map((i) => i.sessionId));
      nextToken = page.nextToken;
      pages += 1;
    } while (nextToken);
    expect(pages).toBeGreaterThan(2);
    expect(seen).toEqual([...made].reverse());
    expect((await repository.listRunning('r-list')).map((s) => s.sessionId).sort()).toEqual(
      made.filter((_, i) => i % 2 === 1).sort(),
    );
  });

  it('derives project totals from the session items', async () => {
    for (const [minute, tokens, cost] of [[0, 10, 0.1], [1, 20, 0.2], [2, 30, 0.3]] as const) {
      const s = start('r-usage', minute);
      await repository.create(s);
      await repository.close(s.sessionId, outcome(tokens, cost));
    }
    await repository.create(start('r-usage', 3)); // still running: counted, no usage yet
    const totals = await repository.usageTotals('r-usage');
    expect(totals).toMatchObject({
      sessions: 4,
      byStatus: { COMPLETED: 3, RUNNING: 1 },
      usage: { inputTokens: 60, outputTokens: 120, cacheReadInputTokens: 3, cacheCreationInputTokens: 0 },
      numTurns: 3,
      totalCostUsd: 0.6,
    });
  });
});
