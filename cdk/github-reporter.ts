import { Duration } from 'aws-cdk-lib';
import { Rule, type IEventBus } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { EVENT_SOURCE, SESSION_CLOSED } from '../lib/sessions/session-events.js';
import { DEFAULT_GITHUB_API_URL } from '../lib/github/github-client.js';
import { DeadLetterQueue } from './dead-letter-queue.js';
import { ServiceFunction } from './service-function.js';
import type { GitTokenMinter } from './git-token-minter.js';
import type { SessionTable } from './session-table.js';

export interface GitHubReporterProps {
  /** Where "Session Closed" is put (SessionEvents.eventBus). */
  readonly eventBus: IEventBus;
  /** Read for Claude's reply, which the event leaves out. */
  readonly sessions: SessionTable;
  /** The token the reporter calls GitHub with: the deployment's git token (gitTokenSecretName). Or `tokenMinter`. */
  readonly tokenSecret?: ISecret;
  /**
   * A GitHub App's report minter (githubAppSecretName, purpose `report`): each report's token minted
   * for its repository, issues and pull requests write. The reporter never reads the App's secret.
   */
  readonly tokenMinter?: GitTokenMinter;
  /** GitHub's REST API. @default https://api.github.com */
  readonly apiUrl?: string;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * A GitHub session's pull request and comment, made from its "Session Closed" event by a function
 * of its own, outside the run: it reads the session and its token, and writes to GitHub (to the table
 * only its milestone's pull request), so a GitHub outage delays a report (retried, then kept in the
 * dead-letter queue) and changes no session's record.
 */
export class GitHubReporter extends Construct {
  readonly function: NodejsFunction;
  readonly rule: Rule;
  readonly deadLetterQueue: DeadLetterQueue;

  constructor(scope: Construct, id: string, props: GitHubReporterProps) {
    super(scope, id);
    if (!props.tokenSecret === !props.tokenMinter) throw new Error('GitHubReporter needs tokenSecret or tokenMinter, one of them: GitHub answers no anonymous write');
    if (props.tokenMinter && props.tokenMinter.purpose !== 'report') throw new Error(`GitHubReporter's tokenMinter must mint report tokens, not ${props.tokenMinter.purpose}`);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/github-reporter/handler.ts',
      description: 'claude-sessions: the pull request and comment of a closed GitHub session',
      serviceName: 'claude-sessions-github-reporter',
      // Up to six REST calls of 20 s at most each.
      timeout: Duration.minutes(2),
      logRetention: props.logRetention,
      environment: {
        TABLE_NAME: props.sessions.table.tableName,
        ...(props.tokenMinter ? { REPORT_TOKEN_MINTER_ARN: props.tokenMinter.function.functionArn } : { GITHUB_TOKEN_SECRET_ARN: props.tokenSecret!.secretArn }),
        GITHUB_API_URL: props.apiUrl ?? DEFAULT_GITHUB_API_URL,
      },
    }).function;
    props.sessions.grantGetSession(this.function);
    // A milestone task's comment shows the milestone's running total (its tasks, by the milestone index).
    props.sessions.grantViewMilestones(this.function);
    // Its one write: the pull request it opened, bound to the milestone (only that one continues it).
    props.sessions.grantRecordPullRequests(this.function);
    if (props.tokenMinter) props.tokenMinter.grantMint(this.function);
    else props.tokenSecret!.grantRead(this.function);

    this.deadLetterQueue = new DeadLetterQueue(this, 'DeadLetters', { deadLettersOf: 'the GitHub reporter (its rule\'s deliveries and its failed reports)' });
    // A GitHub failure throws: Lambda tries the event twice more (about 1 and 2 minutes later), then keeps it here.
    this.function.configureAsyncInvoke({ retryAttempts: 2, maxEventAge: Duration.hours(6), onFailure: new SqsDestination(this.deadLetterQueue) });
    this.rule = new Rule(this, 'GitHubSessionClosed', {
      description: 'claude-sessions: report a closed GitHub session on GitHub',
      eventBus: props.eventBus,
      eventPattern: { source: [EVENT_SOURCE], detailType: [SESSION_CLOSED], detail: { trigger: ['github'] } },
      targets: [new LambdaFunction(this.function, { deadLetterQueue: this.deadLetterQueue, retryAttempts: 8, maxEventAge: Duration.hours(6) })],
    });
  }
}
