import type { SessionRecord } from './session-item.js';
import { addUsage, addUsageByModel, addUsd, roundUsd, zeroUsage, type Usage, type UsageByModel } from './usage.js';

/** Sums over session records: a project's or a milestone's totals, derived, never stored. */
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
