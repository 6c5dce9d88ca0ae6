import { Duration, Validations } from 'aws-cdk-lib';
import { AuthorizationType, LambdaIntegration, Resource, type Method } from 'aws-cdk-lib/aws-apigateway';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { GitHubTriggers } from '../lib/api/github-webhook.js';
import { ServiceFunction } from './service-function.js';
import type { SessionApi } from './session-api.js';
import type { SessionTable } from './session-table.js';
import type { TranscriptBucket } from './transcript-bucket.js';

export interface GitHubWebhookProps {
  /** The REST API the route is added to, beside its IAM-authorised {proxy+}. */
  readonly api: SessionApi;
  /** The one state machine a delivery may start. */
  readonly stateMachine: IStateMachine;
  /** Where an issue's milestone is opened, and a pull request's closed: MILESTONE# items only. */
  readonly sessions: SessionTable;
  /** A closed milestone's transcript is tagged for expiry. */
  readonly transcripts: TranscriptBucket;
  /** The webhook's secret (an existing Secrets Manager secret): the HMAC key of every delivery. */
  readonly secret: ISecret;
  readonly triggers: GitHubTriggers;
  /** The deployment's git token scopes: a repository under one is the session's workspace. @default none */
  readonly gitTokenScopes?: readonly string[];
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * `POST /webhooks/github`: GitHub cannot sign SigV4, so the route has no IAM authoriser; its own
 * function checks X-Hub-Signature-256 against the secret before reading anything else, and may only
 * read that secret, start executions of the one state machine, open, read and close milestones (an
 * issue's conversation; a closed pull request's), and tag a closed milestone's transcript.
 */
export class GitHubWebhook extends Construct {
  readonly function: NodejsFunction;
  readonly method: Method;
  /** What to give GitHub as the webhook URL. */
  readonly url: string;

  constructor(scope: Construct, id: string, props: GitHubWebhookProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/github-webhook/handler.ts',
      description: 'claude-sessions: a signed GitHub delivery starts at most one session',
      serviceName: 'claude-sessions-github',
      // GitHub gives a delivery 10 s before it records a failure.
      timeout: Duration.seconds(9),
      logRetention: props.logRetention,
      environment: {
        STATE_MACHINE_ARN: props.stateMachine.stateMachineArn,
        TABLE_NAME: props.sessions.table.tableName,
        TRANSCRIPT_BUCKET: props.transcripts.bucket.bucketName,
        WEBHOOK_SECRET_ARN: props.secret.secretArn,
        GITHUB_TRIGGERS: JSON.stringify(props.triggers),
        ...(props.gitTokenScopes?.length ? { GIT_TOKEN_SCOPES: props.gitTokenScopes.join(',') } : {}),
      },
    }).function;
    // GetSecretValue and DescribeSecret on the one secret; StartExecution on the one state machine.
    props.secret.grantRead(this.function);
    props.stateMachine.grantStartExecution(this.function);
    // PutItem (open) and UpdateItem (close) of MILESTONE# items, GetItem of them (is this the pull request's milestone?).
    props.sessions.grantMilestoneWrites(this.function);
    props.sessions.grantGetMilestone(this.function);
    props.transcripts.grantMarkClosed(this.function);

    // Its own resource: API Gateway matches /webhooks/github before the IAM-authorised {proxy+}.
    // `new Resource` and not root.addResource, which a proxying LambdaRestApi refuses.
    const webhooks = new Resource(this, 'Webhooks', { parent: props.api.api.root, pathPart: 'webhooks' });
    this.method = webhooks.addResource('github').addMethod('POST', new LambdaIntegration(this.function), { authorizationType: AuthorizationType.NONE });
    this.url = props.api.api.urlForPath('/webhooks/github');

    const reason = 'GitHub cannot sign SigV4 or present a Cognito token: the function verifies X-Hub-Signature-256 (HMAC-SHA256 of the raw body '
      + 'with the webhook secret from Secrets Manager, compared in constant time) before it reads the payload, and answers 401 to anything unsigned or '
      + 'wrongly signed; the stage is throttled, and the function may only read that secret, start executions of the one state machine and write milestone items.';
    Validations.of(this).acknowledge({ id: 'AwsSolutions::AwsSolutions-APIG4', reason });
    Validations.of(this).acknowledge({ id: 'AwsSolutions::AwsSolutions-COG4', reason });
  }

}
