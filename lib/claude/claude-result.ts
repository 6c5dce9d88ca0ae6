import { z } from 'zod';

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

/**
 * The CLI's final `result` object (measured with 2.1.x: docs/ARCHITECTURE.md#result-object-and-usage).
 * It says how the run ended; its usage and cost are the CLI's say only: a session records what
 * its gateway metered (usage-meter.ts), since anything the CLI starts can print a result too.
 */
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
