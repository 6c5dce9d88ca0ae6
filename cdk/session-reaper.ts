import { Duration } from 'aws-cdk-lib';
import { Rule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { DeadLetterQueue } from './dead-letter-queue.js';
import { ServiceFunction } from './service-function.js';
import type { SessionTable } from './session-table.js';

export interface SessionReaperProps {
  /** Its sessions closed, and the slots and leases they held released. */
  readonly sessions: SessionTable;
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
  readonly deadLetterQueue: DeadLetterQueue;

  constructor(scope: Construct, id: string, props: SessionReaperProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/reaper/handler.ts',
      description: 'Closes the session of an aborted, timed-out or failed execution',
      serviceName: 'claude-sessions-reaper',
      timeout: Duration.seconds(30),
      logRetention: props.logRetention,
      environment: { TABLE_NAME: props.sessions.table.tableName },
    }).function;
    props.sessions.grantCloseSessions(this.function);
    // The input EventBridge leaves out of a large execution's event.
    props.stateMachine.grantExecution(this.function, 'states:DescribeExecution');

    const deadLetters = (this.deadLetterQueue = new DeadLetterQueue(this, 'DeadLetters', { deadLettersOf: 'the reaper rule' }));
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
