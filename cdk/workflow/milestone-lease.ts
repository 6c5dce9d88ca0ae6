import { Pass } from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import {
  ACQUIRE_CONDITION,
  ACQUIRE_NAMES,
  ACQUIRE_UPDATE,
  LEASE_CONDITION,
  MARK_BROKEN_NAMES,
  MARK_BROKEN_UPDATE,
  RELEASE_AFTER_RUN_UPDATE,
  RELEASE_UPDATE,
} from '../../lib/sessions/milestone-item.js';
import { milestoneKey, thisExecution } from './execution-state.js';
import { whenRefused, type CatchPolicy, type TaskState } from './error-handling.js';
import type { UpdateItemSpec, WriteState } from './update-item-state.js';

/**
 * AcquireMilestone: one task at a time, on an OPEN milestone of the same project. It returns the
 * milestone as it stands (the transcript pointer the runner restores) at $.milestone. A refusal
 * is named MilestoneUnavailable for users, then closes the session like any failure.
 */
export function acquireMilestoneLease(scope: Construct, write: WriteState, step: CatchPolicy): TaskState {
  const unavailable = new Pass(scope, 'MilestoneUnavailable', {
    parameters: {
      Error: 'MilestoneUnavailable',
      'Cause.$': "States.Format('milestone {} is not open for project {}, does not exist, or is running another task', $.session.milestoneId, $.session.projectId)",
    },
    resultPath: '$.failure',
  }).next(step.onFailure);
  return write('AcquireMilestone', {
    key: milestoneKey,
    update: ACQUIRE_UPDATE,
    condition: ACQUIRE_CONDITION,
    names: ACQUIRE_NAMES,
    values: {
      ':open': { S: 'OPEN' },
      ':projectId': { 'S.$': '$.session.projectId' },
      ':sessionId': { 'S.$': '$.session.sessionId' },
      ':executionArn': thisExecution,
    },
    returnItem: true,
    select: { 'item.$': '$.Attributes' },
    resultPath: '$.milestone',
  }, step, whenRefused(unavailable));
}

// Every write to the milestone after the acquire is conditional on this execution holding its
// lease, so a task refused the lease frees nothing.
const leased = { key: milestoneKey, condition: LEASE_CONDITION };
const now = { ':executionArn': thisExecution, ':updatedAt': { 'S.$': '$$.State.EnteredTime' } };

/** After a run that returned: the transcript pointer the runner returned, and the lease freed. */
export const RELEASE_MILESTONE_AFTER_RUN: UpdateItemSpec = { ...leased, update: RELEASE_AFTER_RUN_UPDATE, values: '$.run.milestoneValues' };

/** After a failure: the lease freed, the transcript pointer left as it was. */
export const RELEASE_MILESTONE: UpdateItemSpec = { ...leased, update: RELEASE_UPDATE, values: now };

/** After a TranscriptUnusableError: the milestone BROKEN, with the cause, and the lease freed. */
export const MARK_MILESTONE_BROKEN: UpdateItemSpec = {
  ...leased,
  update: MARK_BROKEN_UPDATE,
  names: MARK_BROKEN_NAMES,
  values: { ...now, ':broken': { S: 'BROKEN' }, ':reason': { 'S.$': '$.failure.Cause' } },
};
