import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { runClaude } from '../lib/claude/run-claude.js';
import { PROJECT_ROOT } from '../lib/project-root.js';

// Measures the pinned Claude CLI's own price for each model it knows, so the runner can price
// the tokens its gateway metered as the CLI would (lib/claude/model-prices.ts). Each model is run
// four times against the stand-in, with a million tokens of one kind: the CLI's cost is that rate.
// Run after upgrading the CLI: `npx tsx scripts/measure-cli-prices.ts` (test/model-prices.test.ts
// fails while the table and the pinned CLI differ).

const MODELS = [
  'claude-opus-5-5', 'claude-opus-5', 'claude-opus-4-8', 'claude-opus-4-7', 'claude-opus-4-6', 'claude-opus-4-5', 'claude-opus-4-1', 'claude-opus-4',
  'claude-sonnet-5-5', 'claude-sonnet-5', 'claude-sonnet-4-6', 'claude-sonnet-4-5', 'claude-sonnet-4', 'claude-3-7-sonnet',
  'claude-haiku-5-5', 'claude-haiku-4-5', 'claude-3-5-haiku',
  'claude-fable-5-2', 'claude-fable-5-1', 'claude-fable-5', 'claude-mythos-5-2', 'claude-mythos-5-1', 'claude-mythos-5',
];
/** A name the CLI has no row for: its price is the CLI's fallback. */
export const UNKNOWN_MODEL = 'claude-unlisted-model';

const KINDS = {
  inputPerMTok: { input_tokens: 1_000_000 },
  outputPerMTok: { output_tokens: 1_000_000 },
  cacheWritePerMTok: { cache_creation_input_tokens: 1_000_000 },
  cacheReadPerMTok: { cache_read_input_tokens: 1_000_000 },
} as const;

const NONE = { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };

async function main(): Promise<void> {
  const standIn = await new AnthropicStandIn().start();
  const table: Record<string, Record<string, number>> = {};
  try {
    for (const model of [...MODELS, UNKNOWN_MODEL]) {
      const row: Record<string, number> = {};
      let asked: string | undefined;
      for (const [kind, usage] of Object.entries(KINDS)) {
        standIn.reset();
        standIn.respondByDefault({ kind: 'text', usage: { ...NONE, ...usage } });
        const run = await runClaude({
          sessionId: randomUUID(), conversation: 'fresh', model, prompt: 'price',
          endpoint: { apiKey: 'sk-ant-measure', baseUrl: standIn.url }, timeoutMs: 60_000, idleTimeoutMs: 60_000, maxRetries: 0,
        });
        if (run.kind !== 'result') throw new Error(`${model}: the CLI ended ${run.kind}`);
        row[kind] = Math.round(run.result.total_cost_usd * 1e6) / 1e6;
        asked = standIn.messageRequests[0]?.model;
      }
      // The CLI may ask for another id than it was given (an alias): the table is keyed by what it asks.
      if (!asked) throw new Error(`${model}: the CLI made no model call`);
      table[asked] = row;
      process.stderr.write(`${model} (asks ${asked}): ${JSON.stringify(row)}\n`);
    }
  } finally {
    await standIn.close();
  }
  const { version } = (await import('@anthropic-ai/claude-code/package.json', { with: { type: 'json' } })).default as { version: string };
  const out = join(PROJECT_ROOT, 'lib', 'claude', 'model-prices.json');
  await writeFile(out, `${JSON.stringify({ cliVersion: version, measuredBy: 'scripts/measure-cli-prices.ts', unknownModel: UNKNOWN_MODEL, prices: table }, null, 2)}\n`);
  process.stderr.write(`wrote ${out}\n`);
}

await main();
