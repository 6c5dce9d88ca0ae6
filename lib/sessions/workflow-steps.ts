import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { marshall, type NativeAttributeValue } from '@aws-sdk/util-dynamodb';
import { prepareSessionStart, type SessionStart } from './execution-input.js';
import { toSessionItem } from './session-item.js';

/** What ValidateInput hands on: the session to run, and the item CreateSession puts. */
export interface PreparedSession {
  session: SessionStart;
  item: Record<string, AttributeValue>;
  /** Filled by AcquireMilestone for a milestone task; null until then (and for fresh sessions). */
  milestone: null;
}

export interface ValidateInputEvent {
  input: unknown;
  executionArn: string;
  executionName: string;
}

/** The ValidateInput step, shared by the Lambda handler and the embedded runtime. */
export function prepareSession(event: ValidateInputEvent, now = new Date()): PreparedSession {
  const session = prepareSessionStart(event.input, { executionArn: event.executionArn, executionName: event.executionName, now });
  return { session, item: marshall(toSessionItem(session) as Record<string, NativeAttributeValue>), milestone: null };
}
