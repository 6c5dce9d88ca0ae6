import {
  DescribeExecutionCommand,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import { ExecutionEndedError } from './execution-watch.js';
import { runSessionTask, type RunnerConfig, type RunnerInput, type TaskResult } from './run-session-task.js';

/** How a Fargate task answers the workflow's `.waitForTaskToken`. */
export interface TaskCallbacks {
  heartbeat(): Promise<void>;
  succeed(result: TaskResult): Promise<void>;
  fail(error: string, cause: string): Promise<void>;
}

export class StepFunctionsCallbacks implements TaskCallbacks {
  constructor(
    private readonly client: SFNClient,
    private readonly taskToken: string,
  ) {}

  async heartbeat(): Promise<void> {
    await this.client.send(new SendTaskHeartbeatCommand({ taskToken: this.taskToken }));
  }

  async succeed(result: TaskResult): Promise<void> {
    await this.client.send(new SendTaskSuccessCommand({ taskToken: this.taskToken, output: JSON.stringify(result) }));
  }

  async fail(error: string, cause: string): Promise<void> {
    // SendTaskFailure limits: error 256, cause 32,768 characters.
    await this.client.send(new SendTaskFailureCommand({ taskToken: this.taskToken, error: error.slice(0, 256), cause: cause.slice(0, 32_768) }));
  }
}

/**
 * The task's prompt, from its execution's input: ECS container overrides hold 8 KiB in all,
 * so they carry the session without its prompt, and the prompt never limits the runtime.
 */
export async function executionPrompt(client: SFNClient, executionArn: string): Promise<string> {
  const { input } = await client.send(new DescribeExecutionCommand({ executionArn }));
  const prompt = (JSON.parse(input ?? 'null') as { prompt?: unknown } | null)?.prompt;
  if (typeof prompt !== 'string') throw new Error(`execution ${executionArn} has no prompt in its input`);
  return prompt;
}

/** Heartbeat answers that mean nobody waits for this task any more: stop Claude. */
const GONE = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken']);

/**
 * The Fargate entry point's job: run the same session task as the Lambda, beat while it
 * runs, and report its outcome (or its failure) on the task token. Throws only when the
 * report itself cannot be made, so the container exits non-zero and ECS shows it.
 */
export async function runFargateTask(
  input: Omit<RunnerInput, 'prompt'>,
  prompt: () => Promise<string>,
  config: RunnerConfig,
  callbacks: TaskCallbacks,
  heartbeatIntervalMs: number,
): Promise<'succeeded' | 'failed' | 'abandoned'> {
  const stop = new AbortController();
  const beat = setInterval(() => {
    callbacks.heartbeat().catch((err: Error) => {
      if (GONE.has(err.name)) stop.abort();
    });
  }, heartbeatIntervalMs);
  try {
    const result = await runSessionTask({ ...input, prompt: await prompt() }, { ...config, signal: stop.signal });
    await callbacks.succeed(result);
    return 'succeeded';
  } catch (err) {
    // Nobody waits for the token any more: the run's spend, if it was stopped for that, is recorded already.
    if (stop.signal.aborted || err instanceof ExecutionEndedError) return 'abandoned';
    const error = err instanceof Error ? err : new Error(String(err));
    await callbacks.fail(error.name, error.message);
    return 'failed';
  } finally {
    clearInterval(beat);
  }
}
