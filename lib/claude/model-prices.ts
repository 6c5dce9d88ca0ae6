import table from './model-prices.json' with { type: 'json' };

// The pinned CLI's own prices, measured from it (scripts/measure-cli-prices.ts writes
// model-prices.json; test/model-prices.test.ts fails when the pinned CLI prices otherwise).
// The runner prices the tokens its gateway metered with them, so a session's cost is what the
// CLI would have said without the session being able to say it.

/** US dollars per million tokens of each kind. */
export interface TokenRates {
  inputPerMTok: number;
  outputPerMTok: number;
  cacheWritePerMTok: number;
  cacheReadPerMTok: number;
  /** Cache writes that live an hour, where the CLI prices them apart; else at cacheWritePerMTok. */
  cacheWrite1hPerMTok?: number;
}

export interface ModelPrice extends TokenRates {
  /** Where a message's prompt (input, cache reads and writes together) is over the threshold, all four rates are these. */
  longPrompt?: TokenRates & { abovePromptTokens: number };
  /** Fast mode's rates (no long-prompt tier), where the model has them; else fast mode is priced as standard. */
  fast?: TokenRates;
  /** US dollars per web search the model ran (`server_tool_use.web_search_requests`). */
  webSearchPerRequest: number;
}

/** What an answer's usage says beyond its four token counts, which the CLI prices too. */
export interface Surcharges {
  /** Of the cache writes, those that live an hour (`cache_creation.ephemeral_1h_input_tokens`). */
  cacheWrite1hTokens: number;
  /** `server_tool_use.web_search_requests`. */
  webSearchRequests: number;
  /** `inference_geo`: `us` (US-only inference) multiplies the tokens' cost. */
  inferenceGeo?: string;
  /** `speed`: anything but `standard` is fast mode, as the CLI reads it. */
  speed?: string;
}

const PRICES = table.prices as Record<string, ModelPrice>;
/** What the CLI charges for a model it has no row for. */
const FALLBACK = PRICES[table.unknownModel]!;
/** The factor on a message's token cost by where it ran (web searches are not multiplied). */
const GEO_MULTIPLIER = table.inferenceGeoMultiplier as Record<string, number>;

/**
 * A model's price: the row of the longest model id the name starts with, once its Bedrock
 * dressing (region prefix, `anthropic.`, `-v1:0`) and its date are taken off; the CLI's
 * fallback for a name it has no row for.
 */
export function priceOf(model: string): ModelPrice {
  const name = canonicalModel(model);
  let best: string | undefined;
  for (const id of Object.keys(PRICES)) {
    if ((name === id || name.startsWith(`${id}-`)) && id.length > (best?.length ?? 0)) best = id;
  }
  return best ? PRICES[best]! : FALLBACK;
}

/** One message's cost at the CLI's prices for its model, with the surcharges its usage shows, as the CLI computes it. */
export function messageCostUsd(
  model: string,
  usage: { inputTokens: number; outputTokens: number; cacheReadInputTokens: number; cacheCreationInputTokens: number },
  surcharges: Partial<Surcharges> = {},
): number {
  const price = priceOf(model);
  const prompt = usage.inputTokens + usage.cacheReadInputTokens + usage.cacheCreationInputTokens;
  const fast = Boolean(surcharges.speed) && surcharges.speed !== 'standard';
  const rates: TokenRates = fast && price.fast ? price.fast
    : price.longPrompt && prompt > price.longPrompt.abovePromptTokens ? price.longPrompt : price;
  const oneHour = Math.min(Math.max(surcharges.cacheWrite1hTokens ?? 0, 0), usage.cacheCreationInputTokens);
  const cacheWrites = rates.cacheWrite1hPerMTok === undefined || oneHour === 0
    ? usage.cacheCreationInputTokens * rates.cacheWritePerMTok
    : oneHour * rates.cacheWrite1hPerMTok + (usage.cacheCreationInputTokens - oneHour) * rates.cacheWritePerMTok;
  const tokens = (usage.inputTokens * rates.inputPerMTok + usage.outputTokens * rates.outputPerMTok
    + cacheWrites + usage.cacheReadInputTokens * rates.cacheReadPerMTok) / 1e6;
  const geo = surcharges.inferenceGeo !== undefined && Object.hasOwn(GEO_MULTIPLIER, surcharges.inferenceGeo) ? GEO_MULTIPLIER[surcharges.inferenceGeo]! : 1;
  return tokens * geo + (surcharges.webSearchRequests ?? 0) * price.webSearchPerRequest;
}

/** `us.anthropic.claude-sonnet-4-5-20250929-v1:0` → `claude-sonnet-4-5`. */
export function canonicalModel(model: string): string {
  return model.toLowerCase()
    .replace(/^arn:.*\//, '')
    .replace(/^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?anthropic\./, '')
    .replace(/-v\d+(?::\d+)?$/, '')
    .replace(/-\d{8}$/, '');
}
