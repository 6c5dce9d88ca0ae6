import { isDeepStrictEqual } from 'node:util';
import { BatchWriteCommand, GetCommand } from '@aws-sdk/lib-dynamodb';
import { v4 as uuidv4 } from 'uuid';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { synthesizeDefinition } from '../lib/local/workflow-definition.js';
import { prepareSessionStart, type SessionStart } from '../lib/sessions/execution-input.js';
import { monthStart } from '../lib/sessions/session-creation.js';
import { RUNNING_PROJECT, SESSION_SK, closeValues, sessionPk, toSessionItem, type RunOutcome, type SessionItem } from '../lib/sessions/session-item.js';
import { MilestoneRepository } from '../lib/sessions/milestone-repository.js';
import { SessionRepository } from '../lib/sessions/session-repository.js';
import { backfillTotals } from '../lib/sessions/totals-backfill.js';

/** One size of the `scale` section: what a start, a `usage` and a list page read with this much history. */
export interface ScaleFigures {
  sessions: number;
  seedMs: number;
  /** Median of REPEATS reads, after WARM_UPS untimed ones. */
  startMs: number;
  startItemsRead: number;
  usageMs: number;
  usageItemsRead: number;
  listPageMs: number;
  /** Every other session is a task of one milestone: its view (totals and a page of tasks) read with that many tasks. */
  milestoneTasks: number;
  milestoneViewMs: number;
  milestoneViewItemsRead: number;
}

const REPLY = 'x'.repeat(2_000); // a stored reply at its cap, as the runner writes one
/** The history spans this many UTC days (the same days at every size, so a start and `usage` read the same day items). */
const DAYS = 90;
/** Sessions seeded through create and close, each checked against the item `closedItem` builds for it. */
const CHECKED = 20;
const REPEATS = 25;
const WARM_UPS = 50;

function closed(i: number, startedAt: string): RunOutcome {
  const cost = 0.0001 * (1 + (i % 7));
  return {
    status: i % 10 === 0 ? 'FAILED' : 'COMPLETED', endedAt: new Date(Date.parse(startedAt) + 4_000).toISOString(), claudeSessionId: null,
    usage: { inputTokens: 1200, outputTokens: 300, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
    modelUsage: { 'claude-sonnet-4-5': { inputTokens: 1200, outputTokens: 300, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, costUsd: cost } },
    numTurns: 3, totalCostUsd: cost, durationMs: 4_000, provider: 'anthropic', model: null, stopReason: 'end_turn', result: REPLY,
    error: null, cause: null, attempts: 1,
  };
}

/** The i-th session's start: spread over the last DAYS days, each a distinct instant; every odd one a task of the milestone. */
function startOf(i: number, projectId: string, now: number, milestoneId: string): SessionStart {
  const at = new Date(now - (i % DAYS) * 86_400_000 - Math.floor(i / DAYS) * 10 - 60_000);
  const task = i % 2 === 1 ? { mode: 'milestone' as const, milestoneId } : {};
  return prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4(), ...task }, { executionArn: `arn:bench:${i}`, now: at }).session;
}

/**
 * The session item `create` then `close` leave, built from the same exports (toSessionItem,
 * CLOSE_UPDATE's attributes from closeValues, the running key removed). The bench writes the first
 * CHECKED sessions through the repository and refuses to go on unless each equals this.
 */
function closedItem(start: SessionStart, outcome: RunOutcome): SessionItem {
  const item: SessionItem = { ...toSessionItem(start) };
  delete item[RUNNING_PROJECT];
  for (const [placeholder, value] of Object.entries(closeValues(outcome, start.retainUntil ?? null))) {
    if (placeholder !== ':running') item[placeholder.slice(1)] = value;
  }
  return item;
}

/**
 * Seeds one project with `size` closed sessions into an in-memory dynalite, half of them tasks of one
 * milestone, then times what reads grew with history before the totals: a start's budget check,
 * `usage`, the first page of `list`, the milestone's view.
 * Seeding: CHECKED sessions through SessionRepository's create and close (the transactions a
 * deployed start and close make), each compared with `closedItem`; the rest as those same items by
 * BatchWriteItem; then the project's totals and registry item by `totals backfill` (lib/sessions/
 * totals-backfill.ts), and `totalsDrift` must find them equal to the items.
 */
export async function scaleFigures(size: number, log: (line: string) => void): Promise<ScaleFigures> {
  const definition = await synthesizeDefinition();
  const db = await LocalDynamoDb.start({ table: definition.table });
  const repository = new SessionRepository(db.documentClient, db.tableName);
  const milestones = new MilestoneRepository(db.documentClient, db.tableName);
  const projectId = 'scale';
  const now = Date.now();
  try {
    const { milestoneId } = await milestones.open(projectId);
    const t0 = performance.now();
    for (let i = 0; i < Math.min(CHECKED, size); i++) {
      const start = startOf(i, projectId, now, milestoneId);
      const outcome = closed(i, start.startedAt);
      await repository.create(start);
      await repository.close(start.sessionId, outcome);
      const { Item } = await db.documentClient.send(new GetCommand({ TableName: db.tableName, Key: { pk: sessionPk(start.sessionId), sk: SESSION_SK } }));
      if (!isDeepStrictEqual(Item, closedItem(start, outcome))) {
        throw new Error(`the bench's closed item differs from what create and close wrote:\n${JSON.stringify(Item)}\n${JSON.stringify(closedItem(start, outcome))}`);
      }
    }
    let next = CHECKED;
    const worker = async () => {
      while (next < size) {
        const from = next;
        const to = (next = Math.min(size, next + 25));
        const items = [];
        for (let i = from; i < to; i++) {
          const start = startOf(i, projectId, now, milestoneId);
          items.push({ PutRequest: { Item: closedItem(start, closed(i, start.startedAt)) } });
        }
        let request: Record<string, unknown[]> | undefined = { [db.tableName]: items };
        while (request && Object.keys(request).length) {
          const { UnprocessedItems } = await db.documentClient.send(new BatchWriteCommand({ RequestItems: request as never }));
          request = UnprocessedItems as Record<string, unknown[]> | undefined;
        }
        if (Math.floor(to / 20_000) > Math.floor(from / 20_000)) log(`  scale ${size}: ${to} sessions written`);
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const [backfilled] = await backfillTotals(db.documentClient, db.tableName, projectId);
    if (backfilled?.sessions !== size) throw new Error(`the backfill counted ${backfilled?.sessions} sessions, not ${size}`);
    const seedMs = performance.now() - t0;
    const drift = await repository.totalsDrift(projectId);
    if (drift.length) throw new Error(`the seeded totals differ from the items: ${drift.join('; ')}`);
    log(`  scale ${size}: seeded in ${Math.round(seedMs / 1000)} s, totals equal to the items`);
    const timed = async (fn: () => Promise<unknown>) => {
      // Warm: the first read of a LevelDB range pays for opening it, and the first reads of a process run unoptimized code.
      for (let w = 0; w < WARM_UPS; w++) await fn();
      const ms: number[] = [];
      let items = 0;
      for (let r = 0; r < REPEATS; r++) {
        const started = performance.now();
        ({ items } = await db.countItemsRead(fn));
        ms.push(performance.now() - started);
      }
      return { ms: ms.sort((a, b) => a - b)[Math.floor(REPEATS / 2)]!, items };
    };
    const start = await timed(() => repository.costSince(projectId, monthStart(new Date(now))));
    const usage = await timed(() => repository.usageTotals(projectId));
    const list = await timed(() => repository.listByProject(projectId, { limit: 50 }));
    const view = await timed(() => milestones.view(milestoneId));
    return {
      sessions: size, seedMs: Math.round(seedMs), startMs: round(start.ms), startItemsRead: start.items,
      usageMs: round(usage.ms), usageItemsRead: usage.items, listPageMs: round(list.ms),
      milestoneTasks: Math.floor(size / 2), milestoneViewMs: round(view.ms), milestoneViewItemsRead: view.items,
    };
  } finally {
    await db.close();
  }
}

function round(n: number) {
  return Math.round(n * 10) / 10;
}
