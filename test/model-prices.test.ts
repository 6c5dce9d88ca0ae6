import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStandIn, type StandInUsage } from '../lib/local/anthropic-stand-in.js';
import { runClaude } from '../lib/claude/run-claude.js';
import { canonicalModel, priceOf } from '../lib/claude/model-prices.js';
import table from '../lib/claude/model-prices.json' with { type: 'json' };

// The runner prices what its gateway metered with the pinned CLI's own prices (model-prices.json,
// measured by scripts/measure-cli-prices.ts). These runs of the real CLI fail when it prices
// otherwise: after an upgrade, measure again.

let standIn: AnthropicStandIn;
beforeAll(async () => {
  standIn = await new AnthropicStandIn().start();
});
afterAll(() => standIn.close());

// Under every long-prompt threshold the CLI has (input, cache reads and writes together).
const USAGE = { input_tokens: 12_345, output_tokens: 7_890, cache_creation_input_tokens: 4_567, cache_read_input_tokens: 9_012 };

/** The CLI's cost of one reply of USAGE from `model`, and the run's metered cost of it. */
async function priced(model: string | undefined, provider: 'anthropic' | 'bedrock' = 'anthropic', usage: StandInUsage = USAGE) {
  standIn.reset();
  standIn.respondByDefault({ kind: 'text', usage });
  const endpoint = provider === 'bedrock' ? standIn.bedrockEndpoint(model) : { apiKey: 'sk-ant-prices', baseUrl: standIn.url };
  const run = await runClaude({
    sessionId: randomUUID(), conversation: 'fresh', model: provider === 'bedrock' ? undefined : model, prompt: 'price it', endpoint,
    timeoutMs: 60_000, idleTimeoutMs: 60_000, maxRetries: 0,
  });
  if (run.kind !== 'result') throw new Error(`the CLI ended ${run.kind}`);
  const asked = standIn.messageRequests[0]!.model!;
  return { asked, cli: run.result.total_cost_usd, metered: run.metered };
}

describe('the prices a run\'s metered usage is charged at', () => {
  it('were measured from the pinned CLI', async () => {
    const { version } = (await import('@anthropic-ai/claude-code/package.json', { with: { type: 'json' } })).default as { version: string };
    expect(table.cliVersion).toBe(version);
  });

  it('are the CLI\'s own for its default model', async () => {
    const { cli, metered } = await priced(undefined);
    expect(metered.totalCostUsd).toBeCloseTo(cli, 6);
  });

  // Every row, on every kind of token, under its long-prompt threshold and (where it has one) over it.
  const PRICES = table.prices as Record<string, { longPrompt?: { abovePromptTokens: number } }>;
  const cases = Object.entries(PRICES).flatMap(([model, row]) => [
    { model, usage: USAGE },
    ...(row.longPrompt ? [{ model, usage: { ...USAGE, input_tokens: row.longPrompt.abovePromptTokens + 1 } }] : []),
  ]);
  it.each(cases)('are the CLI\'s own for $model, prompt of $usage.input_tokens input tokens', async ({ model, usage }) => {
    const { asked, cli, metered } = await priced(model, 'anthropic', usage);
    expect(asked).toBe(model);
    expect(metered.totalCostUsd).toBeCloseTo(cli, 6);
  });

  // The CLI's surcharges, as an answer's usage shows them: of the 4,567 cache writes 3,000 live an
  // hour, the model ran 3 web searches (and 2 web fetches, priced as their tokens), in the US only;
  // and the same in fast mode (a model with no fast rates is priced as standard, as the CLI does).
  const SURCHARGED: StandInUsage = {
    ...USAGE,
    cache_creation: { ephemeral_5m_input_tokens: 1_567, ephemeral_1h_input_tokens: 3_000 },
    server_tool_use: { web_search_requests: 3, web_fetch_requests: 2 },
    inference_geo: 'us',
  };
  const surcharged = Object.entries(PRICES).flatMap(([model, row]) => [
    { model, mode: 'standard', usage: SURCHARGED },
    { model, mode: 'fast', usage: { ...SURCHARGED, speed: 'fast' } },
    ...(row.longPrompt ? [{ model, mode: 'long prompt', usage: { ...SURCHARGED, input_tokens: row.longPrompt.abovePromptTokens + 1 } }] : []),
  ]);
  it.each(surcharged)('are the CLI\'s own for $model with 1-hour cache writes, web searches and US-only inference, $mode', async ({ model, usage }) => {
    const { cli, metered } = await priced(model, 'anthropic', usage);
    expect(metered.totalCostUsd).toBeCloseTo(cli, 6);
  });

  it('are the CLI\'s own on Bedrock, where the model is named by its profile id', async () => {
    const { cli, metered } = await priced('us.anthropic.claude-sonnet-4-5-20250929-v1:0', 'bedrock');
    // A model-access probe (8 in, 1 out), where the CLI made one, is billed too: the CLI's result leaves it out.
    const probes = standIn.requests.filter((r) => r.call === 'probe').length;
    expect(metered.totalCostUsd).toBeCloseTo(cli + probes * (8 * 3 + 1 * 15) / 1e6, 6);
  });

  it('name a model by what it is, however a provider dresses it', () => {
    expect(canonicalModel('us.anthropic.claude-sonnet-4-5-20250929-v1:0')).toBe('claude-sonnet-4-5');
    expect(canonicalModel('claude-opus-4-20250514')).toBe('claude-opus-4');
    expect(canonicalModel('arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc')).toBe('abc');
    expect(priceOf('claude-sonnet-4-5-20250929')).toEqual(table.prices['claude-sonnet-4-5']);
    expect(priceOf('claude-sonnet-4-20250514')).toEqual(table.prices['claude-sonnet-4']);
    expect(priceOf('claude-opus-4-20250514')).not.toEqual(priceOf('claude-opus-4-5-20251101'));
    expect(priceOf('a-model-nobody-priced')).toEqual(table.prices[table.unknownModel as keyof typeof table.prices]);
  });
});
