import { marshall } from '@aws-sdk/util-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { SessionStart } from '../sessions/execution-input.js';
import type { RunOutcome } from '../sessions/session-item.js';
import { totalsDelta, type AttemptSpend } from '../sessions/project-totals.js';
import { addUsage, addUsageByModel, addUsd, roundUsd } from '../sessions/usage.js';
import { isTransientFailure } from './claude-result.js';
import type { ClaudeRun } from './run-claude.js';
import { marshalledDelta, type MarshalledTotalsDelta } from './task-record.js';

// The retry step of a session's run: a session may take several attempts (a transient API failure
// runs again, on a fresh session), and its budget and spend are for all of them. What the attempts
// before spent rides in the execution's state, never added up in the table.

/** What earlier attempts of one session spent, carried in the execution's state, never added in the table. */
/** What an attempt spent: the figures the totals add (project-totals.ts). */
export type Spent = AttemptSpend;

export interface RetryState {
  attempt: number;
  prior: Spent | null;
}

/** Returned when a transient failure earns another attempt: the workflow waits, records the spend so far, and runs again. */
export interface NextAttempt extends RetryState {
  prior: Spent;
  waitSeconds: number;
  /** RECORD_ATTEMPT_UPDATE's values: the spend so far, on the RUNNING session. */
  values: Record<string, AttributeValue>;
  /** This attempt's spend, for the project's totals in the same write. */
  totals: MarshalledTotalsDelta;
}

/** What this attempt may spend: the session's budget is for all its attempts, and this one has what the ones before left. */
export function budgetLeftUsd(start: Pick<SessionStart, 'maxBudgetUsd'>, retry: RetryState | null | undefined): number | undefined {
  const priorCostUsd = retry?.prior?.totalCostUsd ?? 0;
  return start.maxBudgetUsd === undefined ? undefined : roundUsd(Math.max(0, start.maxBudgetUsd - priorCostUsd));
}

/**
 * Whether a run earns another attempt: a transient failure the model itself answered (a result
 * line can be printed by a command, claiming one), on a fresh session (a milestone's conversation
 * has moved on, and is not replayed), while the budget has something left and attempts remain.
 */
export function earnsAnotherAttempt(
  run: ClaudeRun,
  policy: { attempt: number; runAttempts?: number; budgetLeftUsd: number | undefined; milestone: boolean },
): boolean {
  return run.kind === 'result' && !policy.milestone && isTransientFailure(run.result)
    && (run.metered.upstreamStatuses ?? []).includes(Number(run.result.api_error_status))
    && (policy.budgetLeftUsd === undefined || run.metered.totalCostUsd < policy.budgetLeftUsd)
    && policy.attempt < (policy.runAttempts ?? 1);
}

/** The next attempt, from the start: after a wait that doubles each time, with the spend so far recorded on the RUNNING session. */
export function nextAttempt(start: Pick<SessionStart, 'retryBaseSeconds'>, attempt: number, spent: Spent, own: AttemptSpend): NextAttempt {
  return {
    attempt: attempt + 1,
    prior: spent,
    waitSeconds: Math.round((start.retryBaseSeconds ?? 15) * 2 ** (attempt - 1)),
    values: marshall({
      ':running': 'RUNNING', ':usage': spent.usage, ':modelUsage': spent.modelUsage, ':numTurns': spent.numTurns,
      ':totalCostUsd': spent.totalCostUsd, ':durationMs': spent.durationMs, ':attempts': attempt,
    }),
    totals: marshalledDelta(totalsDelta({ spend: own })),
  };
}

/** One attempt's spend, as the project's totals count it (the earlier attempts were counted as they were recorded). */
export function spendOf(outcome: RunOutcome): AttemptSpend {
  const { usage, modelUsage, numTurns, totalCostUsd, durationMs } = outcome;
  return { usage, modelUsage, numTurns, totalCostUsd, durationMs };
}

/** The session's spend so far: this attempt's plus what the state carried from the ones before. */
export function addSpent(prior: Spent | null, outcome: RunOutcome): Spent {
  if (!prior) return spendOf(outcome);
  return {
    usage: addUsage(prior.usage, outcome.usage),
    modelUsage: addUsageByModel(prior.modelUsage, outcome.modelUsage),
    numTurns: prior.numTurns + outcome.numTurns,
    totalCostUsd: addUsd(prior.totalCostUsd, outcome.totalCostUsd),
    durationMs: prior.durationMs + outcome.durationMs,
  };
}

/** An attempt's outcome as the session keeps it: every attempt's spend, and how many there were. */
export function withEarlierAttempts(outcome: RunOutcome, retry: RetryState | null | undefined): RunOutcome {
  return { ...outcome, ...addSpent(retry?.prior ?? null, outcome), attempts: retry?.attempt ?? 1 };
}
