import { Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import { DockerImageCode, DockerImageFunction, Tracing, type IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { grantRunner, runnerEnvironmentOf, warnAboutRunnerSettings, type RunnerSettingsProps } from './runner-settings.js';
import { SHELL_TOOLS } from '../lib/sessions/session-limits.js';
import { acknowledgeFunctionBasics, TRACES_WITHOUT_PAYLOADS } from './service-function.js';
import { claudeCodeVersion, stageRunnerImage } from './runner-image.js';
import { DEFAULT_RUNNER_ARCHITECTURE, runnerPlatform, type RunnerArchitecture } from './runner-architecture.js';

export interface ClaudeRunnerProps extends RunnerSettingsProps {
  /** @default 3008 MB: the CLI and the tools it runs want memory and the CPU that comes with it */
  readonly memorySize?: number;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
  /**
   * Reserved concurrency: at most this many Lambda sessions run at once, and the rest of the
   * account's concurrency stays for the other functions (the API, CreateSession, the reaper).
   * @default none: the runner shares the account's unreserved concurrency
   */
  readonly reservedConcurrency?: number;
  /** The CPU the image is built for and the function runs on; the Fargate task takes the same. @default arm64 */
  readonly architecture?: RunnerArchitecture;
}

/**
 * The container Lambda that runs the real Claude CLI. Synth bundles the image's code
 * (cdk/runner-image.ts); Docker builds the image at deploy time only.
 */
export class ClaudeRunner extends Construct {
  readonly function: IFunction;
  readonly image: DockerImageAsset;
  readonly architecture: RunnerArchitecture;

  constructor(scope: Construct, id: string, props: ClaudeRunnerProps) {
    super(scope, id);
    const shell = (props.tools ?? []).filter((t) => SHELL_TOOLS.includes(t));
    if (shell.length && !props.shellOnLambda) {
      throw new Error(`tools names ${shell.join(', ')} for the Lambda runner, where a shell runs as the runner and can read its role's credentials: set shellOnLambda to accept that, or run such sessions on Fargate`);
    }
    warnAboutRunnerSettings(this, props);
    this.architecture = props.architecture ?? DEFAULT_RUNNER_ARCHITECTURE;
    const platform = runnerPlatform(this.architecture);
    // One image, two entry points: this Lambda, and the Fargate task (cdk/fargate-runner.ts).
    // One platform, so one manifest: the CDK CLI builds without attestations (BUILDX_NO_DEFAULT_ATTESTATIONS),
    // whose image index Lambda refuses.
    this.image = new DockerImageAsset(this, 'Image', {
      directory: stageRunnerImage({ bundle: Stack.of(this).bundlingRequired }),
      buildArgs: { CLAUDE_CODE_VERSION: claudeCodeVersion() },
      platform: platform.image,
    });
    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const fn = new DockerImageFunction(this, 'Function', {
      description: 'Runs the Claude Code CLI headless for one session',
      code: DockerImageCode.fromEcr(this.image.repository, { tagOrDigest: this.image.imageTag }),
      architecture: platform.lambda,
      memorySize: props.memorySize ?? 3008,
      reservedConcurrentExecutions: props.reservedConcurrency,
      ephemeralStorageSize: Size.gibibytes(2),
      timeout: Duration.minutes(15),
      tracing: Tracing.ACTIVE,
      logGroup,
      environment: { ...runnerEnvironmentOf(props), POWERTOOLS_SERVICE_NAME: 'claude-sessions-runner', ...TRACES_WITHOUT_PAYLOADS },
    });
    grantRunner(fn, props);
    acknowledgeFunctionBasics(this);
    this.function = fn;
  }
}
