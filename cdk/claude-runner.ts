import { Duration, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import { DockerImageCode, DockerImageFunction, Tracing, type IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { TranscriptBucket } from './transcript-bucket.js';
import type { PermissionMode } from '../lib/claude/claude-args.js';
import { runnerEnvironment } from '../lib/claude/runner-environment.js';
import { acknowledgeFunctionBasics } from './service-function.js';
import { claudeCodeVersion, stageRunnerImage } from './runner-image.js';

export interface ClaudeRunnerProps {
  /** Holds the Anthropic API key: a plain string, or JSON with ANTHROPIC_API_KEY. */
  readonly apiKeySecret: ISecret;
  /** Where milestone transcripts are kept between tasks (and patches of failed pushes). */
  readonly transcripts: TranscriptBucket;
  /** The git token for https workspaces: a plain string, or JSON with GIT_TOKEN. @default none: only public or local repositories */
  readonly gitTokenSecret?: ISecret;
  /** @default 3008 MB: the CLI and the tools it runs want memory and the CPU that comes with it */
  readonly memorySize?: number;
  /** @default 5 minutes without output before the CLI is treated as hung */
  readonly idleTimeout?: Duration;
  /** @default 2, the CLI's own API retries (CLAUDE_CODE_MAX_RETRIES) */
  readonly maxApiRetries?: number;
  /** @default RetentionDays.ONE_MONTH */
  readonly logRetention?: RetentionDays;
  /** The only tools Claude may use. @default Read, Glob, Grep, Edit, Write (no shell, no web) */
  readonly tools?: readonly string[];
  /** @default 'acceptEdits' */
  readonly permissionMode?: PermissionMode;
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
      ephemeralStorageSize: Size.gibibytes(2),
      timeout: Duration.minutes(15),
      tracing: Tracing.ACTIVE,
      logGroup,
      environment: {
        ...runnerEnvironment({
          apiKeySecretArn: props.apiKeySecret.secretArn,
          transcriptBucket: props.transcripts.bucket.bucketName,
          gitTokenSecretArn: props.gitTokenSecret?.secretArn,
          idleTimeoutMs: props.idleTimeout?.toMilliseconds(),
          maxApiRetries: props.maxApiRetries,
          tools: props.tools,
          permissionMode: props.permissionMode,
        }),
        POWERTOOLS_SERVICE_NAME: 'claude-sessions-runner',
      },
    });
    props.apiKeySecret.grantRead(fn);
    props.transcripts.grantReadWrite(fn);
    props.transcripts.grantPatchWrites(fn);
    props.gitTokenSecret?.grantRead(fn);
    acknowledgeFunctionBasics(this);
    this.function = fn;
  }
}
