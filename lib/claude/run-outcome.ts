import { RESULT_MAX_CHARS, type RunOutcome } from '../sessions/session-item.js';
import { addUsageByModel, type UsageByModel } from '../sessions/usage.js';
import { claudeFailure } from './claude-result.js';
import type { BedrockEndpoint, ClaudeEndpoint } from './claude-process.js';
import { SessionIdMismatchError } from './errors.js';
import { stoppedFailure, type StoppedStatus } from './execution-watch.js';
import type { ClaudeRun } from './run-claude.js';
import type { MeteredUsage } from './usage-meter.js';

// The outcome step of a session's run: what one attempt came to, as the session records it. A
// Claude-level failure (an error result, a crash, a watchdog, the budget) is an outcome with its
// cause and the spend its gateway metered, not a throw; kept apart from running the CLI so each
// case can be read, and tested, from a run's facts alone.

/** What the outcome is read against besides the run itself. */
export interface OutcomeContext {
  /** The conversation the CLI had to run: the session's id, or its milestone's. */
  claudeSessionId: string;
  /** The session's budget, for a run its gateway refused calls over. */
  maxBudgetUsd?: number;
  endedAt: Date;
  /** How the execution ended, for a run stopped because it did. @default 'ABORTED' */
  executionEnded?: StoppedStatus;
}

/**
 * One attempt's outcome: COMPLETED, FAILED (Claude's error, a crash, over budget), TIMED_OUT (a
 * watchdog) or, for a run stopped because its execution ended, how it ended. Its spend is what
 * the attempt's gateway metered, not what the CLI printed (a Bash command can print a result line
 * of its own). Throws SessionIdMismatchError when the CLI ran another conversation.
 */
export function outcomeOf(run: ClaudeRun, endpoint: ClaudeEndpoint, context: OutcomeContext): RunOutcome {
  const { claudeSessionId, endedAt } = context;
  const served = { provider: endpoint.provider ?? 'anthropic', model: endpoint.model ?? null };
  // On Bedrock the model that answered names itself, not the profile id or ARN asked for: its
  // usage is put under the ids the deployment configured.
  const metered = endpoint.provider === 'bedrock' ? { ...run.metered, modelUsage: underConfiguredModels(run.metered.modelUsage, endpoint) } : run.metered;
  if (run.kind === 'stopped') {
    const status = context.executionEnded ?? 'ABORTED';
    const { error, cause } = stoppedFailure(status, Math.round(run.wallMs / 1000));
    return unfinishedOutcome(claudeSessionId, run, metered, served, endedAt, status, error, cause);
  }
  if (run.kind === 'crashed') {
    // Tokens streamed before a crash were spent: record them on a FAILED session.
    return unfinishedOutcome(claudeSessionId, run, metered, served, endedAt, 'FAILED', run.error.name, run.error.message.slice(0, RESULT_MAX_CHARS));
  }
  if (run.kind === 'timeout') {
    const seconds = Math.round(run.limitMs / 1000);
    const cause = run.reason === 'wall-clock'
      ? `the Claude CLI ran past its ${seconds} s limit and was stopped`
      : `the Claude CLI printed nothing for ${seconds} s and was stopped`;
    return unfinishedOutcome(claudeSessionId, run, metered, served, endedAt, 'TIMED_OUT', 'ClaudeTimeoutError', cause);
  }
  const { result } = run;
  // The one invariant: the conversation Claude ran is the session we track.
  if (result.session_id !== claudeSessionId) throw new SessionIdMismatchError(claudeSessionId, result.session_id);
  const failure = overBudget(claudeFailure(result), run.metered, context.maxBudgetUsd);
  return {
    status: failure ? 'FAILED' : 'COMPLETED',
    endedAt: endedAt.toISOString(),
    claudeSessionId: result.session_id,
    usage: metered.usage,
    numTurns: result.num_turns,
    totalCostUsd: metered.totalCostUsd,
    durationMs: result.duration_ms || run.wallMs,
    modelUsage: metered.modelUsage,
    ...served,
    stopReason: result.stop_reason ?? null,
    result: result.result?.slice(0, RESULT_MAX_CHARS) ?? null,
    error: failure?.error ?? null,
    cause: failure?.cause.slice(0, RESULT_MAX_CHARS) ?? null,
    attempts: 1,
  };
}

/** A run whose CLI failed after its gateway refused calls over the budget failed on its budget, whatever the CLI made of the refusal. */
function overBudget(failure: ReturnType<typeof claudeFailure>, metered: MeteredUsage, budgetUsd: number | undefined): ReturnType<typeof claudeFailure> {
  if (!failure || !metered.refusedOverBudget) return failure;
  return { error: 'ClaudeMaxBudget', cause: `the session spent $${metered.totalCostUsd} of its $${budgetUsd} budget; the model gateway refused ${metered.refusedOverBudget} model call(s) after that` };
}

function underConfiguredModels(byModel: UsageByModel, endpoint: BedrockEndpoint): UsageByModel {
  const configured = [endpoint.model, endpoint.smallFastModel].filter((m): m is string => Boolean(m));
  const small = endpoint.smallFastModel;
  return Object.entries(byModel).reduce<UsageByModel>((sum, [model, usage]) => {
    const id = configured.includes(model) ? model : small && /haiku/i.test(model) && !/haiku/i.test(endpoint.model) ? small : endpoint.model;
    return addUsageByModel(sum, { [id]: usage });
  }, {});
}

/** The outcome of a run that ended without the CLI's result: what the gateway metered until then. */
function unfinishedOutcome(
  claudeSessionId: string,
  run: { numTurns: number; wallMs: number },
  metered: Pick<MeteredUsage, 'usage' | 'modelUsage' | 'totalCostUsd'>,
  served: Pick<RunOutcome, 'provider' | 'model'>,
  endedAt: Date,
  status: 'FAILED' | 'TIMED_OUT' | 'ABORTED',
  error: string,
  cause: string,
): RunOutcome {
  return {
    status,
    endedAt: endedAt.toISOString(),
    claudeSessionId,
    usage: metered.usage,
    numTurns: run.numTurns,
    totalCostUsd: metered.totalCostUsd,
    durationMs: run.wallMs,
    modelUsage: metered.modelUsage,
    ...served,
    stopReason: null,
    result: null,
    error,
    cause,
    attempts: 1,
  };
}
