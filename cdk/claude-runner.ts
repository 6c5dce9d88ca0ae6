import { Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { DockerImageCode, DockerImageFunction, Tracing, type IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { grantRunner, runnerEnvironmentOf, warnAboutRunnerSettings, type RunnerSettingsProps } from './runner-settings.js';
import { SHELL_TOOLS } from '../lib/sessions/session-limits.js';
import { acknowledgeFunctionBasics } from './service-function.js';
import { claudeCodeVersion, stageRunnerImage } from './runner-image.js';

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
}

/**
 * The container Lambda that runs the real Claude CLI. Synth bundles the image's code
 * (cdk/runner-image.ts); Docker builds the image at deploy time only.
 */
export class ClaudeRunner extends Construct {
  readonly function: IFunction;
  readonly image: DockerImageAsset;

  constructor(scope: Construct, id: string, props: ClaudeRunnerProps) {
    super(scope, id);
    const shell = (props.tools ?? []).filter((t) => SHELL_TOOLS.includes(t));
    if (shell.length && !props.shellOnLambda) {
      throw new Error(`tools names ${shell.join(', ')} for the Lambda runner, where a shell runs as the runner and can read its role's credentials: set shellOnLambda to accept that, or run such sessions on Fargate`);
    }
    warnAboutRunnerSettings(this, props);
    // One image, two entry points: this Lambda, and the Fargate task (cdk/fargate-runner.ts).
    this.image = new DockerImageAsset(this, 'Image', {
      directory: stageRunnerImage({ bundle: Stack.of(this).bundlingRequired }),
      buildArgs: { CLAUDE_CODE_VERSION: claudeCodeVersion() },
      platform: Platform.LINUX_AMD64,
    });
    const logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const fn = new DockerImageFunction(this, 'Function', {
      description: 'Runs the Claude Code CLI headless for one session',
      code: DockerImageCode.fromEcr(this.image.repository, { tagOrDigest: this.image.imageTag }),
      memorySize: props.memorySize ?? 3008,
      reservedConcurrentExecutions: props.reservedConcurrency,
      ephemeralStorageSize: Size.gibibytes(2),
      timeout: Duration.minutes(15),
      tracing: Tracing.ACTIVE,
      logGroup,
      environment: { ...runnerEnvironmentOf(props), POWERTOOLS_SERVICE_NAME: 'claude-sessions-runner' },
    });
    grantRunner(fn, props);
    acknowledgeFunctionBasics(this);
    this.function = fn;
  }
}
