import { Duration, RemovalPolicy, TimeZone } from 'aws-cdk-lib';
import { Schedule, ScheduleExpression, ScheduleGroup, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { StepFunctionsStartExecution } from 'aws-cdk-lib/aws-scheduler-targets';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { ScheduleEntry } from '../lib/sessions/schedule-entry.js';
import { DeadLetterQueue } from './dead-letter-queue.js';

export interface SessionSchedulesProps {
  readonly stateMachine: IStateMachine;
  readonly schedules: readonly ScheduleEntry[];
}

/** EventBridge Scheduler runs: one schedule per entry, in one group, with retries and a DLQ. */
export class SessionSchedules extends Construct {
  readonly deadLetterQueue: DeadLetterQueue;

  constructor(scope: Construct, id: string, props: SessionSchedulesProps) {
    super(scope, id);
    const group = new ScheduleGroup(this, 'Group', { removalPolicy: RemovalPolicy.DESTROY });
    this.deadLetterQueue = new DeadLetterQueue(this, 'DeadLetters', { deadLettersOf: 'the schedules' });
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
