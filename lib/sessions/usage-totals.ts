import type { SessionRecord } from './session-item.js';
import { addUsage, addUsd, roundUsd, zeroUsage, type Usage } from './usage.js';

/** Sums over session records: a project's or a milestone's totals, derived, never stored. */
export interface UsageSums {
  sessions: number;
  byStatus: Record<string, number>;
  usage: Usage;
  numTurns: number;
  totalCostUsd: number;
  durationMs: number;
}

export function emptySums(): UsageSums {
  return {
    sessions: 0, byStatus: {}, numTurns: 0, totalCostUsd: 0, durationMs: 0,
    usage: zeroUsage(),
  };
}

export function addSession(totals: UsageSums, s: SessionRecord): void {
  totals.sessions += 1;
  totals.byStatus[s.status] = (totals.byStatus[s.status] ?? 0) + 1;
  totals.usage = addUsage(totals.usage, s.usage);
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
