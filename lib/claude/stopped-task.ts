// A Fargate task that stops before it reports (its image could not be pulled, it ran out of
// memory, it crashed, it was stopped) leaves its state waiting until the heartbeat runs out:
// five minutes, the first heartbeat's allowance for an image pull. ECS says at once that a task
// stopped (EventBridge "ECS Task State Change"), with the overrides it ran with, the task token
// among them: that token is failed then. Events are best-effort; the heartbeat stays the backstop.

/** What an "ECS Task State Change" event says of a task (the fields read here). */
export interface TaskStateChange {
  taskArn?: string;
  lastStatus?: string;
  stopCode?: string;
  stoppedReason?: string;
  containers?: { name?: string; exitCode?: number; reason?: string }[];
  overrides?: { containerOverrides?: { name?: string; environment?: { name: string; value: string }[] }[] };
}

/** The error a state waiting on a stopped task fails with. */
export const TASK_STOPPED_ERROR = 'ECS.TaskStopped';

/** SendTaskFailure's answers for a token that is answered already (the task reported, then stopped). */
const ANSWERED = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

export type StoppedTaskOutcome = 'failed' | 'answered' | 'not-stopped' | 'no-token';

/**
 * Fails the task token a stopped task held, naming why it stopped. A task that reported before
 * it stopped holds an answered token: SendTaskFailure then changes nothing, and that is fine.
 */
export async function failStoppedTask(
  task: TaskStateChange,
  sendTaskFailure: (taskToken: string, error: string, cause: string) => Promise<void>,
): Promise<StoppedTaskOutcome> {
  if (task.lastStatus !== 'STOPPED') return 'not-stopped';
  const token = task.overrides?.containerOverrides?.flatMap((c) => c.environment ?? []).find((e) => e.name === 'TASK_TOKEN')?.value;
  if (!token) return 'no-token';
  try {
    await sendTaskFailure(token, TASK_STOPPED_ERROR, stoppedCause(task).slice(0, 32_768));
    return 'failed';
  } catch (err) {
    if (ANSWERED.has((err as Error).name)) return 'answered';
    throw err;
  }
}

/** Why the task stopped, as ECS put it: the stop code and reason, and each container's exit. */
export function stoppedCause(task: TaskStateChange): string {
  const containers = (task.containers ?? [])
    .map((c) => `${c.name ?? 'container'} ${c.exitCode !== undefined ? `exited ${c.exitCode}` : 'did not run'}${c.reason ? ` (${c.reason})` : ''}`);
  const why = [task.stopCode, task.stoppedReason].filter(Boolean).join(': ');
  return `the Fargate task stopped before it reported${why ? `: ${why}` : ''}${containers.length ? `; ${containers.join('; ')}` : ''}`;
}
