import { Duration } from 'aws-cdk-lib';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { ServiceFunction } from './service-function.js';
import type { SessionTable } from './session-table.js';

export interface SessionSweeperProps {
  /** Its RUNNING sessions found, closed, and the slots and leases they held released. */
  readonly sessions: SessionTable;
  /** The executions it asks about (DescribeExecution). */
  readonly stateMachine: IStateMachine;
  /** @default Duration.minutes(10) */
  readonly rate?: Duration;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * Closes sessions whose execution ended while the reaper never heard of it: EventBridge
 * delivers the status-change event best-effort, so a schedule asks DescribeExecution instead.
 */
export class SessionSweeper extends Construct {
  readonly function: NodejsFunction;
  readonly rule: Rule;

  constructor(scope: Construct, id: string, props: SessionSweeperProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/sweeper/handler.ts',
      description: 'Closes the sessions of executions that ended without closing them (a lost event)',
      serviceName: 'claude-sessions-sweeper',
      timeout: Duration.minutes(5),
      logRetention: props.logRetention,
      environment: { TABLE_NAME: props.sessions.table.tableName },
    }).function;
    props.sessions.grantRunningIndexReads(this.function);
    props.sessions.grantCloseSessions(this.function);
    props.stateMachine.grantExecution(this.function, 'states:DescribeExecution');

    // No dead-letter queue: the next tick sweeps again whatever this one missed.
    this.rule = new Rule(this, 'Schedule', {
      description: 'claude-sessions: close the sessions of executions that ended without closing them',
      schedule: Schedule.rate(props.rate ?? Duration.minutes(10)),
      targets: [new LambdaFunction(this.function, { retryAttempts: 0 })],
    });
  }
}
