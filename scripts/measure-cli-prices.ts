import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AnthropicStandIn, type StandInUsage } from '../lib/local/anthropic-stand-in.js';
import { runClaude } from '../lib/claude/run-claude.js';
import { PROJECT_ROOT } from '../lib/project-root.js';

// Measures the pinned Claude CLI's own price for each model it knows, so the runner can price
// the tokens its gateway metered as the CLI would (lib/claude/model-prices.ts). Each model is run
// against the stand-in with 10,000 tokens of one kind at a time (the CLI's cost is that rate), and
// with a million input tokens, to find a long-prompt tier and its threshold; then the CLI's
// surcharges, from answers that carry them: 1-hour cache writes (`cache_creation`), web searches
// (`server_tool_use`), US-only inference (`inference_geo: "us"`) and fast mode (`speed: "fast"`).
// Run after upgrading the CLI: `npx tsx scripts/measure-cli-prices.ts` (test/model-prices.test.ts
// fails while the table and the pinned CLI differ; the whole table takes about half an hour on a
// loaded machine). Given model names, it measures only those and keeps the table's other rows.

const MODELS = [
  'claude-opus-5-5', 'claude-opus-5', 'claude-opus-4-8', 'claude-opus-4-7', 'claude-opus-4-6', 'claude-opus-4-5', 'claude-opus-4-1', 'claude-opus-4-0', 'claude-opus-4',
  'claude-sonnet-5-5', 'claude-sonnet-5', 'claude-sonnet-4-6', 'claude-sonnet-4-5', 'claude-sonnet-4-0', 'claude-sonnet-4', 'claude-3-7-sonnet', 'claude-3-5-sonnet',
  'claude-haiku-5-5', 'claude-haiku-4-5', 'claude-3-5-haiku',
  'claude-fable-5-2', 'claude-fable-5-1', 'claude-fable-5', 'claude-mythos-5-2', 'claude-mythos-5-1', 'claude-mythos-5',
];
/** A name the CLI has no row for: its price is the CLI's fallback. */
export const UNKNOWN_MODEL = 'claude-unlisted-model';

const BASE = 10_000;
const KINDS = {
  inputPerMTok: 'input_tokens',
  outputPerMTok: 'output_tokens',
  cacheWritePerMTok: 'cache_creation_input_tokens',
  cacheReadPerMTok: 'cache_read_input_tokens',
} as const;
type Rates = Record<keyof typeof KINDS, number>;
type Row = Rates & {
  cacheWrite1hPerMTok?: number;
  webSearchPerRequest: number;
  longPrompt?: Rates & { abovePromptTokens: number; cacheWrite1hPerMTok?: number };
  fast?: Rates & { cacheWrite1hPerMTok?: number };
};

const NONE: StandInUsage = { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
/** BASE cache writes, all of them living an hour. */
const ONE_HOUR_WRITES: Partial<StandInUsage> = { cache_creation_input_tokens: BASE, cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: BASE } };
const SEARCHES = 100;

async function main(): Promise<void> {
  const standIn = await new AnthropicStandIn().start();
  const out = join(PROJECT_ROOT, 'lib', 'claude', 'model-prices.json');
  const only = process.argv.slice(2);
  const table: Record<string, Row> = only.length ? (JSON.parse(await readFile(out, 'utf8')) as { prices: Record<string, Row> }).prices : {};
  const geoMultipliers = new Set<number>();
  /** The CLI's cost of one reply of `usage` from `model`, and the id it asked for. */
  const cost = async (model: string, usage: Partial<StandInUsage>, tries = 3): Promise<{ usd: number; asked: string }> => {
    try {
      return await costOnce(model, usage);
    } catch (err) {
      if (tries <= 1) throw err;
      process.stderr.write(`${model}: ${(err as Error).message}; again\n`);
      return cost(model, usage, tries - 1);
    }
  };
  const costOnce = async (model: string, usage: Partial<StandInUsage>): Promise<{ usd: number; asked: string }> => {
    standIn.reset();
    standIn.respondByDefault({ kind: 'text', usage: { ...NONE, ...usage } });
    const run = await runClaude({
      sessionId: randomUUID(), conversation: 'fresh', model, prompt: 'price',
      endpoint: { apiKey: 'sk-ant-measure', baseUrl: standIn.url }, timeoutMs: 60_000, idleTimeoutMs: 60_000, maxRetries: 0,
    });
    if (run.kind !== 'result') throw new Error(`${model}: the CLI ended ${run.kind}${run.kind === 'crashed' ? ` (${run.error.message})` : ''}`);
    const asked = standIn.messageRequests[0]?.model;
    if (!asked) throw new Error(`${model}: the CLI made no model call`);
    return { usd: run.result.total_cost_usd, asked };
  };
  const perMTok = (usd: number, tokens: number) => Math.round((usd / tokens) * 1e6 * 1e6) / 1e6;
  try {
    for (const model of only.length ? only : [...MODELS, UNKNOWN_MODEL]) {
      // Few enough tokens to stay under any long-prompt threshold.
      const rates = {} as Rates;
      let asked = '';
      for (const [kind, field] of Object.entries(KINDS) as [keyof Rates, string][]) {
        const measured = await cost(model, { [field]: BASE });
        rates[kind] = perMTok(measured.usd, BASE);
        asked = measured.asked;
      }
      const row: Row = { ...rates, webSearchPerRequest: 0 };
      // A 1-hour cache write has its own rate where the CLI's row has one (else the 5-minute rate).
      const oneHour = perMTok((await cost(model, ONE_HOUR_WRITES)).usd, BASE);
      if (oneHour !== rates.cacheWritePerMTok) row.cacheWrite1hPerMTok = oneHour;
      row.webSearchPerRequest = Math.round(((await cost(model, { server_tool_use: { web_search_requests: SEARCHES, web_fetch_requests: 0 } })).usd / SEARCHES) * 1e9) / 1e9;
      // US-only inference multiplies the tokens' cost (one factor for every model, checked below).
      const plain = (await cost(model, { input_tokens: BASE })).usd;
      geoMultipliers.add(Math.round(((await cost(model, { input_tokens: BASE, inference_geo: 'us' })).usd / plain) * 1e6) / 1e6);
      // Fast mode: the model's fast row, where it has one (else the CLI prices it as standard).
      if (perMTok((await cost(model, { input_tokens: BASE, speed: 'fast' })).usd, BASE) !== rates.inputPerMTok) {
        const fast = {} as NonNullable<Row['fast']>;
        for (const [kind, field] of Object.entries(KINDS) as [keyof Rates, string][]) {
          fast[kind] = perMTok((await cost(model, { [field]: BASE, speed: 'fast' })).usd, BASE);
        }
        const fastOneHour = perMTok((await cost(model, { ...ONE_HOUR_WRITES, speed: 'fast' })).usd, BASE);
        if (fastOneHour !== fast.cacheWritePerMTok) fast.cacheWrite1hPerMTok = fastOneHour;
        row.fast = fast;
      }
      // A long-prompt tier: a million input tokens priced otherwise. Its threshold (input and cache
      // tokens together, as the CLI counts them), found by bisection, then the tier's four rates.
      if (perMTok((await cost(model, { input_tokens: 1_000_000 })).usd, 1_000_000) !== rates.inputPerMTok) {
        const longAt = async (tokens: number) => perMTok((await cost(model, { input_tokens: tokens })).usd, tokens) !== rates.inputPerMTok;
        let below = BASE;
        let above = 1_000_000;
        // The thresholds the CLI's models have had, tried first: a bisection takes twenty runs.
        for (const known of [100_000, 200_000]) {
          if (!(await longAt(known)) && (await longAt(known + 1))) [below, above] = [known, known + 1];
        }
        while (above - below > 1) {
          const mid = Math.floor((below + above) / 2);
          if (await longAt(mid)) above = mid;
          else below = mid;
        }
        const over = above;
        const inputUsd = (await cost(model, { input_tokens: over })).usd;
        const long = { abovePromptTokens: below, inputPerMTok: perMTok(inputUsd, over) } as NonNullable<Row['longPrompt']>;
        for (const [kind, field] of Object.entries(KINDS) as [keyof Rates, string][]) {
          if (kind === 'inputPerMTok') continue;
          long[kind] = perMTok((await cost(model, { input_tokens: over, [field]: BASE })).usd - inputUsd, BASE);
        }
        const longOneHour = perMTok((await cost(model, { input_tokens: over, ...ONE_HOUR_WRITES })).usd - inputUsd, BASE);
        if (longOneHour !== long.cacheWritePerMTok) long.cacheWrite1hPerMTok = longOneHour;
        row.longPrompt = long;
      }
      // The CLI may ask for another id than it was given (an alias): the table is keyed by what it asks.
      const earlier = only.length ? undefined : table[asked];
      if (earlier && JSON.stringify(earlier) !== JSON.stringify(row)) throw new Error(`${model} asks ${asked}, priced otherwise than before`);
      table[asked] = row;
      process.stderr.write(`${model} (asks ${asked}): ${JSON.stringify(row)}\n`);
    }
  } finally {
    await standIn.close();
  }
  if (geoMultipliers.size !== 1) throw new Error(`US-only inference is priced by more than one factor: ${[...geoMultipliers].join(', ')}`);
  const { version } = (await import('@anthropic-ai/claude-code/package.json', { with: { type: 'json' } })).default as { version: string };
  const inferenceGeoMultiplier = { us: [...geoMultipliers][0]! };
  await writeFile(out, `${JSON.stringify({ cliVersion: version, measuredBy: 'scripts/measure-cli-prices.ts', unknownModel: UNKNOWN_MODEL, inferenceGeoMultiplier, prices: table }, null, 2)}\n`);
  process.stderr.write(`wrote ${out}\n`);
}

await main();
