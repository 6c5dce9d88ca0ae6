import type { Duration } from 'aws-cdk-lib';
import type { IGrantable } from 'aws-cdk-lib/aws-iam';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { PermissionMode } from '../lib/claude/claude-args.js';
import { runnerEnvironment, type RunnerSettings } from '../lib/claude/runner-environment.js';
import type { TranscriptBucket } from './transcript-bucket.js';
import type { ModelAccess } from './model-access.js';
import type { ModelSettings } from '../lib/claude/model-provider.js';

/** What both runners (the Lambda and the Fargate task) are given: one set, so the two cannot drift. */
export interface RunnerSettingsProps {
  /** Holds the Anthropic API key: a plain string, or JSON with ANTHROPIC_API_KEY. None with Bedrock. */
  readonly apiKeySecret?: ISecret;
  /** Who serves Claude and which models. @default the Anthropic API, the CLI's default model */
  readonly model?: ModelSettings;
  /** Bedrock: the role each session's Claude invokes the model with. */
  readonly modelAccess?: ModelAccess;
  /** Where milestone transcripts are kept between tasks (and patches of failed pushes). */
  readonly transcripts: TranscriptBucket;
  /** The git token for https workspaces: a plain string, or JSON with GIT_TOKEN. @default none: only public or local repositories */
  readonly gitTokenSecret?: ISecret;
  /** @default 5 minutes without output before the CLI is treated as hung */
  readonly idleTimeout?: Duration;
  /** @default 2, the CLI's own API retries (CLAUDE_CODE_MAX_RETRIES) */
  readonly maxApiRetries?: number;
  /** The tools Claude may use when a session names none. @default Read, Glob, Grep, Edit, Write (no shell, no web) */
  readonly tools?: readonly string[];
  /** @default 'acceptEdits' */
  readonly permissionMode?: PermissionMode;
}

/** The runner's environment (lib/claude/runner-environment.ts) from its props. */
export function runnerEnvironmentOf(props: RunnerSettingsProps, extra: Pick<RunnerSettings, 'heartbeatIntervalSeconds'> = {}): Record<string, string> {
  return runnerEnvironment({
    apiKeySecretArn: props.apiKeySecret?.secretArn,
    model: props.model,
    modelRoleArn: props.modelAccess?.role.roleArn,
    transcriptBucket: props.transcripts.bucket.bucketName,
    gitTokenSecretArn: props.gitTokenSecret?.secretArn,
    idleTimeoutMs: props.idleTimeout?.toMilliseconds(),
    maxApiRetries: props.maxApiRetries,
    tools: props.tools,
    permissionMode: props.permissionMode,
    ...extra,
  });
}

/** What a runner may reach: its secrets (or the model role), the transcripts, and where a failed push's patch goes. */
export function grantRunner(grantee: IGrantable, props: RunnerSettingsProps): void {
  props.apiKeySecret?.grantRead(grantee);
  props.modelAccess?.grantAssume(grantee);
  props.transcripts.grantReadWrite(grantee);
  props.transcripts.grantPatchWrites(grantee);
  props.gitTokenSecret?.grantRead(grantee);
}
