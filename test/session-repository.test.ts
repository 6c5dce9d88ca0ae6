import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { loadWorkflowDefinition } from '../lib/local/workflow-definition.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { MILESTONE_INDEX } from '../lib/sessions/milestone-item.js';
import { SessionAlreadyExists, SessionRepository } from '../lib/sessions/session-repository.js';
import { PROJECT_INDEX, RUNNING_INDEX, RUNNING_PROJECT, SESSION_SK, sessionPk, toSessionItem, type RunOutcome } from '../lib/sessions/session-item.js';
import { join } from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';

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

  it('without a retention, a close writes the TTL attribute null: the item never expires', async () => {
    const closed = start('r-kept', 0);
    const failed = start('r-kept', 1);
    for (const s of [closed, failed]) await repository.create(s);
    await repository.close(closed.sessionId, outcome(1, 0.01));
    await repository.closeWithError(failed.sessionId, 'ABORTED', 'ExecutionAborted', 'reaped');
    for (const s of [closed, failed]) {
      const { Item } = await db.documentClient.send(new GetCommand({ TableName: db.tableName, Key: { pk: sessionPk(s.sessionId), sk: SESSION_SK } }));
      expect(Item).toMatchObject({ expiresAt: null });
      expect(Item).not.toHaveProperty('retainUntil');
    }
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

  it('lists what `list` shows from the project index, not the reply or the cause: `get` reads them', async () => {
    // Prepare: a reply at its cap, and a failure whose cause is long
    const replied = start('r-summary', 0);
    await repository.create(replied);
    await repository.close(replied.sessionId, { ...outcome(5, 0.05), result: 'r'.repeat(2_000) });
    const failed = start('r-summary', 1);
    await repository.create(failed);
    await repository.closeWithError(failed.sessionId, 'FAILED', 'Boom', 'c'.repeat(4_000));
    // Act
    const { items } = await repository.listByProject('r-summary');
    // Assess
    expect(items.map((i) => i.sessionId)).toEqual([failed.sessionId, replied.sessionId]);
    for (const item of items) {
      expect(item).not.toHaveProperty('result');
      expect(item).not.toHaveProperty('cause');
    }
    expect(items[0]).toMatchObject({ status: 'FAILED', error: 'Boom', projectId: 'r-summary', mode: 'fresh' });
    expect(items[1]).toMatchObject({ status: 'COMPLETED', usage: { inputTokens: 5 }, totalCostUsd: 0.05, numTurns: 1, provider: 'anthropic' });
    expect(await repository.get(replied.sessionId)).toMatchObject({ result: 'r'.repeat(2_000) });
    expect(await repository.get(failed.sessionId)).toMatchObject({ cause: 'c'.repeat(4_000) });
    // The index itself holds no reply: what a deployed index would carry, as DynamoDB describes it
    const { Table } = await db.client.send(new DescribeTableCommand({ TableName: db.tableName }));
    const index = Table!.GlobalSecondaryIndexes!.find((i) => i.IndexName === PROJECT_INDEX)!;
    expect(index.Projection?.ProjectionType).toBe('INCLUDE');
    expect(index.Projection?.NonKeyAttributes).not.toContain('result');
  });

  it('lists the projects from their registry items, one read each, without a scan', async () => {
    // Prepare: two sessions of one project, one of another
    for (const [projectId, minute] of [['r-projects-a', 0], ['r-projects-a', 1], ['r-projects-b', 2]] as const) await repository.create(start(projectId, minute));
    const sent: { command: string; count?: number }[] = [];
    db.client.middlewareStack.add((next, context) => async (args) => {
      const answer = await next(args);
      sent.push({ command: context.commandName!, count: (answer.output as { Count?: number }).Count });
      return answer;
    }, { step: 'initialize', name: 'projectListReads' });
    // Act
    let ids: string[];
    try {
      ids = await repository.projectIds();
    } finally {
      db.client.middlewareStack.remove('projectListReads');
    }
    // Assess
    expect(ids).toEqual(expect.arrayContaining(['r-projects-a', 'r-projects-b']));
    expect(ids).toEqual([...new Set(ids)].sort());
    expect(sent.map((s) => s.command)).toEqual(['QueryCommand']);
    expect(sent[0]!.count).toBe(ids.length);
  });

  it('makes a local table of an older index again with the index the stack defines, and lists the projects its sessions name', async () => {
    // Prepare: state on disk whose project index holds every attribute under the old name, and no registry
    const definition = await loadWorkflowDefinition(join(process.cwd(), '.claude-sessions', 'cache'));
    const old = structuredClone(definition.table);
    const index = (old.GlobalSecondaryIndexes as { IndexName: string; Projection: unknown }[]).find((i) => i.IndexName === PROJECT_INDEX)!;
    Object.assign(index, { IndexName: 'byProject', Projection: { ProjectionType: 'ALL' } });
    const milestoneIndex = (old.GlobalSecondaryIndexes as { IndexName: string; Projection: unknown }[]).find((i) => i.IndexName === MILESTONE_INDEX)!;
    Object.assign(milestoneIndex, { IndexName: 'byMilestone', Projection: { ProjectionType: 'ALL' } });
    const path = await mkdtemp(join(tmpdir(), 'claude-sessions-old-state-'));
    const s = start('r-migrated', 0);
    const before = await LocalDynamoDb.start({ path, table: old });
    await before.documentClient.send(new PutCommand({ TableName: before.tableName, Item: { ...toSessionItem(s), status: 'COMPLETED', result: 'kept' } }));
    await before.close();
    // Act
    const after = await LocalDynamoDb.start({ path, table: definition.table });
    try {
      const migrated = new SessionRepository(after.documentClient, after.tableName);
      // Assess
      const { Table } = await after.client.send(new DescribeTableCommand({ TableName: after.tableName }));
      expect(Table!.GlobalSecondaryIndexes!.map((i) => [i.IndexName, i.Projection?.ProjectionType]).sort()).toEqual([[MILESTONE_INDEX, 'INCLUDE'], [RUNNING_INDEX, 'INCLUDE'], [PROJECT_INDEX, 'INCLUDE']]);
      expect(await migrated.projectIds()).toEqual(['r-migrated']);
      expect((await migrated.listByProject('r-migrated')).items).toEqual([expect.objectContaining({ sessionId: s.sessionId, status: 'COMPLETED' })]);
      expect(await migrated.get(s.sessionId)).toMatchObject({ result: 'kept' });
    } finally {
      await after.close();
    }
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

  it('lists the running sessions from the running index: the items it reads are what runs, not the history', async () => {
    // Prepare: 120 closed sessions (each way a session closes) and 3 still running
    const closed: string[] = [];
    for (let i = 0; i < 120; i++) {
      const s = start('r-running', i);
      closed.push(s.sessionId);
      await repository.create(s);
      if (i % 2) await repository.close(s.sessionId, outcome(1, 0.01));
      else await repository.closeWithError(s.sessionId, i % 4 ? 'FAILED' : 'ABORTED', 'Boom', 'closed');
    }
    const running = [start('r-running', 200), start('r-running', 201), start('r-running', 202)];
    for (const s of running) await repository.create(s);
    const read: number[] = [];
    db.client.middlewareStack.add((next) => async (args) => {
      const answer = await next(args);
      const { ScannedCount } = answer.output as { ScannedCount?: number };
      if (typeof ScannedCount === 'number') read.push(ScannedCount);
      return answer;
    }, { step: 'initialize', name: 'runningReads' });
    // Act
    let listed, executions;
    try {
      listed = await repository.listRunning('r-running');
      executions = await repository.runningExecutions('r-running');
    } finally {
      db.client.middlewareStack.remove('runningReads');
    }
    // Assess
    const ids = running.map((s) => s.sessionId).sort();
    expect(listed.map((s) => s.sessionId).sort()).toEqual(ids);
    expect(listed.every((s) => s.status === 'RUNNING' && s.projectId === 'r-running')).toBe(true);
    expect(executions.map((s) => s.sessionId).sort()).toEqual(ids);
    expect(read).toEqual([3, 3]);
    // A closed item carries no running key; a running one does
    const itemOf = async (sessionId: string) => (await db.documentClient.send(new GetCommand({ TableName: db.tableName, Key: { pk: sessionPk(sessionId), sk: SESSION_SK } }))).Item;
    expect(await itemOf(running[0]!.sessionId)).toHaveProperty(RUNNING_PROJECT, 'r-running');
    for (const sessionId of closed.slice(0, 2)) expect(await itemOf(sessionId)).not.toHaveProperty(RUNNING_PROJECT);
  });

  it('takes out of the running index a session an older definition closed without removing its key, and only a closed one', async () => {
    // Prepare: a close as an execution of a definition from before the running index wrote it
    const s = start('r-stale', 0);
    const live = start('r-stale', 1);
    await repository.create(s);
    await repository.create(live);
    await db.documentClient.send(new UpdateCommand({
      TableName: db.tableName, Key: { pk: sessionPk(s.sessionId), sk: SESSION_SK },
      UpdateExpression: 'SET #status = :failed', ExpressionAttributeNames: { '#status': 'status' }, ExpressionAttributeValues: { ':failed': 'FAILED' },
    }));
    // Act
    const listed = await repository.listRunning('r-stale');
    const before = await repository.runningExecutions('r-stale');
    const clearedLive = await repository.clearRunningEntry(live.sessionId);
    const cleared = await repository.clearRunningEntry(s.sessionId);
    // Assess
    expect(listed.map((x) => x.sessionId)).toEqual([live.sessionId]);
    expect(before.map((x) => [x.sessionId, x.status]).sort()).toEqual([[s.sessionId, 'FAILED'], [live.sessionId, 'RUNNING']].sort());
    expect([clearedLive, cleared]).toEqual([false, true]);
    expect((await repository.runningExecutions('r-stale')).map((x) => x.sessionId)).toEqual([live.sessionId]);
  });
});
