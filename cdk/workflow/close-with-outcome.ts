import { Choice, Fail, Pass } from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { CLOSE_CONDITION, CLOSE_NAMES, CLOSE_UPDATE } from '../../lib/sessions/session-item.js';
import { completed, isLimited, isMilestoneTask, sessionKey } from './execution-state.js';
import { RELEASE_MILESTONE_AFTER_RUN } from './milestone-lease.js';
import { RELEASE_SLOT } from './project-slot.js';
import type { CatchPolicy, TaskState } from './error-handling.js';
import type { TransactSpec, TransactState, WriteState } from './update-item-state.js';

/**
 * The runner's outcome (marshalled at $.run.values), written once, only on a RUNNING session, and
 * in the same transaction the status move and the last attempt's spend on the project's totals
 * ($.run.totals, marshalled by the runner).
 */
const RECORD_USAGE: TransactSpec = {
  session: { key: sessionKey, update: CLOSE_UPDATE, condition: CLOSE_CONDITION, names: CLOSE_NAMES, values: '$.run.values' },
  totals: '$.run.totals',
};

/** The four states that close a session with its run's outcome: ClaudeSucceeded picks one. */
export interface OutcomeClose {
  /** A completed session: ends the execution with the session record. */
  readonly recordUsage: TaskState;
  /** A Claude-level failure: its usage recorded, then the run's own error ends the execution. */
  readonly recordFailedRun: TaskState;
  /** A completed limited session: the close, then its slot freed, ending there. */
  readonly recordLimitedUsage: TaskState;
  /** A milestone task, or a limited session that did not complete: the close, then each release. */
  readonly recordUsageBeforeRelease: TaskState;
}

/**
 * One write in four states, so the Choice comes before the write and each route ends as soon as
 * it can: a completed session on RecordUsage (five states in all), a completed limited one on its
 * slot's release (four states fewer than the release path).
 */
export function closeWithOutcome(scope: Construct, write: WriteState, transact: TransactState, step: CatchPolicy): OutcomeClose {
  const claudeFailed = new Fail(scope, 'ClaudeFailed', { errorPath: '$.run.record.error', causePath: '$.run.record.cause' });
  const recordFailedRun = transact('RecordFailedRun', RECORD_USAGE, step);
  recordFailedRun.next(claudeFailed);

  const recordLimitedUsage = transact('RecordLimitedUsage', RECORD_USAGE, step);
  recordLimitedUsage.next(write('ReleaseSlotAndEnd', { ...RELEASE_SLOT, endWith: '$.run.record' }, step));

  // The session is closed first; then the milestone's lease, then the project's slot, each if held.
  const succeeded = new Choice(scope, 'ClaudeSucceededAfterRelease')
    .when(completed, new Pass(scope, 'CompletedAfterRelease', { outputPath: '$.run.record' }))
    .otherwise(claudeFailed);
  const releaseSlot = write('ReleaseSlot', RELEASE_SLOT, step);
  releaseSlot.next(succeeded);
  const holdsSlot = new Choice(scope, 'HoldsSlot').when(isLimited, releaseSlot).otherwise(succeeded);
  const releaseMilestone = write('ReleaseMilestone', RELEASE_MILESTONE_AFTER_RUN, step);
  releaseMilestone.next(holdsSlot);
  const recordUsageBeforeRelease = transact('RecordUsageBeforeRelease', RECORD_USAGE, step);
  recordUsageBeforeRelease.next(new Choice(scope, 'HoldsMilestone').when(isMilestoneTask, releaseMilestone).otherwise(holdsSlot));

  return {
    recordUsage: transact('RecordUsage', { ...RECORD_USAGE, endWith: '$.run.record' }, step),
    recordFailedRun,
    recordLimitedUsage,
    recordUsageBeforeRelease,
  };
}
