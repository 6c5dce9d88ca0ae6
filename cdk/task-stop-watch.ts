import { Duration } from 'aws-cdk-lib';
import type { ICluster, TaskDefinition } from 'aws-cdk-lib/aws-ecs';
import { Rule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Validations } from 'aws-cdk-lib';
import { Construct } from 'constructs';
import { ServiceFunction } from './service-function.js';

export interface TaskStopWatchProps {
  /** Where the runner's tasks run. */
  readonly cluster: ICluster;
  /** The runner's task definition: its family's tasks are watched. */
  readonly taskDefinition: TaskDefinition;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/**
 * Fails the state waiting on a Fargate task that stopped before it reported (an image that could
 * not be pulled, out of memory, a crash), when ECS says it stopped, instead of at the heartbeat's
 * end (lib/claude/stopped-task.ts). The heartbeat stays the backstop: the event is best-effort.
 */
export class TaskStopWatch extends Construct {
  readonly function: NodejsFunction;
  readonly rule: Rule;

  constructor(scope: Construct, id: string, props: TaskStopWatchProps) {
    super(scope, id);
    this.function = new ServiceFunction(this, 'Service', {
      entry: 'functions/task-stopped/handler.ts',
      description: 'Fails the task token of a Fargate runner task that stopped before it reported',
      serviceName: 'claude-sessions-task-stopped',
      timeout: Duration.seconds(30),
      logRetention: props.logRetention,
    }).function;
    // Task-token actions take no resource: the token is the authority (IAM: SendTaskFailure is "*" only).
    this.function.addToRolePolicy(new PolicyStatement({ actions: ['states:SendTaskFailure'], resources: ['*'] }));
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
      reason: 'states:SendTaskFailure supports no resource-level permission: the task token in the stopped task\'s event is what it may answer.',
    });

    // No dead-letter queue: a lost event leaves the heartbeat to fail the state, as before.
    this.rule = new Rule(this, 'TaskStopped', {
      description: 'claude-sessions: fail the state waiting on a runner task that stopped',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: { clusterArn: [props.cluster.clusterArn], lastStatus: ['STOPPED'], group: [`family:${props.taskDefinition.family}`] },
      },
      targets: [new LambdaFunction(this.function, { retryAttempts: 4, maxEventAge: Duration.minutes(10) })],
    });
  }
}
