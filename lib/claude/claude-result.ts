import { z } from 'zod';
import { addUsages, roundUsd, type Usage, type UsageByModel } from '../sessions/usage.js';

const count = z.number().int().nonnegative().catch(0);

const ApiUsage = z
  .object({
    input_tokens: count.default(0),
    output_tokens: count.default(0),
    cache_read_input_tokens: count.default(0),
    cache_creation_input_tokens: count.default(0),
  })
  .loose();

const ModelUsage = z
  .object({
    inputTokens: count.default(0),
    outputTokens: count.default(0),
    cacheReadInputTokens: count.default(0),
    cacheCreationInputTokens: count.default(0),
    costUSD: z.number().nonnegative().catch(0).default(0),
  })
  .loose();

/** The CLI's final `result` object (measured with 2.1.x: docs/ARCHITECTURE.md#result-object-and-usage). */
export const ClaudeResult = z
  .object({
    type: z.literal('result'),
    subtype: z.string(),
    is_error: z.boolean(),
    api_error_status: z.number().nullable().optional(),
    session_id: z.string(),
    num_turns: count.default(0),
    duration_ms: count.default(0),
    total_cost_usd: z.number().nonnegative().default(0),
    result: z.string().optional(),
    stop_reason: z.string().nullable().optional(),
    terminal_reason: z.string().optional(),
    errors: z.array(z.string()).optional(),
    usage: ApiUsage.default({ input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 }),
    modelUsage: z.record(z.string(), ModelUsage).default({}),
  })
  .loose();
export type ClaudeResult = z.infer<typeof ClaudeResult>;

export function fromApiUsage(usage: z.infer<typeof ApiUsage>): Usage {
  return {
    inputTokens: usage.input_tokens,
    outputTokens: usage.output_tokens,
    cacheReadInputTokens: usage.cache_read_input_tokens,
    cacheCreationInputTokens: usage.cache_creation_input_tokens,
  };
}

/** The result's per-model usage in the record's field names. */
export function modelUsageOf(result: ClaudeResult): UsageByModel {
  return Object.fromEntries(Object.entries(result.modelUsage).map(([model, u]) => [model, {
    inputTokens: u.inputTokens,
    outputTokens: u.outputTokens,
    cacheReadInputTokens: u.cacheReadInputTokens,
    cacheCreationInputTokens: u.cacheCreationInputTokens,
    costUsd: roundUsd(u.costUSD),
  }]));
}

/**
 * The usage to record: the sum over modelUsage. The top-level `usage` counts the main
 * conversation's calls only, not a subagent's (measured with 2.1.197: docs/ARCHITECTURE.md#result-object-and-usage),
 * and is all zeros when a run ends on --max-budget-usd; modelUsage is empty only when no
 * call was answered, and the top-level counts stand then.
 */
export function usageOf(result: ClaudeResult): Usage {
  const byModel = Object.values(result.modelUsage);
  return byModel.length ? addUsages(byModel) : fromApiUsage(result.usage);
}

const CostState = z.object({
  type: z.literal('cost-state'),
  totalCostUSD: z.number().nonnegative().catch(0).default(0),
  modelUsage: z.record(z.string(), ModelUsage).default({}),
});
export type SpentBefore = z.infer<typeof CostState>;

/**
 * What a conversation had spent before it is resumed: the last `cost-state` line of its
 * transcript. CLI 2.1.332 writes one at the end of each invocation and restores it on `--resume`,
 * so its result's `modelUsage` and `total_cost_usd` count the whole conversation (the top-level
 * `usage` stays this invocation's); 2.1.197 wrote none and reported the invocation only.
 */
export function spentBefore(transcript: Buffer): SpentBefore | undefined {
  const text = transcript.toString('utf8');
  const at = text.lastIndexOf('"type":"cost-state"');
  if (at < 0) return undefined;
  const line = text.slice(text.lastIndexOf('\n', at) + 1, (text.indexOf('\n', at) + 1 || text.length + 1) - 1);
  try {
    const parsed = CostState.safeParse(JSON.parse(line));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** A resumed run's result as this invocation's alone: what the conversation had spent before, taken off. */
export function invocationOnly(result: ClaudeResult, before: SpentBefore | undefined): ClaudeResult {
  if (!before) return result;
  const less = (a: number, b: number) => Math.max(0, a - b);
  const modelUsage = Object.fromEntries(Object.entries(result.modelUsage).flatMap(([model, u]) => {
    const b = before.modelUsage[model];
    if (!b) return [[model, u]];
    const own = {
      ...u,
      inputTokens: less(u.inputTokens, b.inputTokens),
      outputTokens: less(u.outputTokens, b.outputTokens),
      cacheReadInputTokens: less(u.cacheReadInputTokens, b.cacheReadInputTokens),
      cacheCreationInputTokens: less(u.cacheCreationInputTokens, b.cacheCreationInputTokens),
      costUSD: less(u.costUSD, b.costUSD),
    };
    // A model only the earlier invocations called is not this one's.
    const used = own.inputTokens + own.outputTokens + own.cacheReadInputTokens + own.cacheCreationInputTokens > 0 || own.costUSD > 0;
    return used ? [[model, own]] : [];
  }));
  return { ...result, modelUsage, total_cost_usd: less(result.total_cost_usd, before.totalCostUSD) };
}

/** API answers worth another whole run once the CLI's own retries are spent: overload, throttling, server faults. */
export const TRANSIENT_API_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504, 529]);

export function isTransientFailure(result: ClaudeResult): boolean {
  return Boolean(result.is_error && result.api_error_status && TRANSIENT_API_STATUSES.has(Number(result.api_error_status)));
}

/**
 * A Claude-level failure: the CLI ran and reported, but the task did not succeed.
 * API failures exit 1 with subtype "success" and is_error true, so is_error decides.
 */
export function claudeFailure(result: ClaudeResult): { error: string; cause: string } | null {
  if (!result.is_error && result.subtype === 'success') return null;
  const detail = result.errors?.join('; ') || result.result || result.subtype;
  if (result.subtype === 'error_max_turns') return { error: 'ClaudeMaxTurns', cause: detail };
  if (result.subtype === 'error_max_budget_usd') return { error: 'ClaudeMaxBudget', cause: detail };
  if (result.api_error_status) return { error: 'ClaudeApiError', cause: `HTTP ${result.api_error_status}: ${detail}` };
  // An API that never answered (unreachable, a dropped connection) has no status; the CLI says "API Error: …".
  if (/^API Error\b/.test(detail)) return { error: 'ClaudeApiError', cause: detail };
  // "success" is the CLI's subtype for an error result too: it says nothing to a reader.
  return { error: 'ClaudeError', cause: result.subtype === 'success' ? detail : `${result.subtype}: ${detail}` };
}
