import table from './model-prices.json' with { type: 'json' };

// The pinned CLI's own prices, measured from it (scripts/measure-cli-prices.ts writes
// model-prices.json; test/model-prices.test.ts fails when the pinned CLI prices otherwise).
// The runner prices the tokens its gateway metered with them, so a session's cost is what the
// CLI would have said without the session being able to say it.

/** US dollars per million tokens of each kind. */
export interface ModelPrice {
  inputPerMTok: number;
  outputPerMTok: number;
  cacheWritePerMTok: number;
  cacheReadPerMTok: number;
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

/** `us.anthropic.claude-sonnet-4-5-20250929-v1:0` → `claude-sonnet-4-5`. */
export function canonicalModel(model: string): string {
  return model.toLowerCase()
    .replace(/^arn:.*\//, '')
    .replace(/^(?:[a-z]{2,6}\.)?anthropic\./, '')
    .replace(/-v\d+(?::\d+)?$/, '')
    .replace(/-\d{8}$/, '');
}
