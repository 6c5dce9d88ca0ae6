import { randomBytes } from 'node:crypto';
import type { WorkflowDefinition } from './workflow-definition.js';

// Where the embedded runtime bends the production definition, each for a difference of
// aws-local-stepfunctions from Step Functions (docs/ARCHITECTURE.md#emulator-quirks-that-bend-the-definition).

/**
 * aws-local-stepfunctions reads TimeoutSecondsPath against the state's Parameters, not its
 * input as Step Functions does; the Fargate handler enforces that timeout itself instead.
 */
export function withoutTimeoutPaths(asl: WorkflowDefinition['asl']): WorkflowDefinition['asl'] {
  const States = Object.fromEntries(
    Object.entries(asl.States).map(([name, state]) => {
      const { TimeoutSecondsPath: _ignored, ...rest } = state;
      return [name, rest];
    }),
  );
  return { ...asl, States };
}


/** Retries keep their order and count locally, without the production back-off waits. */
export function fastRetries(asl: WorkflowDefinition['asl']): Record<string, number> {
  return Object.fromEntries(Object.entries(asl.States).filter(([, s]) => 'Retry' in s).map(([name]) => [name, 50]));
}

/** Step Functions task tokens run up to 2,048 characters; the local ones are that long, so overrides are tried at their largest. */
const TASK_TOKEN_CHARS = 2_048;

/** The context object ($$) of one execution, with what aws-local-stepfunctions leaves unset. */
export function executionContext(stateMachine: { arn: string; name: string }, execution: { arn: string; name: string }) {
  return {
    Execution: { Id: execution.arn, Name: execution.name, StartTime: new Date().toISOString() },
    StateMachine: { Id: stateMachine.arn, Name: stateMachine.name },
    // aws-local-stepfunctions does not fill $$.State.EnteredTime; close enough for endedAt.
    State: {
      get EnteredTime() {
        return new Date().toISOString();
      },
    },
    // A fresh token each time a .waitForTaskToken state reads it, as long as AWS's longest.
    Task: {
      get Token() {
        return randomBytes(TASK_TOKEN_CHARS).toString('base64url').slice(0, TASK_TOKEN_CHARS);
      },
    },
  };
}
