import type { SessionRecord } from './session-item.js';
import { addUsage, addUsageByModel, addUsd, roundUsd, zeroUsage, type Usage, type UsageByModel } from './usage.js';

/** Sums over session records: a project's or a milestone's totals, as its totals item keeps them or derived from its sessions. */
export interface UsageSums {
  sessions: number;
  byStatus: Record<string, number>;
  usage: Usage;
  /** The same tokens and cost, split by the model that served them. */
  byModel: UsageByModel;
  numTurns: number;
  totalCostUsd: number;
  durationMs: number;
}

export function emptySums(): UsageSums {
  return {
    sessions: 0, byStatus: {}, numTurns: 0, totalCostUsd: 0, durationMs: 0,
    usage: zeroUsage(),
    byModel: {},
  };
}

export function addSession(totals: UsageSums, s: Pick<SessionRecord, 'status' | 'usage' | 'modelUsage' | 'numTurns' | 'totalCostUsd' | 'durationMs'>): void {
  totals.sessions += 1;
  totals.byStatus[s.status] = (totals.byStatus[s.status] ?? 0) + 1;
  totals.usage = addUsage(totals.usage, s.usage);
  totals.byModel = addUsageByModel(totals.byModel, s.modelUsage);
  totals.numTurns += s.numTurns;
  totals.totalCostUsd = addUsd(totals.totalCostUsd, s.totalCostUsd);
  totals.durationMs += s.durationMs;
}

export function roundCost(totals: UsageSums): UsageSums {
  totals.totalCostUsd = roundUsd(totals.totalCostUsd);
  return totals;
}

export function sumUsage(sessions: Iterable<SessionRecord>): UsageSums {
  const totals = emptySums();
  for (const s of sessions) addSession(totals, s);
  return roundCost(totals);
}

/** Takes one session out of a sum (a milestone's totals as of a task: the later tasks taken out); a figure that reaches 0 is dropped. */
export function subtractSession(totals: UsageSums, s: Pick<SessionRecord, 'status' | 'usage' | 'modelUsage' | 'numTurns' | 'totalCostUsd' | 'durationMs'>): void {
  const negated = (u: Usage): Usage => ({ inputTokens: -u.inputTokens, outputTokens: -u.outputTokens, cacheReadInputTokens: -u.cacheReadInputTokens, cacheCreationInputTokens: -u.cacheCreationInputTokens });
  totals.sessions -= 1;
  const left = (totals.byStatus[s.status] ?? 0) - 1;
  if (left) totals.byStatus[s.status] = left;
  else delete totals.byStatus[s.status];
  totals.usage = addUsage(totals.usage, negated(s.usage));
  for (const [model, u] of Object.entries(s.modelUsage)) {
    const m = addUsageByModel(totals.byModel, { [model]: { ...negated(u), costUsd: -u.costUsd } })[model]!;
    if (Object.values(m).every((n) => n === 0)) delete totals.byModel[model];
    else totals.byModel[model] = m;
  }
  totals.numTurns -= s.numTurns;
  totals.totalCostUsd = addUsd(totals.totalCostUsd, -s.totalCostUsd);
  totals.durationMs -= s.durationMs;
}
