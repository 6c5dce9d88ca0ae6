import { sessionIdForExecution } from './execution-input.js';
import type { FinalStatus } from './session-item.js';
import type { SessionRepository } from './session-repository.js';

/** The detail of an EventBridge "Step Functions Execution Status Change" event (the fields used). */
export interface ExecutionStatusChange {
  executionArn: string;
  name: string;
  status: string;
  input?: string | null;
  error?: string | null;
  cause?: string | null;
}

const FINAL: Record<string, FinalStatus> = { ABORTED: 'ABORTED', TIMED_OUT: 'TIMED_OUT', FAILED: 'FAILED' };

export interface ReapResult {
  sessionId: string;
  closed: boolean;
}

/**
 * Closes the session of an execution that ended without closing it (aborted, timed out,
 * or failed before CloseFailed could write). Conditional on RUNNING: after a normal close,
 * or a second delivery of the same event, it changes nothing.
 */
export async function reapExecution(repository: SessionRepository, detail: ExecutionStatusChange, now = new Date()): Promise<ReapResult | undefined> {
  const status = FINAL[detail.status];
  if (!status) return undefined;
  let inputSessionId: unknown;
  try {
    inputSessionId = detail.input ? (JSON.parse(detail.input) as { sessionId?: unknown }).sessionId : undefined;
  } catch {
    inputSessionId = undefined; // a console input that is not JSON has no session id of its own
  }
  const sessionId = sessionIdForExecution({ inputSessionId, executionName: detail.name, executionArn: detail.executionArn });
  const error = detail.error || (status === 'ABORTED' ? 'ExecutionAborted' : status === 'TIMED_OUT' ? 'ExecutionTimedOut' : 'ExecutionFailed');
  const cause = detail.cause || `the execution ended ${status.replace('_', ' ').toLowerCase()} before it closed the session`;
  const closed = await repository.closeWithError(sessionId, status, error, cause, { endedAt: now, executionArn: detail.executionArn });
  return { sessionId, closed };
}
