import { marshall, type NativeAttributeValue } from '@aws-sdk/util-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { SessionStart } from '../sessions/execution-input.js';
import { closeValues, forContract, toClosedRecord, type RunOutcome, type SessionRecord } from '../sessions/session-item.js';
import { totalsDelta, type AttemptSpend, type TotalsDelta } from '../sessions/project-totals.js';
import type { NextAttempt } from './attempt-retry.js';

// The record step of a session's run: the runner writes no close itself. It hands the workflow the
// closed record and the values its own writes take (RecordUsage, ReleaseMilestone, RecordAttempt),
// in the shape of the definition's write contract, so the close stays one conditional write.

/** A TotalsDelta as the workflow's transaction takes it. */
export interface MarshalledTotalsDelta {
  update: string;
  names: Record<string, string>;
  values: Record<string, AttributeValue>;
}

export function marshalledDelta(delta: TotalsDelta): MarshalledTotalsDelta {
  return { update: delta.update, names: delta.names, values: marshall(delta.values) };
}

/** What RunClaude returns: the closed record, and the values RecordUsage (and ReleaseMilestone) write. */
export interface TaskResult {
  record: SessionRecord;
  values: Record<string, AttributeValue>;
  /** The close's change to the project's totals: the status move and this attempt's spend (absent from a runner before them). */
  totals?: MarshalledTotalsDelta;
  /** Milestone tasks: the transcript pointer and lease release for ReleaseMilestone. */
  milestoneValues?: Record<string, AttributeValue>;
  /** Present when the workflow should run Claude again (a transient API failure, attempts left). */
  next?: NextAttempt;
}

/**
 * The session's item update for an outcome: the closed record, CLOSE_UPDATE's values as the
 * execution's contract has them, and the project's totals moved by the status and by this attempt's
 * own spend (`own`: the attempts before were counted as they were recorded).
 */
export function recordOf(
  start: SessionStart,
  outcome: RunOutcome,
  own: AttemptSpend,
  contract: number,
  extra: Pick<TaskResult, 'milestoneValues' | 'next'> = {},
): TaskResult {
  return {
    record: toClosedRecord(start, outcome),
    values: marshall(forContract(closeValues(outcome, start.retainUntil ?? null), contract, 'close') as Record<string, NativeAttributeValue>, { removeUndefinedValues: true }),
    totals: marshalledDelta(totalsDelta({ from: 'RUNNING', to: outcome.status, spend: own })),
    ...(extra.milestoneValues ? { milestoneValues: extra.milestoneValues } : {}),
    ...(extra.next ? { next: extra.next } : {}),
  };
}
