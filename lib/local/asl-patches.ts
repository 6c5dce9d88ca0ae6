import { randomBytes } from 'node:crypto';
import type { WorkflowDefinition } from './workflow-definition.js';

// Where the embedded runtime bends the production definition, each for a difference of
// aws-local-stepfunctions from Step Functions (docs/ARCHITECTURE.md#emulator-quirks-that-bend-the-definition).

/**
 * A Task state's timeout as Step Functions has it. Two differences of aws-local-stepfunctions:
 * - it reads TimeoutSecondsPath against the state's Parameters, not its input; the Fargate
 *   handler enforces that timeout itself instead (LocalTaskCallbacks.wait);
 * - a Task with no TimeoutSeconds fails after 60 s, where Step Functions waits (its default is
 *   99999999 s): a RunClaude over a minute failed States.Timeout locally. Such a Task gets the
 *   longest timer Node keeps instead (a longer one fires at once); the runner's own limit ends it first.
 */
export function withStepFunctionsTaskTimeouts(asl: WorkflowDefinition['asl']): WorkflowDefinition['asl'] {
  const States = Object.fromEntries(
    Object.entries(asl.States).map(([name, state]) => {
      const { TimeoutSecondsPath: _ignored, ...rest } = state;
      const unbounded = rest.Type === 'Task' && rest.TimeoutSeconds === undefined;
      return [name, unbounded ? { ...rest, TimeoutSeconds: LONGEST_TIMER_SECONDS } : rest];
    }),
  );
  return { ...asl, States };
}

/** setTimeout's largest delay (2^31 - 1 ms), in whole seconds. */
export const LONGEST_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

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
