import { v4 as uuidv4 } from 'uuid';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { synthesizeDefinition } from '../lib/local/workflow-definition.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { monthStart } from '../lib/sessions/session-creation.js';
import type { RunOutcome } from '../lib/sessions/session-item.js';
import { SessionRepository } from '../lib/sessions/session-repository.js';

/** One size of the `scale` section: what a start, a `usage` and a list page read with this much history. */
export interface ScaleFigures {
  sessions: number;
  seedMs: number;
  startMs: number;
  startItemsRead: number;
  usageMs: number;
  usageItemsRead: number;
  listPageMs: number;
}

const REPLY = 'x'.repeat(2_000); // a stored reply at its cap, as the runner writes one

function closed(i: number): RunOutcome {
  const cost = 0.0001 * (1 + (i % 7));
  return {
    status: i % 10 === 0 ? 'FAILED' : 'COMPLETED', endedAt: new Date().toISOString(), claudeSessionId: null,
    usage: { inputTokens: 1200, outputTokens: 300, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
    modelUsage: { 'claude-sonnet-4-5': { inputTokens: 1200, outputTokens: 300, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, costUsd: cost } },
    numTurns: 3, totalCostUsd: cost, durationMs: 4_000, provider: 'anthropic', model: null, stopReason: 'end_turn', result: REPLY,
    error: null, cause: null, attempts: 1,
  };
}

/**
 * Seeds one project with `size` closed sessions through SessionRepository's own writes (create, then
 * close: the transactions a deployed start and close make) into an in-memory dynalite, then times
 * what reads grow with history: a start's budget check, `usage`, the first page of `list`.
 */
export async function scaleFigures(size: number, log: (line: string) => void): Promise<ScaleFigures> {
  const definition = await synthesizeDefinition();
  const db = await LocalDynamoDb.start({ table: definition.table });
  let itemsRead = 0;
  db.client.middlewareStack.add((next) => async (args) => {
    const answer = await next(args);
    const output = answer.output as { Count?: number; Item?: unknown; Responses?: unknown[] };
    itemsRead += typeof output.Count === 'number' ? output.Count : output.Item ? 1 : 0;
    return answer;
  }, { step: 'initialize', name: 'benchItemsRead' });
  const repository = new SessionRepository(db.documentClient, db.tableName);
  const projectId = 'scale';
  try {
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < size; i = next++) {
        const { session } = prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4() }, { executionArn: `arn:bench:${i}` });
        await repository.create(session);
        await repository.close(session.sessionId, closed(i));
        if (i > 0 && i % 10_000 === 0) log(`  scale ${size}: ${i} sessions seeded`);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const seedMs = performance.now() - t0;
    const timed = async (fn: () => Promise<unknown>) => {
      await fn(); // warm: the first read of a LevelDB range pays for opening it
      itemsRead = 0;
      const started = performance.now();
      await fn();
      return { ms: performance.now() - started, items: itemsRead };
    };
    const start = await timed(() => repository.costSince(projectId, monthStart(new Date())));
    const usage = await timed(() => repository.usageTotals(projectId));
    const list = await timed(() => repository.listByProject(projectId, { limit: 50 }));
    return {
      sessions: size, seedMs: Math.round(seedMs), startMs: round(start.ms), startItemsRead: start.items,
      usageMs: round(usage.ms), usageItemsRead: usage.items, listPageMs: round(list.ms),
    };
  } finally {
    await db.close();
  }
}

function round(n: number) {
  return Math.round(n * 10) / 10;
}
