import { Duration, Validations } from 'aws-cdk-lib';
import { EventBus, type IEventBus } from 'aws-cdk-lib/aws-events';
import { FilterCriteria, FilterRule, StartingPosition } from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { EVENT_SOURCE, SESSION_CLOSED, SESSION_USAGE_RECORDED } from '../lib/sessions/session-events.js';
import { DeadLetterQueue } from './dead-letter-queue.js';
import { ServiceFunction } from './service-function.js';
import type { SessionTable } from './session-table.js';
import { METRIC_NAMESPACE, METRIC_SERVICE } from '../lib/sessions/session-events.js';

export interface SessionEventsProps {
  /** The session table, with a NEW_AND_OLD_IMAGES stream. */
  readonly sessions: SessionTable;
  /** @default the account's default event bus */
  readonly eventBus?: IEventBus;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * "Session Closed" on EventBridge and the session metrics, from the table's stream: every
 * path that closes a session (RecordUsage, CloseFailed, the reaper) writes the item out of
 * RUNNING exactly once, so one consumer sees them all and the workflow gains no state. A
 * stopped run's spend written after the close emits "Session Usage Recorded".
 */
export class SessionEvents extends Construct {
  readonly function: NodejsFunction;
  readonly eventBus: IEventBus;
  readonly deadLetterQueue: DeadLetterQueue;
  /** The pattern a rule uses to receive the event (docs/DEPLOYING.md: "Session Closed"). */
  static readonly sessionClosedPattern = { source: [EVENT_SOURCE], detailType: [SESSION_CLOSED] };
  /** Every event that carries spend: closes, and a stopped run's spend recorded after its close. */
  static readonly sessionSpendPattern = { source: [EVENT_SOURCE], detailType: [SESSION_CLOSED, SESSION_USAGE_RECORDED] };

  constructor(scope: Construct, id: string, props: SessionEventsProps) {
    super(scope, id);
    this.eventBus = props.eventBus ?? EventBus.fromEventBusName(this, 'DefaultBus', 'default');
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/events/handler.ts',
      description: 'Publishes "Session Closed" events and session metrics from the table stream',
      serviceName: METRIC_SERVICE,
      timeout: Duration.seconds(30),
      logRetention: props.logRetention,
      environment: { EVENT_BUS_NAME: this.eventBus.eventBusName, POWERTOOLS_METRICS_NAMESPACE: METRIC_NAMESPACE },
    }).function;
    this.eventBus.grantPutEventsTo(this.function);
    this.deadLetterQueue = new DeadLetterQueue(this, 'DeadLetters', { deadLettersOf: 'the stream consumer' });
    this.function.addEventSource(
      new DynamoEventSource(props.sessions.table, {
        startingPosition: StartingPosition.TRIM_HORIZON,
        batchSize: 100,
        maxBatchingWindow: Duration.seconds(1),
        bisectBatchOnError: true,
        reportBatchItemFailures: true,
        retryAttempts: 10,
        onFailure: new SqsDlq(this.deadLetterQueue),
        // Session items only: milestone items and leases are not sessions.
        filters: [FilterCriteria.filter({ dynamodb: { Keys: { sk: { S: FilterRule.isEqual('SESSION') } } } })],
      }),
    );
    Validations.of(this).acknowledge({
      id: `AwsSolutions::AwsSolutions-IAM5[Resource::*]`,
      reason: 'dynamodb:ListStreams supports no resource-level permission (the stream read actions are scoped to this table\'s stream); X-Ray has none either.',
    });
  }
}
