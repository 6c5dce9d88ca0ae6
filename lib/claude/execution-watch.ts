import { DescribeExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { SessionStart } from '../sessions/execution-input.js';
import type { SessionRepository } from '../sessions/session-repository.js';
import type { RunOutcome } from '../sessions/session-item.js';
import type { AttemptSpend } from '../sessions/project-totals.js';

/** How a session closes when its execution ended under its run. */
export type StoppedStatus = 'ABORTED' | 'TIMED_OUT' | 'FAILED';

// AWS never stops a running task when its execution ends: StopExecution, an execution timeout
// or a failure elsewhere leaves a Lambda invocation running to its own limit, and a Fargate task
// learns of it from its next heartbeat. So the runner asks itself, every few seconds, and stops
// Claude when the execution is over; what Claude spent until then is written to the session
// (ExecutionWatch.recordStopped), since the execution that would have written it is gone.

/** How a runner learns that its execution ended, and where it records the spend of a run stopped for it. */
export interface ExecutionWatch {
  /** The execution's status now: RUNNING, or how it ended (DescribeExecution's). */
  status(): Promise<string>;
  /** How often to ask. @default 5000: stopped within 10 s, at 12 DescribeExecution calls a minute */
  intervalMs?: number;
  /**
   * Writes the run's spend to its session (the sum of its attempts, `outcome`), counting this
   * attempt's own (`attemptSpend`) into the project's totals (SessionRepository.recordStoppedRun).
   */
  recordStopped(start: SessionStart, outcome: RunOutcome, attemptSpend: AttemptSpend): Promise<void>;
  /**
   * Claims this attempt for this invocation before Claude starts (SessionRepository.claimAttempt):
   * false when another invocation of the same attempt holds it. Absent: no claim is made.
   */
  claimAttempt?(start: SessionStart, attempt: number): Promise<boolean>;
}

/** A second invocation of one attempt (a retried invoke while the first ran): it starts no Claude. */
export class AttemptAlreadyStartedError extends Error {
  override readonly name = 'AttemptAlreadyStartedError';
}

/** The session's status for an execution that ended while its runner ran. */
const ENDED: Record<string, StoppedStatus> = { ABORTED: 'ABORTED', TIMED_OUT: 'TIMED_OUT', FAILED: 'FAILED', SUCCEEDED: 'FAILED' };

export class ExecutionEndedError extends Error {
  override readonly name = 'ExecutionEndedError';
}

/** A running watch: `signal` fires once the execution is seen ended, `ended` says how. */
export interface WatchedExecution {
  signal: AbortSignal;
  ended: StoppedStatus | undefined;
  /** Asks at once (a heartbeat said nobody waits any more). */
  check(): void;
  stop(): void;
}

export function watchExecution(watch: ExecutionWatch): WatchedExecution {
  const controller = new AbortController();
  let ended: StoppedStatus | undefined;
  let asking = false;
  const check = () => {
    if (asking || controller.signal.aborted) return;
    asking = true;
    watch.status().then((status) => {
      const final = ENDED[status];
      if (final) {
        ended = final;
        controller.abort();
      }
    }, () => undefined) // a failed look is tried again at the next tick
      .finally(() => (asking = false));
  };
  const timer = setInterval(check, watch.intervalMs ?? 5_000);
  timer.unref();
  return {
    signal: controller.signal,
    get ended() {
      return ended;
    },
    check,
    stop: () => clearInterval(timer),
  };
}

/** The error and cause a stopped run is recorded with (the reaper's, when it closed first, stay). */
export function stoppedFailure(status: StoppedStatus, seconds: number): { error: string; cause: string } {
  const error = status === 'ABORTED' ? 'ExecutionAborted' : status === 'TIMED_OUT' ? 'ExecutionTimedOut' : 'ExecutionFailed';
  return { error, cause: `the execution ended ${status.replace('_', ' ').toLowerCase()} while Claude ran; the runner stopped Claude after ${seconds} s and recorded what it spent` };
}

/** A deployed runner's watch: DescribeExecution of its own execution, the spend written to the session table. */
export function describeExecutionWatch(sfn: SFNClient, executionArn: string, sessions: SessionRepository, invocation: string): ExecutionWatch {
  return {
    status: async () => (await sfn.send(new DescribeExecutionCommand({ executionArn }))).status ?? 'RUNNING',
    recordStopped: async (start, outcome, attemptSpend) => {
      await sessions.recordStoppedRun(start, outcome, attemptSpend);
    },
    claimAttempt: (start, attempt) => sessions.claimAttempt(start, attempt, invocation),
  };
}
