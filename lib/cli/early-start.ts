import type { ClaudeEndpoint } from '../claude/claude-process.js';
import { standbyForSession, type StandbyClaude } from '../claude/claude-process.js';
import type { AnthropicStandIn } from '../local/anthropic-stand-in.js';
import { localClaudeEndpoint, localProvider } from '../local/local-endpoint.js';
import { defaultTimeoutSeconds } from '../sessions/session-limits.js';
import { parseRunFlags, runInput, type RunFlags } from './run-flags.js';

/** What `run` settles before the runtime loads: the session id, Claude's endpoint, and the CLI started ahead. */
export interface EarlyStart {
  sessionId: string;
  endpoint: ClaudeEndpoint;
  /** Started here when the environment names no endpoint (lib/local/local-endpoint.ts); the command closes it. */
  standIn?: AnthropicStandIn;
  /** A fresh session's CLI, booting while the rest loads; the command hands it on or stops it. */
  standby?: StandbyClaude;
}

/**
 * The first thing `claude-sessions run` does, before zod, the SDK or the state machine
 * load (bin/claude-sessions.js imports this alone first): Claude's CLI takes most of a
 * second to start, and starts now. Nothing here is trusted: the command checks the input
 * with the schema, and a standby started from flags it refuses is stopped unused.
 */
export async function startEarly(argv: string[], env: NodeJS.ProcessEnv): Promise<EarlyStart | undefined> {
  const [command, ...args] = argv;
  if (command !== 'run') return undefined;
  let parsed: ReturnType<typeof parseRunFlags>;
  try {
    parsed = parseRunFlags(args);
  } catch {
    return undefined; // the command says what is wrong with the flags
  }
  try {
    localProvider(parsed.values.provider, env);
  } catch {
    return undefined; // likewise: the command names the bad provider
  }
  return startRun(parsed.positionals[0], parsed.values, env);
}

/** The same, from parsed flags (the command calls it itself when the bin did not). */
export async function startRun(prompt: string | undefined, values: RunFlags, env: NodeJS.ProcessEnv): Promise<EarlyStart> {
  const input = runInput(prompt, values);
  const sessionId = String(input.sessionId);
  const { endpoint, standIn } = await localClaudeEndpoint(env, localProvider(values.provider, env));
  const number = (v: unknown) => (typeof v === 'number' ? v : undefined);
  // A workspace session's CLI starts in its clone, which does not exist yet.
  const fresh = (input.mode ?? 'fresh') === 'fresh' && (input.runtime ?? 'lambda') === 'lambda' && !input.workspace && !input.tools;
  const numeric = [input.maxTurns, input.maxBudgetUsd, input.timeoutSeconds].every((v) => v === undefined || typeof v === 'number');
  let standby: StandbyClaude | undefined;
  if (fresh && numeric) {
    standby = await standbyForSession(
      {
        sessionId, mode: 'fresh', maxTurns: number(input.maxTurns), maxBudgetUsd: number(input.maxBudgetUsd),
        timeoutSeconds: number(input.timeoutSeconds) ?? defaultTimeoutSeconds('lambda'),
      },
      { endpoint },
    ).catch(() => undefined); // only a speed-up: the runner starts its own
  }
  return { sessionId, endpoint, standIn, standby };
}
