import { Duration, RemovalPolicy } from 'aws-cdk-lib';
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
  IntegrationPattern,
  JitterType,
  JsonPath,
  LogLevel,
  QueryLanguage,
  StateMachine,
  StateMachineType,
  TaskInput,
  Timeout,
} from 'aws-cdk-lib/aws-stepfunctions';
import { EcsFargateLaunchTarget, EcsRunTask, LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { SubnetType } from 'aws-cdk-lib/aws-ec2';
import { FargatePlatformVersion } from 'aws-cdk-lib/aws-ecs';
import type { FargateRunner } from './fargate-runner.js';
import { Construct } from 'constructs';
import {
  CLOSE_FAILED_NAMES,
  CLOSE_FAILED_UPDATE,
  CLOSE_NAMES,
  CLOSE_UPDATE,
  CREATE_CONDITION,
  RUNNING_CONDITION,
  SESSION_SK,
} from '../lib/sessions/session-item.js';

export interface SessionWorkflowProps {
  readonly table: ITable;
  readonly validator: IFunction;
  readonly runner: IFunction;
  /** The Fargate runtime for long sessions (`runtime: "fargate"`). */
  readonly fargate: FargateRunner;
  /** @default Duration.minutes(2): a task that stops beating for this long has failed */
  readonly heartbeat?: Duration;
  /** @default Duration.hours(9): above the longest session a runtime allows */
  readonly timeout?: Duration;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
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

/**
 * The session lifecycle as a Standard state machine in JSONPath (DESIGN.md, request flow):
 * ValidateInput -> CreateSession -> RunClaude -> ClaudeSucceeded? -> RecordUsage, and a finally-style Catch on
 * every state after CreateSession that closes the session FAILED and keeps the error.
 */
export class SessionWorkflow extends Construct {
  readonly stateMachine: StateMachine;

  constructor(scope: Construct, id: string, props: SessionWorkflowProps) {
    super(scope, id);
    const tableName = props.table.tableName;

    const validateInput = new LambdaInvoke(this, 'ValidateInput', {
      lambdaFunction: props.validator,
      payload: TaskInput.fromObject({ 'input.$': '$', 'executionArn.$': '$$.Execution.Id', 'executionName.$': '$$.Execution.Name' }),
      payloadResponseOnly: true,
      // The result replaces the raw input (ResultPath's default, left unset on purpose:
      // aws-local-stepfunctions reads an explicit "$" as a key named "$").
    });

    const createSession = new CustomState(this, 'CreateSession', {
      stateJson: {
        Type: 'Task',
        Resource: 'arn:aws:states:::dynamodb:putItem',
        Parameters: { TableName: tableName, 'Item.$': '$.item', ConditionExpression: CREATE_CONDITION },
        ResultPath: null,
      },
    });

    const runClaude = new LambdaInvoke(this, 'RunClaude', {
      lambdaFunction: props.runner,
      // InputPath, not payload: CDK renders fromJsonPathAt with payloadResponseOnly as "Parameters": "$.session".
      inputPath: '$.session',
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
      containerOverrides: [
        {
          containerDefinition: props.fargate.container,
          environment: [
            { name: 'SESSION_INPUT_JSON', value: JsonPath.jsonToString(JsonPath.objectAt('$.session')) },
            { name: 'TASK_TOKEN', value: JsonPath.taskToken },
          ],
        },
      ],
      heartbeatTimeout: Timeout.duration(props.heartbeat ?? Duration.minutes(2)),
      // The runner stops Claude at timeoutSeconds; the platform gives it a margin to report.
      taskTimeout: Timeout.at('$.session.platformTimeoutSeconds'),
      resultPath: '$.run',
    });

    const recordUsageState = (end: boolean) => ({
      Type: 'Task',
      Resource: 'arn:aws:states:::dynamodb:updateItem',
      Parameters: {
        TableName: tableName,
        Key: sessionKey,
        UpdateExpression: CLOSE_UPDATE,
        ConditionExpression: RUNNING_CONDITION,
        ExpressionAttributeNames: CLOSE_NAMES,
        'ExpressionAttributeValues.$': '$.run.values',
      },
      ResultPath: null,
      ...(end ? { OutputPath: '$.run.record', End: true } : {}),
    });
    const recordUsage = new CustomState(this, 'RecordUsage', { stateJson: recordUsageState(true) });
    const recordFailedRun = new CustomState(this, 'RecordFailedRun', { stateJson: recordUsageState(false) });

    const closeFailed = new CustomState(this, 'CloseFailed', {
      stateJson: {
        Type: 'Task',
        Resource: 'arn:aws:states:::dynamodb:updateItem',
        Parameters: {
          TableName: tableName,
          Key: sessionKey,
          UpdateExpression: CLOSE_FAILED_UPDATE,
          ConditionExpression: RUNNING_CONDITION,
          ExpressionAttributeNames: CLOSE_FAILED_NAMES,
          ExpressionAttributeValues: {
            ':running': { S: 'RUNNING' },
            ':status': { S: 'FAILED' },
            ':endedAt': { 'S.$': '$$.State.EnteredTime' },
            ':error': { 'S.$': '$.failure.Error' },
            ':cause': { 'S.$': '$.failure.Cause' },
          },
        },
        ResultPath: null,
      },
    });
    // The original error stays the execution's error, whatever happened to the close.
    const runFailed = new Fail(this, 'RunFailed', { errorPath: '$.failure.Error', causePath: '$.failure.Cause' });
    const sessionExists = new Fail(this, 'SessionAlreadyExists', {
      error: 'SessionAlreadyExists',
      cause: 'A session with this sessionId exists already; it was left as it was and Claude did not run.',
    });
    const claudeFailed = new Fail(this, 'ClaudeFailed', { errorPath: '$.run.record.error', causePath: '$.run.record.cause' });

    for (const state of [createSession, recordUsage, recordFailedRun, closeFailed]) {
      state.addRetry({ errors: TRANSIENT_DYNAMODB_ERRORS, interval: Duration.seconds(1), backoffRate: 2, maxAttempts: 4, jitterStrategy: JitterType.FULL });
    }
    createSession.addCatch(sessionExists, { errors: ['DynamoDB.ConditionalCheckFailedException'], resultPath: '$.failure' });
    runClaude.addCatch(closeFailed, { errors: ['States.ALL'], resultPath: '$.failure' });
    runOnFargate.addCatch(closeFailed, { errors: ['States.ALL'], resultPath: '$.failure' });
    recordUsage.addCatch(closeFailed, { errors: ['States.ALL'], resultPath: '$.failure' });
    recordFailedRun.addCatch(closeFailed, { errors: ['States.ALL'], resultPath: '$.failure' });
    recordFailedRun.next(claudeFailed);
    // A close that finds the session already final (or cannot write) still ends the run failed.
    closeFailed.addCatch(runFailed, { errors: ['States.ALL'], resultPath: '$.closeFailure' });
    closeFailed.next(runFailed);

    const claudeSucceeded = new Choice(this, 'ClaudeSucceeded')
      .when(Condition.stringEquals('$.run.record.status', 'COMPLETED'), recordUsage)
      .otherwise(recordFailedRun);
    runClaude.next(claudeSucceeded);
    runOnFargate.next(claudeSucceeded);
    const definition = validateInput.next(createSession).next(
      new Choice(this, 'ChooseRuntime')
        .when(Condition.stringEquals('$.session.runtime', 'fargate'), runOnFargate)
        .otherwise(runClaude),
    );

    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      definitionBody: DefinitionBody.fromChainable(definition),
      stateMachineType: StateMachineType.STANDARD,
      queryLanguage: QueryLanguage.JSON_PATH,
      timeout: props.timeout ?? Duration.hours(9),
      tracingEnabled: true,
      // Execution data holds the prompt: logs keep the events, never the data.
      logs: { destination: logGroup, level: LogLevel.ALL, includeExecutionData: false },
    });
    // The table only, not its indexes: the workflow writes items and reads nothing.
    Grant.addToPrincipal({
      grantee: this.stateMachine,
      actions: ['dynamodb:PutItem', 'dynamodb:UpdateItem'],
      resourceArns: [props.table.tableArn],
    });
  }
}
