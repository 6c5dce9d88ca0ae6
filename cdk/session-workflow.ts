import { Duration, Names, RemovalPolicy } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Grant } from 'aws-cdk-lib/aws-iam';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import {
  Choice,
  Condition,
  CustomState,
  DefinitionBody,
  Fail,
  Pass,
  IntegrationPattern,
  JitterType,
  JsonPath,
  LogLevel,
  QueryLanguage,
  StateMachine,
  StateMachineType,
  TaskInput,
  Timeout,
  Wait,
  WaitTime,
} from 'aws-cdk-lib/aws-stepfunctions';
import { EcsFargateLaunchTarget, EcsRunTask, LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { SubnetType } from 'aws-cdk-lib/aws-ec2';
import { FargatePlatformVersion } from 'aws-cdk-lib/aws-ecs';
import type { FargateRunner } from './fargate-runner.js';
import {
  ACQUIRE_SLOT_CONDITION,
  ACQUIRE_SLOT_UPDATE,
  RELEASE_SLOT_CONDITION,
  RELEASE_SLOT_UPDATE,
  SLOTS_SK,
} from '../lib/sessions/project-slots.js';
import { Construct } from 'constructs';
import { FARGATE_REPORT_MARGIN_SECONDS, MAX_FARGATE_TIMEOUT_SECONDS } from '../lib/sessions/session-limits.js';
import {
  CLOSE_FAILED_NAMES,
  CLOSE_FAILED_UPDATE,
  CLOSE_NAMES,
  CLOSE_UPDATE,
  RECORD_ATTEMPT_NAMES,
  RECORD_ATTEMPT_UPDATE,
  RUNNING_CONDITION,
  SESSION_SK,
} from '../lib/sessions/session-item.js';
import {
  ACQUIRE_CONDITION,
  ACQUIRE_NAMES,
  ACQUIRE_UPDATE,
  LEASE_CONDITION,
  MARK_BROKEN_NAMES,
  MARK_BROKEN_UPDATE,
  MILESTONE_SK,
  RELEASE_AFTER_RUN_UPDATE,
  RELEASE_UPDATE,
} from '../lib/sessions/milestone-item.js';

export interface SessionWorkflowProps {
  readonly table: ITable;
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
 * Lambda throttling is not among LambdaInvoke's service-exception retries, and a new account
 * runs 10 functions at once: a burst of sessions retries it, with a back-off, instead of failing.
 */
const THROTTLED_INVOKE_RETRY = {
  errors: ['Lambda.TooManyRequestsException'], interval: Duration.seconds(2), backoffRate: 2, maxAttempts: 6, jitterStrategy: JitterType.FULL,
};

/**
 * The longest an execution may take: every attempt on the longest runtime (its run and its
 * margin to report), the back-offs between them, and an hour for the rest.
 */
export function executionTimeout(runAttempts: number, retryBaseSeconds = 15): Duration {
  const run = MAX_FARGATE_TIMEOUT_SECONDS + FARGATE_REPORT_MARGIN_SECONDS;
  const waits = Array.from({ length: runAttempts - 1 }, (_, i) => retryBaseSeconds * 2 ** i).reduce((a, b) => a + b, 0);
  return Duration.seconds(runAttempts * run + waits + 3600);
}

/** DynamoDB errors worth retrying on the direct integrations (throttling, service faults). */
const TRANSIENT_DYNAMODB_ERRORS = [
  'DynamoDB.ProvisionedThroughputExceededException',
  'DynamoDB.ThrottlingException',
  'DynamoDB.RequestLimitExceeded',
  'DynamoDB.InternalServerErrorException',
  'DynamoDB.AmazonDynamoDBException',
];

const sessionKey = {
  pk: { 'S.$': "States.Format('SESSION#{}', $.session.sessionId)" },
  sk: { S: SESSION_SK },
};
const milestoneKey = {
  pk: { 'S.$': "States.Format('MILESTONE#{}', $.session.milestoneId)" },
  sk: { S: MILESTONE_SK },
};
const thisExecution = { 'S.$': '$$.Execution.Id' };
const slotsKey = {
  pk: { 'S.$': "States.Format('PROJECT#{}', $.session.projectId)" },
  sk: { S: SLOTS_SK },
};
const thisSession = { ':session': { 'SS.$': 'States.Array($.session.sessionId)' }, ':sessionId': { 'S.$': '$.session.sessionId' } };

/** One conditional UpdateItem, as every write of the workflow after CreateSession is. */
interface UpdateItemSpec {
  key: Record<string, unknown>;
  update: string;
  condition: string;
  names?: Record<string, string>;
  /** The values, or a JSONPath to values the runner marshalled. */
  values: Record<string, unknown> | string;
  /** Keep the item as written at resultPath (ReturnValues ALL_NEW), through this selector. */
  select?: Record<string, unknown>;
  /** @default null: the state's input passes on unchanged */
  resultPath?: string;
  /** End the execution with this part of the state as its output. */
  endWith?: string;
}

function updateItemState(tableName: string, spec: UpdateItemSpec) {
  return {
    Type: 'Task',
    Resource: 'arn:aws:states:::dynamodb:updateItem',
    Parameters: {
      TableName: tableName,
      Key: spec.key,
      UpdateExpression: spec.update,
      ConditionExpression: spec.condition,
      ...(spec.names ? { ExpressionAttributeNames: spec.names } : {}),
      ...(typeof spec.values === 'string' ? { 'ExpressionAttributeValues.$': spec.values } : { ExpressionAttributeValues: spec.values }),
      ...(spec.select ? { ReturnValues: 'ALL_NEW' } : {}),
    },
    ...(spec.select ? { ResultSelector: spec.select } : {}),
    ResultPath: spec.resultPath ?? null,
    ...(spec.endWith ? { OutputPath: spec.endWith, End: true } : {}),
  };
}

/** RecordUsage and its kin: the runner's outcome, written once, only on a RUNNING session. */
const RECORD_USAGE: UpdateItemSpec = {
  key: sessionKey, update: CLOSE_UPDATE, condition: RUNNING_CONDITION, names: CLOSE_NAMES, values: '$.run.values',
};

/**
 * The session lifecycle as a Standard state machine in JSONPath (docs/ARCHITECTURE.md#request-flow):
 * CreateSession -> ChooseRuntime -> RunClaude -> ClaudeSucceeded? -> RecordUsage, and a finally-style Catch on
 * every state after CreateSession that closes the session FAILED and keeps the error.
 */
export class SessionWorkflow extends Construct {
  readonly stateMachine: StateMachine;

  constructor(scope: Construct, id: string, props: SessionWorkflowProps) {
    super(scope, id);
    const tableName = props.table.tableName;
    const update = (id: string, spec: UpdateItemSpec) => new CustomState(this, id, { stateJson: updateItemState(tableName, spec) });

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

    // Milestone tasks only: one task at a time, on an OPEN milestone of the same project.
    // It returns the milestone as it stands (the transcript pointer the runner restores).
    const acquireMilestone = update('AcquireMilestone', {
      key: milestoneKey,
      update: ACQUIRE_UPDATE,
      condition: ACQUIRE_CONDITION,
      names: ACQUIRE_NAMES,
      values: {
        ':open': { S: 'OPEN' },
        ':projectId': { 'S.$': '$.session.projectId' },
        ':sessionId': { 'S.$': '$.session.sessionId' },
        ':executionArn': thisExecution,
      },
      select: { 'item.$': '$.Attributes' },
      resultPath: '$.milestone',
    });
    const milestoneUnavailable = new Pass(this, 'MilestoneUnavailable', {
      parameters: {
        Error: 'MilestoneUnavailable',
        'Cause.$': "States.Format('milestone {} is not open for project {}, does not exist, or is running another task', $.session.milestoneId, $.session.projectId)",
      },
      resultPath: '$.failure',
    });

    // Only where a concurrency limit applies (session.concurrencyLimit): a slot in the project's set.
    const acquireSlot = new CustomState(this, 'AcquireSlot', {
      stateJson: {
        ...updateItemState(tableName, {
          key: slotsKey,
          update: ACQUIRE_SLOT_UPDATE,
          condition: ACQUIRE_SLOT_CONDITION,
          values: { ...thisSession, ':limit': { 'N.$': "States.Format('{}', $.session.concurrencyLimit)" } },
          resultPath: '$.slot',
        }),
        ResultSelector: { held: true }, // the item itself is not needed: only that a slot is held
      },
    });
    const projectAtCapacity = new Pass(this, 'ProjectAtCapacity', {
      parameters: {
        Error: 'ProjectAtCapacity',
        'Cause.$': "States.Format('project {} already runs as many sessions as its limit (maxConcurrentSessions)', $.session.projectId)",
      },
      resultPath: '$.failure',
    });
    const slotRelease: UpdateItemSpec = { key: slotsKey, update: RELEASE_SLOT_UPDATE, condition: RELEASE_SLOT_CONDITION, values: thisSession };
    const releaseSlot = update('ReleaseSlot', slotRelease);
    // The common limited path (no milestone, completed) ends on its release: four fewer transitions.
    const recordLimitedUsage = update('RecordLimitedUsage', RECORD_USAGE);
    const releaseSlotAndEnd = update('ReleaseSlotAndEnd', { ...slotRelease, endWith: '$.run.record' });
    const releaseSlotAfterFailure = update('ReleaseSlotAfterFailure', slotRelease);

    const runClaude = new LambdaInvoke(this, 'RunClaude', {
      lambdaFunction: props.runner,
      payload: TaskInput.fromObject({ 'session.$': '$.session', 'prompt.$': '$.prompt', 'milestone.$': '$.milestone', 'retry.$': '$.retry' }),
      payloadResponseOnly: true,
      resultPath: '$.run',
      retryOnServiceExceptions: true,
    });

    // Two writes of the same update, so the Choice comes before the write and a completed
    // session passes five states (RecordUsage ends the execution with the session record).
    const runOnFargate = new EcsRunTask(this, 'RunClaudeOnFargate', {
      integrationPattern: IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      cluster: props.fargate.cluster,
      taskDefinition: props.fargate.taskDefinition,
      launchTarget: new EcsFargateLaunchTarget({ platformVersion: FargatePlatformVersion.LATEST }),
      subnets: { subnetType: props.fargate.subnetType },
      assignPublicIp: props.fargate.subnetType === SubnetType.PUBLIC,
      // ECS holds 8 KiB of overrides in all: the session without its prompt (the task reads the
      // prompt from the execution's input), the milestone item, the retry and the token.
      containerOverrides: [
        {
          containerDefinition: props.fargate.container,
          environment: [
            { name: 'SESSION_JSON', value: JsonPath.jsonToString(JsonPath.objectAt('$.session')) },
            { name: 'MILESTONE_JSON', value: JsonPath.jsonToString(JsonPath.objectAt('$.milestone')) },
            { name: 'RETRY_JSON', value: JsonPath.jsonToString(JsonPath.objectAt('$.retry')) },
            { name: 'TASK_TOKEN', value: JsonPath.taskToken },
          ],
        },
      ],
      heartbeatTimeout: Timeout.duration(props.heartbeat ?? Duration.minutes(5)),
      // The runner stops Claude at timeoutSeconds; the platform gives it a margin to report.
      taskTimeout: Timeout.at('$.session.platformTimeoutSeconds'),
      resultPath: '$.run',
    });

    const recordUsage = update('RecordUsage', { ...RECORD_USAGE, endWith: '$.run.record' });
    const recordFailedRun = update('RecordFailedRun', RECORD_USAGE);
    const recordTaskUsage = update('RecordTaskUsage', RECORD_USAGE);

    // A transient API failure with attempts left: the spend so far on the session (SET, so a
    // repeat changes nothing), a back-off, and Claude again with that spend carried in the state.
    const recordAttempt = update('RecordAttempt', {
      key: sessionKey, update: RECORD_ATTEMPT_UPDATE, condition: RUNNING_CONDITION, names: RECORD_ATTEMPT_NAMES, values: '$.run.next.values',
    });
    const retryWait = new Wait(this, 'RetryWait', { time: WaitTime.secondsPath('$.run.next.waitSeconds') });
    const nextAttempt = new Pass(this, 'NextAttempt', {
      parameters: { 'attempt.$': '$.run.next.attempt', 'prior.$': '$.run.next.prior' },
      resultPath: '$.retry',
    });

    // Every write to the milestone is conditional on this execution holding its lease.
    const leased = { key: milestoneKey, condition: LEASE_CONDITION };
    const now = { ':executionArn': thisExecution, ':updatedAt': { 'S.$': '$$.State.EnteredTime' } };
    // The transcript pointer the runner returned, and the lease freed, after any run that returned.
    const releaseMilestone = update('ReleaseMilestone', { ...leased, update: RELEASE_AFTER_RUN_UPDATE, values: '$.run.milestoneValues' });
    const releaseMilestoneAfterFailure = update('ReleaseMilestoneAfterFailure', { ...leased, update: RELEASE_UPDATE, values: now });
    const markMilestoneBroken = update('MarkMilestoneBroken', {
      ...leased,
      update: MARK_BROKEN_UPDATE,
      names: MARK_BROKEN_NAMES,
      values: { ...now, ':broken': { S: 'BROKEN' }, ':reason': { 'S.$': '$.failure.Cause' } },
    });
    const taskCompleted = new Pass(this, 'TaskCompleted', { outputPath: '$.run.record' });

    const closeFailed = update('CloseFailed', {
      key: sessionKey,
      update: CLOSE_FAILED_UPDATE,
      condition: RUNNING_CONDITION,
      names: CLOSE_FAILED_NAMES,
      values: {
        ':running': { S: 'RUNNING' },
        ':status': { S: 'FAILED' },
        ':endedAt': { 'S.$': '$$.State.EnteredTime' },
        ':error': { 'S.$': '$.failure.Error' },
        ':cause': { 'S.$': '$.failure.Cause' },
      },
    });
    // The original error stays the execution's error, whatever happened to the close.
    const runFailed = new Fail(this, 'RunFailed', { errorPath: '$.failure.Error', causePath: '$.failure.Cause' });
    const sessionExists = new Fail(this, 'SessionAlreadyExists', {
      error: 'SessionAlreadyExists',
      cause: 'A session with this sessionId exists already; it was left as it was and Claude did not run.',
    });
    const claudeFailed = new Fail(this, 'ClaudeFailed', { errorPath: '$.run.record.error', causePath: '$.run.record.cause' });

    for (const state of [
      acquireMilestone, acquireSlot, recordAttempt, recordUsage, recordFailedRun, recordTaskUsage, recordLimitedUsage, releaseMilestone,
      releaseSlot, releaseSlotAndEnd,
      closeFailed, releaseMilestoneAfterFailure, markMilestoneBroken, releaseSlotAfterFailure,
    ]) {
      state.addRetry({ errors: TRANSIENT_DYNAMODB_ERRORS, interval: Duration.seconds(1), backoffRate: 2, maxAttempts: 4, jitterStrategy: JitterType.FULL });
    }
    for (const invoke of [createSession, runClaude]) invoke.addRetry(THROTTLED_INVOKE_RETRY);
    // Another execution's session: it is left as it is (the retry of our own put is not this error).
    createSession.addCatch(sessionExists, { errors: ['SessionAlreadyExists'], resultPath: '$.failure' });
    // A refused lease or slot is named for users first, then closes the session like any failure.
    acquireMilestone.addCatch(milestoneUnavailable, { errors: ['DynamoDB.ConditionalCheckFailedException'], resultPath: '$.acquireFailure' });
    acquireSlot.addCatch(projectAtCapacity, { errors: ['DynamoDB.ConditionalCheckFailedException'], resultPath: '$.acquireFailure' });
    // Finally: every state after CreateSession closes the session FAILED when it fails.
    for (const state of [
      acquireMilestone, acquireSlot, runClaude, runOnFargate, recordAttempt, recordUsage, recordFailedRun, recordTaskUsage, recordLimitedUsage,
      releaseMilestone, releaseSlot, releaseSlotAndEnd,
    ]) {
      state.addCatch(closeFailed, { errors: ['States.ALL'], resultPath: '$.failure' });
    }
    milestoneUnavailable.next(closeFailed);
    projectAtCapacity.next(closeFailed);
    recordFailedRun.next(claudeFailed);
    recordLimitedUsage.next(releaseSlotAndEnd);
    // After the session is closed: the milestone's lease, then the project's slot, each if held.
    const taskSucceeded = new Choice(this, 'TaskSucceeded')
      .when(Condition.stringEquals('$.run.record.status', 'COMPLETED'), taskCompleted)
      .otherwise(claudeFailed);
    const holdsSlot = new Choice(this, 'HoldsSlot').when(Condition.isPresent('$.session.concurrencyLimit'), releaseSlot).otherwise(taskSucceeded);
    releaseSlot.next(taskSucceeded);
    recordTaskUsage.next(
      new Choice(this, 'HoldsMilestone').when(Condition.isPresent('$.session.milestoneId'), releaseMilestone).otherwise(holdsSlot),
    );
    releaseMilestone.next(holdsSlot);

    // Finally, for a milestone task: free its lease (conditional on holding it, so a task refused
    // for a busy milestone frees nothing), or mark the milestone broken when its transcript is.
    // Then the project's slot, conditional on holding it too.
    const slotHeld = new Choice(this, 'SlotHeld').when(Condition.isPresent('$.session.concurrencyLimit'), releaseSlotAfterFailure).otherwise(runFailed);
    releaseSlotAfterFailure.addCatch(runFailed, { errors: ['States.ALL'], resultPath: '$.releaseFailure' });
    releaseSlotAfterFailure.next(runFailed);
    const milestoneHeld = new Choice(this, 'MilestoneHeld')
      .when(
        Condition.and(Condition.isPresent('$.session.milestoneId'), Condition.stringEquals('$.failure.Error', 'TranscriptUnusableError')),
        markMilestoneBroken,
      )
      .when(Condition.isPresent('$.session.milestoneId'), releaseMilestoneAfterFailure)
      .otherwise(slotHeld);
    // A close that finds the session already final (or cannot write) still ends the run failed.
    closeFailed.addCatch(milestoneHeld, { errors: ['States.ALL'], resultPath: '$.closeFailure' });
    closeFailed.next(milestoneHeld);
    for (const release of [releaseMilestoneAfterFailure, markMilestoneBroken]) {
      release.addCatch(slotHeld, { errors: ['States.ALL'], resultPath: '$.releaseFailure' });
      release.next(slotHeld);
    }

    const claudeSucceeded = new Choice(this, 'ClaudeSucceeded')
      .when(Condition.isPresent('$.run.next'), recordAttempt)
      // Milestone tasks first, so the limited rule needs no "IsPresent: false" (aws-local-stepfunctions
      // 3 evaluates IsPresent false as false whatever the input).
      .when(Condition.isPresent('$.session.milestoneId'), recordTaskUsage)
      .when(Condition.and(Condition.stringEquals('$.run.record.status', 'COMPLETED'), Condition.isPresent('$.session.concurrencyLimit')), recordLimitedUsage)
      .when(Condition.isPresent('$.session.concurrencyLimit'), recordTaskUsage)
      .when(Condition.stringEquals('$.run.record.status', 'COMPLETED'), recordUsage)
      .otherwise(recordFailedRun);
    runClaude.next(claudeSucceeded);
    runOnFargate.next(claudeSucceeded);
    // A milestone task takes its lease after its session exists (so a refusal leaves a FAILED
    // session, never a RUNNING one), then comes back here; fresh sessions pass straight on.
    const chooseRuntime = new Choice(this, 'ChooseRuntime')
      .when(Condition.and(Condition.isPresent('$.session.milestoneId'), Condition.isNull('$.milestone')), acquireMilestone)
      .when(Condition.and(Condition.isPresent('$.session.concurrencyLimit'), Condition.isNull('$.slot')), acquireSlot)
      .when(Condition.stringEquals('$.session.runtime', 'fargate'), runOnFargate)
      .otherwise(runClaude);
    acquireMilestone.next(chooseRuntime);
    acquireSlot.next(chooseRuntime);
    recordAttempt.next(retryWait).next(nextAttempt).next(chooseRuntime);
    const definition = createSession.next(chooseRuntime);

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
    // The table only, not its indexes: the workflow updates items and reads nothing (CreateSession's Lambda puts them).
    Grant.addToPrincipal({
      grantee: this.stateMachine,
      actions: ['dynamodb:UpdateItem'],
      resourceArns: [props.table.tableArn],
    });
  }
}
