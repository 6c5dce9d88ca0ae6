import type { SessionRecord, Usage } from './session-item.js';

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
    usage: { inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
  };
}

export function addSession(totals: UsageSums, s: SessionRecord): void {
  totals.sessions += 1;
  totals.byStatus[s.status] = (totals.byStatus[s.status] ?? 0) + 1;
  totals.usage.inputTokens += s.usage.inputTokens;
  totals.usage.outputTokens += s.usage.outputTokens;
  totals.usage.cacheReadInputTokens += s.usage.cacheReadInputTokens;
  totals.usage.cacheCreationInputTokens += s.usage.cacheCreationInputTokens;
  totals.numTurns += s.numTurns;
  totals.totalCostUsd += s.totalCostUsd;
  totals.durationMs += s.durationMs;
}

/** Summing binary floats drifts in the last digits; costs are quoted to a millionth of a dollar. */
export function roundCost(totals: UsageSums): UsageSums {
  totals.totalCostUsd = Math.round(totals.totalCostUsd * 1e6) / 1e6;
  return totals;
}

export function sumUsage(sessions: Iterable<SessionRecord>): UsageSums {
  const totals = emptySums();
  for (const s of sessions) addSession(totals, s);
  return roundCost(totals);
}
