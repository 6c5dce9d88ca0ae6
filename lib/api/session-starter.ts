import { ExecutionAlreadyExists, StartExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { ExecutionInput } from '../sessions/execution-input.js';

export interface StartedSession {
  sessionId: string;
  executionArn: string;
  /** false when an execution with this session id existed already: nothing new ran. */
  started: boolean;
}

/** Starts the session workflow; the execution's name is the session id. */
export interface SessionStarter {
  start(input: ExecutionInput & { sessionId: string }): Promise<StartedSession>;
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
