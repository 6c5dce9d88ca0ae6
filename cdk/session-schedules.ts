import { Duration, RemovalPolicy, TimeZone, Validations } from 'aws-cdk-lib';
import { Schedule, ScheduleExpression, ScheduleGroup, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { StepFunctionsStartExecution } from 'aws-cdk-lib/aws-scheduler-targets';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { ScheduleEntry } from '../lib/sessions/schedule-entry.js';

export interface SessionSchedulesProps {
  readonly stateMachine: IStateMachine;
  readonly schedules: readonly ScheduleEntry[];
}

/** EventBridge Scheduler runs: one schedule per entry, in one group, with retries and a DLQ. */
export class SessionSchedules extends Construct {
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: SessionSchedulesProps) {
    super(scope, id);
    const group = new ScheduleGroup(this, 'Group', { removalPolicy: RemovalPolicy.DESTROY });
    this.deadLetterQueue = new Queue(this, 'DeadLetters', {
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SQS3',
      reason: 'This queue is the dead-letter queue of the schedules; it has none of its own.',
    });
    for (const entry of props.schedules) {
      // The target's role may start this one state machine and send to this one queue.
      const target = new StepFunctionsStartExecution(props.stateMachine, {
        input: ScheduleTargetInput.fromObject(entry.input),
        deadLetterQueue: this.deadLetterQueue,
        retryAttempts: 3,
        maxEventAge: Duration.hours(1),
      });
      new Schedule(this, entry.name, {
        scheduleGroup: group,
        description: `claude-sessions: ${entry.name} for project ${entry.input.projectId}`,
        schedule: ScheduleExpression.expression(entry.expression, entry.timezone ? TimeZone.of(entry.timezone) : undefined),
        target,
        enabled: entry.enabled,
      });
    }
  }
}
