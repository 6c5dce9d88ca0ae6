import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import { FlowLogDestination, SubnetType, Vpc, type IVpc } from 'aws-cdk-lib/aws-ec2';
import type { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import { Cluster, ContainerImage, ContainerInsights, FargateTaskDefinition, LogDrivers, OperatingSystemFamily, type ContainerDefinition } from 'aws-cdk-lib/aws-ecs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { grantRunner, runnerEnvironmentOf, type RunnerSettingsProps } from './runner-settings.js';
import { DEFAULT_RUNNER_ARCHITECTURE, runnerPlatform, type RunnerArchitecture } from './runner-architecture.js';

export interface FargateRunnerProps extends RunnerSettingsProps {
  readonly image: DockerImageAsset;
  /** The CPU the image was built for. @default arm64 */
  readonly architecture?: RunnerArchitecture;
  /** @default a new VPC with public subnets only: tasks get a public IP, no NAT gateway is paid for */
  readonly vpc?: IVpc;
  /** @default 2048 (2 vCPU) */
  readonly cpu?: number;
  /** @default 8192 MiB */
  readonly memoryLimitMiB?: number;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
}

/** Long sessions (up to 8 h): the runner image as a Fargate task that answers a task token. */
export class FargateRunner extends Construct {
  readonly cluster: Cluster;
  readonly taskDefinition: FargateTaskDefinition;
  readonly container: ContainerDefinition;
  readonly vpc: IVpc;
  readonly subnetType: SubnetType;

  constructor(scope: Construct, id: string, props: FargateRunnerProps) {
    super(scope, id);
    this.vpc =
      props.vpc ??
      new Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 0,
        subnetConfiguration: [{ name: 'public', subnetType: SubnetType.PUBLIC }],
        flowLogs: { all: { destination: FlowLogDestination.toCloudWatchLogs(new LogGroup(this, 'FlowLogs', { retention: RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY })) } },
      });
    this.subnetType = props.vpc ? SubnetType.PRIVATE_WITH_EGRESS : SubnetType.PUBLIC;
    this.cluster = new Cluster(this, 'Cluster', { vpc: this.vpc, containerInsightsV2: ContainerInsights.ENABLED });
    this.taskDefinition = new FargateTaskDefinition(this, 'Task', {
      cpu: props.cpu ?? 2048,
      memoryLimitMiB: props.memoryLimitMiB ?? 8192,
      ephemeralStorageGiB: 21,
      runtimePlatform: { cpuArchitecture: runnerPlatform(props.architecture ?? DEFAULT_RUNNER_ARCHITECTURE).ecs, operatingSystemFamily: OperatingSystemFamily.LINUX },
    });
    this.container = this.taskDefinition.addContainer('Runner', {
      image: ContainerImage.fromDockerImageAsset(props.image),
      // The Lambda base image's entry point runs the Lambda runtime; the task runs Node directly.
      entryPoint: ['node'],
      command: ['/var/task/task.mjs'],
      logging: LogDrivers.awsLogs({
        streamPrefix: 'session',
        logGroup: new LogGroup(this, 'Logs', { retention: props.logRetention ?? RetentionDays.ONE_MONTH, removalPolicy: RemovalPolicy.DESTROY }),
      }),
      readonlyRootFilesystem: false,
      // The task runs as root; each session's CLI as a user of its own, which cannot read the task's environment.
      environment: runnerEnvironmentOf(props, { heartbeatIntervalSeconds: 30, separateUser: true }),
    });
    grantRunner(this.taskDefinition.taskRole, props);
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions::AwsSolutions-IAM5[Resource::*]',
      reason: 'Actions that support no resource-level permission: ecr:GetAuthorizationToken (the execution role pulls the image) and states:SendTask* (the task role answers its task token, which is the capability).',
    });
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions::AwsSolutions-ECS2',
      reason: 'The environment holds no secret: the secret ARN (the key is read at run time), a retry count and an interval.',
    });
  }
}

/**
 * The finding cdk-nag reports for ecs:RunTask on every revision of a task definition
 * family (family ARN + ":*"), as it spells it, for a task definition's logical id.
 */
export function taskFamilyRevisionsFinding(taskDefinitionLogicalId: string): string {
  const ref = { Ref: taskDefinitionLogicalId };
  const part = (i: number) => JSON.stringify({ 'Fn::Select': [i, { 'Fn::Split': [':', ref] }] });
  const family = (i: number) => JSON.stringify({ 'Fn::Select': [i, { 'Fn::Split': ['/', { 'Fn::Select': [5, { 'Fn::Split': [':', ref] }] }] }] });
  return `IAM5[Resource::arn:${part(1)}:${part(2)}:${part(3)}:${part(4)}:${family(0)}/${family(1)}:*]`;
}
