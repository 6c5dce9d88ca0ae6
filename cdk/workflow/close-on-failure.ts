import { Choice, Condition, Fail, type IChainable } from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { CLOSE_FAILED_NAMES, CLOSE_FAILED_UPDATE, RUNNING_CONDITION } from '../../lib/sessions/session-item.js';
import { isLimited, isMilestoneTask, sessionKey } from './execution-state.js';
import { MARK_MILESTONE_BROKEN, RELEASE_MILESTONE } from './milestone-lease.js';
import { RELEASE_SLOT } from './project-slot.js';
import { CatchPolicy } from './error-handling.js';
import type { TransactState, WriteState } from './update-item-state.js';
import { totalsDelta } from '../../lib/sessions/project-totals.js';
import { marshall } from '@aws-sdk/util-dynamodb';

/**
 * The finally branch, entered with the error at $.failure: CloseFailed closes the session FAILED,
 * then the milestone's lease and the project's slot are freed, each if held. Every step goes on
 * whatever it meets (a close that finds the session already final, a release that cannot write),
 * and RunFailed keeps the original error as the execution's. Returns CloseFailed.
 */
export function closeOnFailure(scope: Construct, write: WriteState, transact: TransactState): IChainable {
  const runFailed = new Fail(scope, 'RunFailed', { errorPath: '$.failure.Error', causePath: '$.failure.Cause' });
  const slotHeld = new Choice(scope, 'SlotHeld');
  const milestoneHeld = new Choice(scope, 'MilestoneHeld');

  // The session's spend was counted as each attempt recorded it: the close moves only its status.
  const moved = totalsDelta({ from: 'RUNNING', to: 'FAILED' });
  const closeFailed = transact('CloseFailed', {
    session: {
      key: sessionKey,
      update: CLOSE_FAILED_UPDATE,
      condition: RUNNING_CONDITION,
      names: CLOSE_FAILED_NAMES,
      values: {
        ':running': { S: 'RUNNING' },
        ':status': { S: 'FAILED' },
        ':endedAt': { 'S.$': '$$.State.EnteredTime' },
        ':error': { 'S.$': '$.failure.Error' },
        ':cause': { 'S.$': '$.failure.Cause' },
        // CreateSession's DynamoDB JSON: a number with retention, NULL (never expires) without.
        ':expiresAt.$': '$.expiresAt',
      },
    },
    totals: { update: moved.update, names: moved.names, values: marshall(moved.values) },
  }, CatchPolicy.finallyStep(milestoneHeld, '$.closeFailure'));

  // A milestone task frees its lease, or marks the milestone broken when its transcript is.
  const thenSlot = CatchPolicy.finallyStep(slotHeld, '$.releaseFailure');
  milestoneHeld
    .when(Condition.and(isMilestoneTask, Condition.stringEquals('$.failure.Error', 'TranscriptUnusableError')), write('MarkMilestoneBroken', MARK_MILESTONE_BROKEN, thenSlot))
    .when(isMilestoneTask, write('ReleaseMilestoneAfterFailure', RELEASE_MILESTONE, thenSlot))
    .otherwise(slotHeld);
  slotHeld
    .when(isLimited, write('ReleaseSlotAfterFailure', RELEASE_SLOT, CatchPolicy.finallyStep(runFailed, '$.releaseFailure')))
    .otherwise(runFailed);
  return closeFailed;
}
