import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import {
  AccessLogFormat,
  AuthorizationType,
  LambdaRestApi,
  LogGroupLogDestination,
  MethodLoggingLevel,
  type RestApi,
} from 'aws-cdk-lib/aws-apigateway';
import { Grant, type IGrantable } from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { TranscriptBucket } from './transcript-bucket.js';
import { ServiceFunction } from './service-function.js';
import type { SessionTable } from './session-table.js';
import { sessionPolicyEnvironment } from '../lib/sessions/session-creation.js';
import { idField } from '../lib/sessions/execution-input.js';
import type { ProjectLimits } from '../lib/sessions/project-limits.js';

export interface SessionApiProps {
  /** Read by the routes; its milestone items written (open, close). */
  readonly sessions: SessionTable;
  readonly stateMachine: IStateMachine;
  /** Tagged for expiry when a milestone closes. */
  readonly transcripts: TranscriptBucket;
  /** Checked before starting an execution (429), as the workflow enforces it. @default no limit */
  readonly maxConcurrentSessions?: number;
  /** Checked before starting an execution (429), as CreateSession enforces it. @default no budget */
  readonly monthlyBudgetUsd?: number;
  /** The tools a session may name in its input. @default DEFAULT_TOOLS (no shell, no web) */
  readonly allowedTools?: readonly string[];
  /** Branches (or patterns, `*` any characters) a session's workspace may not push. @default main, master */
  readonly protectedBranches?: readonly string[];
  /** A Lambda session may have a shell (SessionPolicy.shellOnLambda). @default false */
  readonly shellOnLambda?: boolean;
  /** Caps on maxBudgetUsd, timeoutSeconds and the runtime, by project (SessionPolicy.projectLimits). @default none */
  readonly projectLimits?: ProjectLimits;
  /** @default 10 requests per second, bursts of 20 */
  readonly throttle?: { rateLimit: number; burstLimit: number };
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * The REST API: one IAM-authorised {proxy+} in front of one function that routes
 * (so 404 and 405 are the same on AWS and under `claude-sessions serve`). Every route that
 * touches a project's data has the project in its path, so `execute-api:Invoke` on
 * `…/projects/<id>/*` is who may use that project (grantProjectAccess, docs/SECURITY.md).
 */
export class SessionApi extends Construct {
  readonly api: RestApi;
  readonly function: NodejsFunction;

  constructor(scope: Construct, id: string, props: SessionApiProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/api/handler.ts',
      description: 'claude-sessions HTTP API',
      serviceName: 'claude-sessions-api',
      memorySize: 512,
      timeout: Duration.seconds(15),
      logRetention: props.logRetention,
      environment: {
        TABLE_NAME: props.sessions.table.tableName,
        STATE_MACHINE_ARN: props.stateMachine.stateMachineArn,
        TRANSCRIPT_BUCKET: props.transcripts.bucket.bucketName,
        ...sessionPolicyEnvironment(props),
      },
    }).function;
    // Reads of the table and its indexes, starting this one state machine, and opening and
    // closing milestones: writes to MILESTONE# items only, never to a session.
    props.sessions.grantReadSessions(this.function);
    props.stateMachine.grantStartExecution(this.function);
    props.sessions.grantMilestoneWrites(this.function);
    props.transcripts.grantMarkClosed(this.function);

    const accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.api = new LambdaRestApi(this, 'Api', {
      handler: this.function,
      proxy: true,
      description: 'Start and read claude-sessions (IAM-authorised)',
      cloudWatchRole: true,
      defaultMethodOptions: { authorizationType: AuthorizationType.IAM },
      deployOptions: {
        stageName: 'v1',
        throttlingRateLimit: props.throttle?.rateLimit ?? 10,
        throttlingBurstLimit: props.throttle?.burstLimit ?? 20,
        tracingEnabled: true,
        loggingLevel: MethodLoggingLevel.ERROR,
        dataTraceEnabled: false, // request bodies carry prompts
        accessLogDestination: new LogGroupLogDestination(accessLogs),
        accessLogFormat: AccessLogFormat.jsonWithStandardFields(),
      },
    });
  }

  /**
   * Lets a principal call every route of one project, and nothing of another: `execute-api:Invoke`
   * on `<api>/<stage>/*` + `/projects/<projectId>` and below. Not `GET /projects`, which lists every
   * project's id. The trailing `/` matters: IAM's `*` crosses `/`, so `…/projects/demo*` would also allow `demo-evil`.
   */
  grantProjectAccess(grantee: IGrantable, projectId: string): Grant {
    const parsed = idField.safeParse(projectId);
    if (!parsed.success) throw new Error(`grantProjectAccess: projectId ${JSON.stringify(projectId)} ${parsed.error.issues[0]!.message}`);
    const stage = this.api.deploymentStage.stageName;
    return Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [`/projects/${projectId}`, `/projects/${projectId}/*`].map((path) => this.api.arnForExecuteApi('*', path, stage)),
    });
  }
}
