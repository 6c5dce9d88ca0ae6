import { ExecutionAlreadyExists, StartExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { ClaudeEndpoint, StandbyClaude } from '../claude/claude-process.js';
import type { ExecutionInput } from '../sessions/execution-input.js';

export interface StartedSession {
  sessionId: string;
  executionArn: string;
  /**
   * false when the session id is taken (an execution or a session of that id exists): nothing
   * new ran. The one answer to a taken id, on AWS and locally.
   */
  started: boolean;
}

/** What a local start carries beyond its input: the runner runs in-process, so it can be handed these. */
export interface LocalStartOptions {
  /** The Claude this session's runner talks to (a `run`'s shell's), when not the runtime's. */
  endpoint?: ClaudeEndpoint;
  /** A CLI booted ahead for this session (its id is the session's), for the runner to give the prompt. */
  standby?: StandbyClaude;
}

/**
 * Where `startSession` starts the workflow, with the execution named by the session id:
 * Step Functions (`StepFunctionsStarter`) or the local runtime (`LocalRuntime`). Nothing else calls it.
 */
export interface SessionStarter {
  start(input: ExecutionInput & { sessionId: string }, options?: LocalStartOptions): Promise<StartedSession>;
}

export function executionArnFor(stateMachineArn: string, name: string): string {
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
}

/** StartExecution on AWS. Same name twice starts nothing new (ExecutionAlreadyExists). */
export class StepFunctionsStarter implements SessionStarter {
  constructor(
    private readonly client: SFNClient,
    private readonly stateMachineArn: string,
  ) {}

  async start(input: ExecutionInput & { sessionId: string }): Promise<StartedSession> {
    try {
      const { executionArn } = await this.client.send(
        new StartExecutionCommand({ stateMachineArn: this.stateMachineArn, name: input.sessionId, input: JSON.stringify(input) }),
      );
      return { sessionId: input.sessionId, executionArn: executionArn!, started: true };
    } catch (err) {
      if (!(err instanceof ExecutionAlreadyExists)) throw err;
      return { sessionId: input.sessionId, executionArn: executionArnFor(this.stateMachineArn, input.sessionId), started: false };
    }
  }
}
