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
}

export interface ModelPrice extends TokenRates {
  /** Where a message's prompt (input, cache reads and writes together) is over the threshold, all four rates are these. */
  longPrompt?: TokenRates & { abovePromptTokens: number };
}

const PRICES = table.prices as Record<string, ModelPrice>;
/** What the CLI charges for a model it has no row for. */
const FALLBACK = PRICES[table.unknownModel]!;

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

/** One message's cost at the CLI's prices for its model. */
export function messageCostUsd(model: string, usage: { inputTokens: number; outputTokens: number; cacheReadInputTokens: number; cacheCreationInputTokens: number }): number {
  const price = priceOf(model);
  const prompt = usage.inputTokens + usage.cacheReadInputTokens + usage.cacheCreationInputTokens;
  const rates: TokenRates = price.longPrompt && prompt > price.longPrompt.abovePromptTokens ? price.longPrompt : price;
  return (usage.inputTokens * rates.inputPerMTok + usage.outputTokens * rates.outputPerMTok
    + usage.cacheCreationInputTokens * rates.cacheWritePerMTok + usage.cacheReadInputTokens * rates.cacheReadPerMTok) / 1e6;
}

/** `us.anthropic.claude-sonnet-4-5-20250929-v1:0` → `claude-sonnet-4-5`. */
export function canonicalModel(model: string): string {
  return model.toLowerCase()
    .replace(/^arn:.*\//, '')
    .replace(/^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?anthropic\./, '')
    .replace(/-v\d+(?::\d+)?$/, '')
    .replace(/-\d{8}$/, '');
}
