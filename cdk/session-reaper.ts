import { Duration } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Rule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { Grant } from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Validations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { ServiceFunction } from './service-function.js';

export interface SessionReaperProps {
  readonly table: ITable;
  readonly stateMachine: IStateMachine;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * Closes sessions whose execution ended without closing them: an abort or an execution
 * timeout skips every Catch, so only an event from outside the execution can.
 */
export class SessionReaper extends Construct {
  readonly function: NodejsFunction;
  readonly rule: Rule;
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: SessionReaperProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/reaper/handler.ts',
      description: 'Closes the session of an aborted, timed-out or failed execution',
      serviceName: 'claude-sessions-reaper',
      timeout: Duration.seconds(30),
      logRetention: props.logRetention,
      environment: { TABLE_NAME: props.table.tableName },
    }).function;
    // A conditional close of an item, and the read of the session first (lib/sessions/session-reaper.ts
    // reads it to find the slot and lease it may hold): GetItem and UpdateItem on the table, nothing more.
    Grant.addToPrincipal({ grantee: this.function, actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], resourceArns: [props.table.tableArn] });

    const deadLetters = (this.deadLetterQueue = new Queue(this, 'DeadLetters', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    }));
    Validations.of(deadLetters).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SQS3',
      reason: 'This queue is the dead-letter queue of the reaper rule; it has none of its own.',
    });
    this.rule = new Rule(this, 'ExecutionEnded', {
      description: 'claude-sessions: close the session of an execution that ended without closing it',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        // FAILED too, as a safety net for a close that could not be written.
        detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [props.stateMachine.stateMachineArn] },
      },
      targets: [new LambdaFunction(this.function, { deadLetterQueue: deadLetters, retryAttempts: 8, maxEventAge: Duration.hours(6) })],
    });
  }
}
