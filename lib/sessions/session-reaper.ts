import { sessionIdForExecution } from './execution-input.js';
import type { FinalStatus } from './session-item.js';
import type { SessionRepository } from './session-repository.js';
import type { MilestoneRepository } from './milestone-repository.js';
import type { ProjectSlots } from './project-slots.js';
import { validate as isUuid } from 'uuid';

/** The detail of an EventBridge "Step Functions Execution Status Change" event (the fields used). */
export interface ExecutionStatusChange {
  executionArn: string;
  name: string;
  status: string;
  /** Omitted by EventBridge when the input is large: then `inputDetails.included` is false. */
  input?: string | null;
  inputDetails?: { included?: boolean } | null;
  error?: string | null;
  cause?: string | null;
}

/** What DescribeExecution says of an execution (the fields used). */
export interface ExecutionDescription {
  status: string;
  input?: string | null;
  error?: string | null;
  cause?: string | null;
}

/** DescribeExecution; throws an error named `ExecutionDoesNotExist` once the history has expired. */
export type DescribeExecution = (executionArn: string) => Promise<ExecutionDescription>;

const FINAL: Record<string, FinalStatus> = { ABORTED: 'ABORTED', TIMED_OUT: 'TIMED_OUT', FAILED: 'FAILED' };

export interface ReapResult {
  sessionId: string;
  closed: boolean;
  /** A milestone task's lease, freed when the execution still held it. */
  milestoneReleased?: boolean;
  /** The project slot, freed when the session held one (reported when the release was tried). */
  slotReleased?: boolean;
}

/**
 * Closes the session of an execution that ended without closing it (aborted, timed out,
 * or failed before CloseFailed could write). Conditional on RUNNING: after a normal close,
 * or a second delivery of the same event, it changes nothing.
 */
export async function reapExecution(
  repository: SessionRepository,
  detail: ExecutionStatusChange,
  options: { now?: Date; milestones?: MilestoneRepository; slots?: ProjectSlots; describe?: DescribeExecution } = {},
): Promise<ReapResult | undefined> {
  const status = FINAL[detail.status];
  if (!status) return undefined;
  const now = options.now ?? new Date();
  let input: { sessionId?: unknown; milestoneId?: unknown; projectId?: unknown } = {};
  // EventBridge leaves the input out of a large execution's event (inputDetails.included false):
  // without it the slot and lease would stay held, so ask the execution itself.
  let rawInput = detail.inputDetails?.included === false ? null : detail.input;
  if (!rawInput && options.describe) rawInput = (await options.describe(detail.executionArn)).input;
  try {
    input = rawInput ? (JSON.parse(rawInput) as typeof input) ?? {} : {};
  } catch {
    // a console input that is not JSON has no session id of its own
  }
  const inputSessionId = input.sessionId;
  const sessionId = sessionIdForExecution({ inputSessionId, executionName: detail.name, executionArn: detail.executionArn });
  const error = detail.error || (status === 'ABORTED' ? 'ExecutionAborted' : status === 'TIMED_OUT' ? 'ExecutionTimedOut' : 'ExecutionFailed');
  const cause = detail.cause || `the execution ended ${status.replace('_', ' ').toLowerCase()} before it closed the session`;
  const closed = await repository.closeWithError(sessionId, status, error, cause, { endedAt: now, executionArn: detail.executionArn });
  // Its slot, once the session is final: a duplicate start of a running session id must not
  // free the slot of the execution that runs it. The DELETE of its id is conditional anyway.
  const result: ReapResult = { sessionId, closed };
  if (options.slots && typeof input.projectId === 'string' && (closed || (await repository.get(sessionId))?.status !== 'RUNNING')) {
    const slotReleased = await options.slots.release(input.projectId, sessionId);
    if (slotReleased) result.slotReleased = true;
  }
  // Conditional on this execution holding it: a lease another task holds is left alone.
  if (options.milestones && typeof input.milestoneId === 'string' && isUuid(input.milestoneId)) {
    result.milestoneReleased = await options.milestones.releaseLease(input.milestoneId, detail.executionArn, now);
  }
  return result;
}
