import { Pass } from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import {
  ACQUIRE_SLOT_CONDITION,
  ACQUIRE_SLOT_UPDATE,
  RELEASE_SLOT_CONDITION,
  RELEASE_SLOT_UPDATE,
} from '../../lib/sessions/project-slots.js';
import { slotsKey, thisSession } from './execution-state.js';
import { whenRefused, type CatchPolicy, type TaskState } from './error-handling.js';
import type { UpdateItemSpec, WriteState } from './update-item-state.js';

/**
 * AcquireSlot, where a concurrency limit applies (session.concurrencyLimit): the session id added
 * to the project's `running` set under its limit. A refusal is named ProjectAtCapacity for
 * users, then closes the session like any failure.
 */
export function acquireProjectSlot(scope: Construct, write: WriteState, step: CatchPolicy): TaskState {
  const atCapacity = new Pass(scope, 'ProjectAtCapacity', {
    parameters: {
      Error: 'ProjectAtCapacity',
      'Cause.$': "States.Format('project {} already runs as many sessions as its limit (maxConcurrentSessions)', $.session.projectId)",
    },
    resultPath: '$.failure',
  }).next(step.onFailure);
  return write('AcquireSlot', {
    key: slotsKey,
    update: ACQUIRE_SLOT_UPDATE,
    condition: ACQUIRE_SLOT_CONDITION,
    values: { ...thisSession, ':limit': { 'N.$': "States.Format('{}', $.session.concurrencyLimit)" } },
    select: { held: true }, // the item itself is not needed: only that a slot is held
    resultPath: '$.slot',
  }, step, whenRefused(atCapacity));
}

/** The session's id out of the set, conditional on holding it: a session refused a slot frees none. */
export const RELEASE_SLOT: UpdateItemSpec = { key: slotsKey, update: RELEASE_SLOT_UPDATE, condition: RELEASE_SLOT_CONDITION, values: thisSession };
