import type { MilestoneRepository } from './milestone-repository.js';
import type { ProjectSlots } from './project-slots.js';
import { reapExecution, type DescribeExecution, type ExecutionDescription, type ReapResult } from './session-reaper.js';
import type { SessionExecution, SessionRepository } from './session-repository.js';

/**
 * Sessions younger than this are left to the reaper: its event comes seconds after the end,
 * and the sweep is for the event that never came (EventBridge delivers best-effort).
 */
export const SWEEP_MIN_AGE_MS = 5 * 60 * 1000;

export interface SweptSession extends ReapResult {
  executionArn: string;
  /** How the execution ended, as DescribeExecution said it (`ExecutionDoesNotExist` when it had no history left). */
  executionStatus: string;
}

export interface SweepOptions {
  milestones: MilestoneRepository;
  slots: ProjectSlots;
  /** DescribeExecution of the session's execution. */
  describe: DescribeExecution;
  now?: Date;
  /** @default SWEEP_MIN_AGE_MS */
  minAgeMs?: number;
}

/**
 * Closes every RUNNING session whose execution has ended, and frees the slot and lease it held,
 * through `reapExecution` with what DescribeExecution says: the reaper's own conditional writes,
 * so a race with the reaper or a late runner changes nothing twice. A slot held by a session
 * closed already (a runner's stopped-run close, then the event lost) is freed the same way.
 * Returns the sessions it closed or freed a slot of.
 */
export async function sweepEndedExecutions(repository: SessionRepository, options: SweepOptions): Promise<SweptSession[]> {
  const now = options.now ?? new Date();
  const startedBefore = new Date(now.getTime() - (options.minAgeMs ?? SWEEP_MIN_AGE_MS)).toISOString();
  const closed: SweptSession[] = [];
  // The project list (one Query of the registry), then a query of the running index per project:
  // it reads the projects and what is running, whatever the history.
  for (const projectId of await repository.projectIds()) {
    const seen = new Set<string>();
    for (const session of await repository.runningExecutions(projectId)) {
      // Closed by an execution of a definition from before the running index: out of it now.
      if (session.status !== 'RUNNING') {
        await repository.clearRunningEntry(session.sessionId);
        continue;
      }
      seen.add(session.sessionId);
      if (session.startedAt > startedBefore) continue;
      const swept = await sweepOne(repository, session, options, now);
      if (swept?.closed || swept?.slotReleased || swept?.milestoneReleased) closed.push(swept);
    }
    // Only the reaper frees a slot after the runner's own close of a stopped run: with its event
    // lost, the slot would be held for good. Only projects with a limit hold slots.
    for (const sessionId of (await options.slots.get(projectId)).running) {
      if (seen.has(sessionId)) continue;
      const session = await repository.executionOf(sessionId);
      if (!session || session.status === 'RUNNING' || session.startedAt > startedBefore) continue;
      const swept = await sweepOne(repository, session, options, now);
      if (swept?.slotReleased || swept?.milestoneReleased) closed.push(swept);
    }
  }
  return closed;
}

async function sweepOne(repository: SessionRepository, session: SessionExecution, options: SweepOptions, now: Date): Promise<SweptSession | undefined> {
  const { executionArn } = session;
  let described: ExecutionDescription;
  try {
    described = await options.describe(executionArn);
  } catch (err) {
    if ((err as Error)?.name !== 'ExecutionDoesNotExist') throw err;
    // Step Functions keeps an ended execution 90 days: this one ended long ago, unrecorded.
    described = {
      status: 'ABORTED',
      input: JSON.stringify({ sessionId: session.sessionId, projectId: session.projectId, milestoneId: session.milestoneId ?? undefined }),
      error: 'ExecutionDoesNotExist',
      cause: 'the sweeper found the session RUNNING and its execution gone (its history expired), so it can never close it',
    };
    const reaped = await reap(repository, executionArn, described, options, now);
    return reaped && { ...reaped, executionArn, executionStatus: 'ExecutionDoesNotExist' };
  }
  // PENDING_REDRIVE: a redrive may run it on, and closes it then.
  if (described.status === 'RUNNING' || described.status === 'PENDING_REDRIVE') return undefined;
  const executionStatus = described.status;
  if (described.status === 'SUCCEEDED') {
    // Every successful path closes the session before it ends; one that did not is a fault, said as one.
    described = { ...described, status: 'FAILED', error: 'SessionNotClosed', cause: 'the execution succeeded without closing the session' };
  }
  const reaped = await reap(repository, executionArn, described, options, now);
  return reaped && { ...reaped, executionArn, executionStatus };
}

function reap(repository: SessionRepository, executionArn: string, described: ExecutionDescription, options: SweepOptions, now: Date) {
  return reapExecution(repository, {
    executionArn,
    name: executionArn.slice(executionArn.lastIndexOf(':') + 1),
    status: described.status,
    input: described.input ?? null,
    error: described.error ?? null,
    cause: described.cause ?? null,
  }, { now, milestones: options.milestones, slots: options.slots });
}
