import { Duration, Names, RemovalPolicy } from 'aws-cdk-lib';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  Choice,
  Condition,
  DefinitionBody,
  Fail,
  LogLevel,
  QueryLanguage,
  StateMachine,
  StateMachineType,
  TaskInput,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import type { SessionTable } from './session-table.js';
import type { FargateRunner } from './fargate-runner.js';
import { FARGATE_REPORT_MARGIN_SECONDS, MAX_FARGATE_TIMEOUT_SECONDS } from '../lib/sessions/session-limits.js';
import { closeOnFailure } from './workflow/close-on-failure.js';
import { closeWithOutcome } from './workflow/close-with-outcome.js';
import { completed, isLimited, isMilestoneTask } from './workflow/execution-state.js';
import { acquireMilestoneLease } from './workflow/milestone-lease.js';
import { acquireProjectSlot } from './workflow/project-slot.js';
import { CatchPolicy, THROTTLED_INVOKE_RETRY, tasksWithoutCatchPolicy } from './workflow/error-handling.js';
import { runAttempt } from './workflow/run-attempt.js';
import { transactStates, updateItemStates } from './workflow/update-item-state.js';

export interface SessionWorkflowProps {
  readonly sessions: SessionTable;
  /** CreateSession: validates the input and puts the session item (SessionCreator). */
  readonly creator: IFunction;
  readonly runner: IFunction;
  /** The Fargate runtime for long sessions (`runtime: "fargate"`). */
  readonly fargate: FargateRunner;
  /** @default Duration.minutes(5): a task that stops beating for this long has failed (a cold start pulls a large image first) */
  readonly heartbeat?: Duration;
  /** Runs of the CLI a session may take (the deployment's runAttempts): the execution timeout covers them all. @default 3 */
  readonly runAttempts?: number;
  /** @default derived: runAttempts longest Fargate runs, their back-offs and an hour for the rest (executionTimeout) */
  readonly timeout?: Duration;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * The longest an execution may take: every attempt on the longest runtime (its run and its
 * margin to report), the back-offs between them, and an hour for the rest.
 */
export function executionTimeout(runAttempts: number, retryBaseSeconds = 15): Duration {
  const run = MAX_FARGATE_TIMEOUT_SECONDS + FARGATE_REPORT_MARGIN_SECONDS;
  const waits = Array.from({ length: runAttempts - 1 }, (_, i) => retryBaseSeconds * 2 ** i).reduce((a, b) => a + b, 0);
  return Duration.seconds(runAttempts * run + waits + 3600);
}

/**
 * The session lifecycle as a Standard state machine in JSONPath (docs/ARCHITECTURE.md#request-flow):
 * CreateSession, the milestone's lease and a project slot where they apply, a run of Claude
 * (retried after a transient API failure), the close with its outcome; and a finally branch
 * that closes the session FAILED, keeping the error, when any state after CreateSession fails.
 */
export class SessionWorkflow extends Construct {
  readonly stateMachine: StateMachine;

  constructor(scope: Construct, id: string, props: SessionWorkflowProps) {
    super(scope, id);
    const write = updateItemStates(this, props.sessions.table.tableName);
    const transact = transactStates(this, props.sessions.table.tableName);
    // The finally branch: every Task after CreateSession is built with this catch policy, so a failure
    // anywhere closes the session FAILED and frees what it holds.
    const step = CatchPolicy.sessionStep(closeOnFailure(this, write, transact));

    // Validates, checks the budget and puts the session RUNNING in one Lambda: a session is
    // then 5 state transitions, not 6 with a separate PutItem state.
    const createSession = new LambdaInvoke(this, 'CreateSession', {
      lambdaFunction: props.creator,
      payload: TaskInput.fromObject({
        'input.$': '$', 'executionArn.$': '$$.Execution.Id', 'executionName.$': '$$.Execution.Name', 'executionStartTime.$': '$$.Execution.StartTime',
      }),
      payloadResponseOnly: true,
      // The result replaces the raw input (ResultPath's default, left unset on purpose:
      // aws-local-stepfunctions reads an explicit "$" as a key named "$").
    });
    createSession.addRetry(THROTTLED_INVOKE_RETRY);
    // Another execution's session: it is left as it is (the retry of our own put is not this error).
    // No finally branch here: the session is not ours to close.
    const sessionExists = new Fail(this, 'SessionAlreadyExists', {
      error: 'SessionAlreadyExists',
      cause: 'A session with this sessionId exists already; it was left as it was and Claude did not run.',
    });
    createSession.addCatch(sessionExists, { errors: ['SessionAlreadyExists'], resultPath: '$.failure' });

    const lease = acquireMilestoneLease(this, write, step);
    const slot = acquireProjectSlot(this, write, step);
    const run = runAttempt(this, transact, step, { runner: props.runner, fargate: props.fargate, heartbeat: props.heartbeat ?? Duration.minutes(5) });
    const close = closeWithOutcome(this, write, transact, step);

    // Before the run: the lease (taken once the session exists, so a refusal leaves a FAILED
    // session, never a RUNNING one), then the slot, then the runtime. Each Choice goes straight
    // to the first step still due, so none is entered twice and a fresh session passes one.
    const chooseFirstStep = run.thenRun(new Choice(this, 'ChooseFirstStep').when(isMilestoneTask, lease).when(isLimited, slot));
    lease.next(run.thenRun(new Choice(this, 'ChooseStepAfterLease').when(isLimited, slot)));
    slot.next(run.chooseRuntime);

    run.next(new Choice(this, 'ClaudeSucceeded')
      .when(Condition.isPresent('$.run.next'), run.retry) // a transient API failure, with attempts left
      // Milestone tasks first, so the limited rules need no "IsPresent: false" (aws-local-stepfunctions
      // 3 evaluates IsPresent false as false whatever the input).
      .when(isMilestoneTask, close.recordUsageBeforeRelease)
      .when(Condition.and(completed, isLimited), close.recordLimitedUsage)
      .when(isLimited, close.recordUsageBeforeRelease)
      .when(completed, close.recordUsage)
      .otherwise(close.recordFailedRun));
    const definition = createSession.next(chooseFirstStep);
    // A Task built without a catch policy fails the synth rather than leave a session RUNNING.
    this.node.addValidation({
      validate: () => tasksWithoutCatchPolicy(createSession).map((name) => `${name} has no CatchPolicy: a failure there would leave its session RUNNING`),
    });

    const logGroup = new LogGroup(this, 'Logs', {
      // Under /aws/vendedlogs/: Step Functions then needs no entry in the account's CloudWatch
      // Logs resource policy, whose 5,120-character limit busy accounts reach.
      logGroupName: `/aws/vendedlogs/states/${Names.uniqueResourceName(this, { maxLength: 200 })}`,
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      definitionBody: DefinitionBody.fromChainable(definition),
      stateMachineType: StateMachineType.STANDARD,
      queryLanguage: QueryLanguage.JSON_PATH,
      timeout: props.timeout ?? executionTimeout(props.runAttempts ?? 3),
      tracingEnabled: true,
      // Execution data holds the prompt: logs keep the events, never the data.
      logs: { destination: logGroup, level: LogLevel.ALL, includeExecutionData: false },
    });
    props.sessions.grantWorkflowWrites(this.stateMachine);
  }
}
