import { Annotations, type Duration } from 'aws-cdk-lib';
import { Repository, type IRepository } from 'aws-cdk-lib/aws-codecommit';
import { Effect, PolicyStatement, type IGrantable } from 'aws-cdk-lib/aws-iam';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { PermissionMode } from '../lib/claude/claude-args.js';
import { runnerEnvironment, type RunnerSettings } from '../lib/claude/runner-environment.js';
import type { TranscriptBucket } from './transcript-bucket.js';
import type { SessionTable } from './session-table.js';
import type { ModelAccess } from './model-access.js';
import type { GitTokenMinter } from './git-token-minter.js';
import type { ModelSettings } from '../lib/claude/model-provider.js';
import { AWS_REGION_NAME, CODECOMMIT_REPOSITORY_NAME } from '../lib/sessions/codecommit-url.js';
import type { Construct } from 'constructs';
import { DEFAULT_PROTECTED_BRANCHES } from '../lib/sessions/session-creation.js';

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
  /** A GitHub App's token minter, asked instead of a token secret (githubAppSecretName). @default none */
  readonly gitTokenMinter?: GitTokenMinter;
  /** Where that token may go: https URL prefixes of a host or an owner (`https://github.com/acme/`). Required with the token. */
  readonly gitTokenScopes?: readonly string[];
  /** Workspace repositories whose own Claude Code settings a session runs with (hooks, MCP servers, env …). @default none */
  readonly trustedSettingsRepositories?: readonly string[];
  /** What a workspace's clone may hold on disk, in MiB: past it the session fails before Claude runs. @default 1,024 */
  readonly maxCloneMiB?: number;
  /** CodeCommit repositories sessions may clone and push, signed for with the runner's own role. @default none */
  readonly codeCommitRepositories?: readonly IRepository[];
  /** Branches (or patterns, `*` any characters) no session may push: on CodeCommit also denied by IAM. @default main, master */
  readonly protectedBranches?: readonly string[];
  /** @default 5 minutes without output before the CLI is treated as hung */
  readonly idleTimeout?: Duration;
  /** @default 2, the CLI's own API retries (CLAUDE_CODE_MAX_RETRIES) */
  readonly maxApiRetries?: number;
  /** The tools Claude may use when a session names none. @default Read, Glob, Grep, Edit, Write (no shell, no web) */
  readonly tools?: readonly string[];
  /** @default 'acceptEdits'; `bypassPermissions` needs trustedInputsOnly */
  readonly permissionMode?: PermissionMode;
  /** Permission rules the CLI allows unasked, e.g. `Bash(npm test:*)`, `Bash(git diff:*)`. @default none */
  readonly permissionRules?: readonly string[];
  /** This deployment runs no untrusted prompt or repository: required for `bypassPermissions`. @default false */
  readonly trustedInputsOnly?: boolean;
  /** The Lambda runner may offer a shell (Bash): it runs as the runner and can read its role's credentials. @default false */
  readonly shellOnLambda?: boolean;
  /** Where a runner records a run its execution ended under (an abort, a timeout). @default none: such a run's spend is not recorded */
  readonly sessions?: SessionTable;
}

/** The runner's environment (lib/claude/runner-environment.ts) from its props. */
export function runnerEnvironmentOf(props: RunnerSettingsProps, extra: Pick<RunnerSettings, 'heartbeatIntervalSeconds' | 'separateUser'> = {}): Record<string, string> {
  return runnerEnvironment({
    apiKeySecretArn: props.apiKeySecret?.secretArn,
    model: props.model,
    modelRoleArn: props.modelAccess?.role.roleArn,
    transcriptBucket: props.transcripts.bucket.bucketName,
    gitTokenSecretArn: props.gitTokenSecret?.secretArn,
    gitTokenMinterArn: props.gitTokenMinter?.function.functionArn,
    gitTokenScopes: props.gitTokenScopes,
    trustedSettingsRepositories: props.trustedSettingsRepositories,
    maxCloneMiB: props.maxCloneMiB,
    idleTimeoutMs: props.idleTimeout?.toMilliseconds(),
    maxApiRetries: props.maxApiRetries,
    tools: props.tools,
    permissionMode: props.permissionMode,
    permissionRules: props.permissionRules,
    trustedInputsOnly: props.trustedInputsOnly,
    sessionTable: props.sessions?.table.tableName,
    ...extra,
  });
}

/** Says at synth what a runner's settings let a session do that a reader of the stack should know. */
export function warnAboutRunnerSettings(scope: Construct, props: RunnerSettingsProps): void {
  if (props.permissionMode === 'bypassPermissions') {
    Annotations.of(scope).addWarningV2('claude-sessions:bypassPermissions', 'permissionMode bypassPermissions: every tool call runs unasked (trustedInputsOnly is set); a prompt or repository from anyone else can read and send whatever the runner reaches');
  }
}

/** What a runner may reach: its secrets (or the model role), the transcripts, and where a failed push's patch goes. */
export function grantRunner(grantee: IGrantable, props: RunnerSettingsProps): void {
  props.apiKeySecret?.grantRead(grantee);
  props.modelAccess?.grantAssume(grantee);
  props.transcripts.grantReadWrite(grantee);
  props.transcripts.grantPatchWrites(grantee);
  props.gitTokenSecret?.grantRead(grantee);
  props.gitTokenMinter?.grantMint(grantee);
  props.sessions?.grantStoppedRunWrites(grantee);
  const repositories = props.codeCommitRepositories ?? [];
  for (const repository of repositories) repository.grantPullPush(grantee);
  // CreateSession refuses a protected branch; IAM refuses the push too, whatever the runner does.
  const protectedBranches = props.protectedBranches ?? DEFAULT_PROTECTED_BRANCHES;
  if (repositories.length && protectedBranches.length) {
    grantee.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({
      effect: Effect.DENY,
      actions: ['codecommit:GitPush'],
      resources: repositories.map((r) => r.repositoryArn),
      // As the CodeCommit User Guide's "limit pushes and merges to branches" policy: a push that names a ref.
      conditions: {
        StringLikeIfExists: { 'codecommit:References': protectedBranches.map((b) => `refs/heads/${b}`) },
        Null: { 'codecommit:References': 'false' },
      },
    }));
  }
}

const CODECOMMIT_ARN = new RegExp(`^arn:aws(?:-[a-z]+)*:codecommit:${AWS_REGION_NAME.source.slice(1, -1)}:\\d{12}:${CODECOMMIT_REPOSITORY_NAME.source.slice(1)}`);

/**
 * The CodeCommit repositories the runners may pull and push (the stack prop and context
 * `codeCommitRepositories`): names in the stack's account and region, or ARNs. A bad one fails the synth.
 */
export function codeCommitRepositories(scope: Construct, namesOrArns: readonly string[] = []): IRepository[] {
  const bad = namesOrArns.filter((r) => !CODECOMMIT_REPOSITORY_NAME.test(r) && !CODECOMMIT_ARN.test(r));
  if (bad.length) {
    throw new Error(`codeCommitRepositories must be CodeCommit repository names (up to 100 letters, digits, . _ -) or repository ARNs, not ${bad.map((r) => JSON.stringify(r)).join(', ')}`);
  }
  return [...new Set(namesOrArns)].map((r, i) =>
    r.startsWith('arn:') ? Repository.fromRepositoryArn(scope, `CodeCommitRepository${i}`, r) : Repository.fromRepositoryName(scope, `CodeCommitRepository${i}`, r));
}
