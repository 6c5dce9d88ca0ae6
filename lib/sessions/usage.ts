// Usage arithmetic, in one place: every sum of tokens and dollars goes through here, so a
// session's attempts, a milestone's tasks and a project's month add up the same way.

/** Tokens by kind, as a session records them. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cacheReadInputTokens: number;
  cacheCreationInputTokens: number;
}

export function zeroUsage(): Usage {
  return { inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
}

export function addUsage(a: Usage, b: Usage): Usage {
  return {
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    cacheReadInputTokens: a.cacheReadInputTokens + b.cacheReadInputTokens,
    cacheCreationInputTokens: a.cacheCreationInputTokens + b.cacheCreationInputTokens,
  };
}

export function addUsages(usages: Iterable<Usage>): Usage {
  let total = zeroUsage();
  for (const u of usages) total = addUsage(total, u);
  return total;
}

/**
 * Dollars, rounded to a billionth: summing binary floats drifts in the last digits, and the
 * CLI quotes costs well above that (a millionth is the finest a user is shown).
 */
export function roundUsd(usd: number): number {
  return Math.round(usd * 1e9) / 1e9;
}

export function addUsd(a: number, b: number): number {
  return roundUsd(a + b);
}

/** One model's share of a session: its tokens, and the CLI's estimate of their cost at list price. */
export interface ModelUsage extends Usage {
  costUsd: number;
}

/** Usage split by the model that served it (the model id or inference profile the CLI asked for). */
export type UsageByModel = Record<string, ModelUsage>;

export function addUsageByModel(a: UsageByModel, b: UsageByModel): UsageByModel {
  const sum: UsageByModel = { ...a };
  for (const [model, usage] of Object.entries(b)) {
    const before = sum[model];
    sum[model] = before ? { ...addUsage(before, usage), costUsd: addUsd(before.costUsd, usage.costUsd) } : { ...usage };
  }
  return sum;
}
