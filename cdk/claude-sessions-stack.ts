import { CfnOutput, type Duration, Fn, RemovalPolicy, Stack, Token, Validations, type CfnElement, type StackProps } from 'aws-cdk-lib';
import { Grant, Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { ClaudeRunner } from './claude-runner.js';
import { SessionCreator } from './session-creator.js';
import { SessionTable } from './session-table.js';
import { TranscriptBucket } from './transcript-bucket.js';
import { SessionWorkflow } from './session-workflow.js';
import { SessionApi } from './session-api.js';
import { SessionSchedules } from './session-schedules.js';
import { SessionReaper } from './session-reaper.js';
import { SessionSweeper } from './session-sweeper.js';
import { TaskStopWatch } from './task-stop-watch.js';
import { FargateRunner, taskFamilyRevisionsFinding } from './fargate-runner.js';
import type { IVpc } from 'aws-cdk-lib/aws-ec2';
import { Topic, type ITopic } from 'aws-cdk-lib/aws-sns';
import { SessionEvents } from './session-events.js';
import { SessionMonitoring } from './session-monitoring.js';
import { checkedNotifyStatuses, SessionNotifications } from './session-notifications.js';
import type { ScheduleEntry } from '../lib/sessions/schedule-entry.js';
import type { ModelProvider } from '../lib/claude/claude-process.js';
import { parseModelSettings } from '../lib/claude/model-provider.js';
import { ModelAccess } from './model-access.js';
import { codeCommitRepositories } from './runner-settings.js';
import { checkedRunnerArchitecture, type RunnerArchitecture } from './runner-architecture.js';
import { checkedTokenScopes } from '../lib/claude/repository-scopes.js';
import { checkedPermissionRules } from '../lib/claude/claude-args.js';
import { checkedMaxCloneMiB } from '../lib/claude/runner-environment.js';
import { checkedBranchPatterns, checkedRetentionDays } from '../lib/sessions/session-creation.js';
import { assertStartAllowed } from '../lib/sessions/start-checks.js';
import { assertProjectRulesWithin, parseProjectLimits, type ProjectLimits } from '../lib/sessions/project-limits.js';
import { GitHubWebhook } from './github-webhook.js';
import { GitHubReporter } from './github-reporter.js';
import { GitTokenMinter } from './git-token-minter.js';
import { checkedGitHubApiUrl } from '../lib/github/github-client.js';
import { parseGitHubTriggers, type GitHubTriggers } from '../lib/api/github-webhook.js';

export interface ClaudeSessionsStackProps extends StackProps {
  /** Name of an existing Secrets Manager secret holding the Anthropic API key. @default a new secret to fill in */
  readonly apiKeySecretName?: string;
  /**
   * The customer-managed KMS key that encrypts that secret, if it is not the AWS-managed one:
   * the runners then get kms:Decrypt on it, through Secrets Manager only. Context `apiKeySecretKmsKeyArn`.
   */
  readonly apiKeySecretKmsKeyArn?: string;
  /**
   * Name of a Secrets Manager secret holding a git token (a plain string, or JSON with GIT_TOKEN)
   * for sessions whose workspace is an https repository. Context `gitTokenSecretName`. @default none
   */
  readonly gitTokenSecretName?: string;
  /**
   * Where that token may be sent: https URL prefixes of a host or an owner on it, such as
   * `https://github.com/acme/` (so never to `https://github.com/acme-evil/`). Another https
   * repository is cloned without it. Required with `gitTokenSecretName`. Context `gitTokenScopes` (comma-separated).
   */
  readonly gitTokenScopes?: readonly string[];
  /**
   * Workspace repositories (whole URLs) whose own Claude Code settings a session runs with: their
   * `.claude/settings.json`, `settings.local.json` and `.mcp.json` (hooks, MCP servers, `env`,
   * `apiKeyHelper`, permission rules), each of which runs with what the session can reach. Every
   * other repository is data: only its files and CLAUDE.md reach Claude. Never a session's input.
   * Context `trustedSettingsRepositories` (comma-separated). @default none
   */
  readonly trustedSettingsRepositories?: readonly string[];
  /**
   * What a workspace's clone may hold on disk, `.git` and work tree together, in MiB: git is
   * stopped past it and the session fails `WorkspaceCloneError` before Claude runs. Context
   * `maxCloneMiB`. @default 1,024 (the Lambda runner has 2 GiB of /tmp)
   */
  readonly maxCloneMiB?: number;
  /**
   * AWS CodeCommit repositories sessions may clone and push (https URLs), by name in the stack's
   * account and region or by ARN: both runners' roles get codecommit:GitPull and GitPush on
   * exactly these, and sign git's password themselves. Context `codeCommitRepositories` (comma-separated). @default none
   */
  readonly codeCommitRepositories?: readonly string[];
  /**
   * The tools a session may ask for in its input (`tools`), beyond none: e.g. Bash for a workspace
   * whose tests Claude should run. Context `allowedTools` (comma-separated). @default Read, Glob, Grep, Edit, Write
   */
  readonly allowedTools?: readonly string[];
  /**
   * Permission rules the CLI allows unasked, for the tools a session has: e.g. `Bash(npm test:*)`,
   * `Bash(git diff:*)`. In headless mode nobody can approve a command, so Bash runs only what a rule
   * (or the CLI's own read-only list) allows. Context `permissionRules` (comma-separated or a JSON array). @default none
   */
  readonly permissionRules?: readonly string[];
  /**
   * Whether a Lambda session may have a shell (Bash): on Lambda it runs as the runner and can read
   * the runner role's credentials from its environment. Without it, Bash is for runtime fargate, where
   * the CLI runs as a user of its own. Context `shellOnLambda` (true). @default false
   */
  readonly shellOnLambda?: boolean;
  /**
   * Branches (names or patterns such as `release/*`, `*` matching any characters) a session's workspace may not push; `[]`
   * allows any. Refused by CreateSession and the API naming `workspace.branch`, checked in
   * schedules at synth, and on CodeCommit denied by IAM too. Context `protectedBranches`
   * (comma-separated, `none` for none). @default main, master
   */
  readonly protectedBranches?: readonly string[];
  /** A VPC with private subnets (and egress) for Fargate tasks. @default a public-subnet VPC, no NAT */
  readonly vpc?: IVpc;
  /** Scheduled sessions (cdk.json context `schedules`). @default none */
  readonly schedules?: readonly ScheduleEntry[];
  /** How often the sweeper closes sessions whose execution ended unrecorded (a lost reaper event). @default Duration.minutes(10) */
  readonly sweepRate?: Duration;
  /**
   * Session closes that notify: "Session Closed" events of these statuses (`FAILED`, `TIMED_OUT`,
   * `ABORTED`, `COMPLETED`) go to an SNS topic the stack makes (output NotificationTopicArn) for
   * people to subscribe to. Context `notifyStatuses` (comma-separated). @default none: no topic
   */
  readonly notifyStatuses?: readonly string[];
  /** Where alarms notify (an SNS topic: email, chat, paging). @default none */
  readonly alarmTopic?: ITopic;
  /** The same, by ARN (cdk.json context `alarmTopicArn`). */
  readonly alarmTopicArn?: string;
  /**
   * Sessions one project may run at once; a project's own limit (its PROJECT#<id>/SLOTS item's
   * maxConcurrentSessions) wins. Context `maxConcurrentSessions`. @default no limit
   */
  readonly maxConcurrentSessions?: number;
  /** USD each project may spend per calendar month (UTC); a start past it is refused. Context `monthlyBudgetUsd`. @default none */
  readonly monthlyBudgetUsd?: number;
  /**
   * Caps by project id (`*`: every project, which a project's own entry overrides field by field):
   * the most a session may name as `maxBudgetUsd` and `timeoutSeconds` (one that names none gets the
   * cap) and the `runtimes` it may run on. Refused at the API and in CreateSession naming the field;
   * a schedule past them fails the synth. And `permissionRules`: the project's sessions get only
   * these of the deployment's `permissionRules` (one the deployment does not allow fails the synth,
   * naming the project and the rule). Context `projectLimits` (a JSON object). @default none
   */
  readonly projectLimits?: ProjectLimits;
  /**
   * Sessions the runner Lambda may run at once, all projects together: its reserved concurrency,
   * so long sessions cannot take the concurrency the API, CreateSession and the reaper need. A
   * RunClaude past it is throttled, retried, then closes its session FAILED
   * (`Lambda.TooManyRequestsException`). Lambda keeps 100 of the account's concurrency unreserved
   * (a new account may have 10 in all, and then no reservation deploys): ask for a higher quota
   * first. Context `runnerConcurrency`. @default none: the runner shares the account's concurrency
   */
  readonly runnerConcurrency?: number;
  /**
   * The CPU the runner image is built for and both runners run on: `arm64` (Graviton, as the
   * stack's other functions) or `x86_64`. The build runs no program of it but dnf, so any machine
   * with Docker builds either (docs/DEPLOYING.md). Context `runnerArchitecture`. @default arm64
   */
  readonly runnerArchitecture?: RunnerArchitecture;
  /** Runs of the CLI a session may take when the API fails transiently. Context `runAttempts`. @default 3 */
  readonly runAttempts?: number;
  /**
   * Keep the `byProject` index tables deployed before `byProjectSummary` have, for the first of the two
   * deploys an upgrade takes (CloudFormation adds or drops one index per update; docs/DEPLOYING.md#upgrading).
   * Context `keepLegacyProjectIndex`. @default false
   */
  readonly keepLegacyProjectIndex?: boolean;
  /**
   * Leave out the running index, for the first deploy of an upgrade from a stack without
   * `byProjectSummary` (docs/DEPLOYING.md#upgrading). Context `withoutRunningIndex`. @default false
   */
  readonly withoutRunningIndex?: boolean;
  /**
   * Keep the `byMilestone` index tables deployed before `byMilestoneSummary` have, for the first of
   * the two deploys an upgrade takes (docs/DEPLOYING.md#upgrading). Context `keepLegacyMilestoneIndex`. @default false
   */
  readonly keepLegacyMilestoneIndex?: boolean;
  /**
   * Leave out the `byMilestoneSummary` index, for the deploys of an upgrade that change another index
   * first (docs/DEPLOYING.md#upgrading). Context `withoutMilestoneSummaryIndex`. @default false
   */
  readonly withoutMilestoneSummaryIndex?: boolean;
  /**
   * Days after its start a closed session's item expires (DynamoDB TTL on `expiresAt`, set by its
   * close); a project's totals never expire, so `usage` and the budget still count it.
   * Context `sessionRetentionDays`. @default none: sessions are kept
   */
  readonly sessionRetentionDays?: number;
  /**
   * Who serves Claude: `anthropic` (an API key in Secrets Manager) or `bedrock` (IAM, no key).
   * Context `provider`. @default anthropic
   */
  readonly provider?: ModelProvider;
  /** The model, pinned: required with Bedrock (an inference profile id or ARN). Context `model`. @default the CLI's own (Anthropic) */
  readonly model?: string;
  /** Bedrock: the small, fast model the CLI uses for side tasks. Context `smallFastModel`. @default the model */
  readonly smallFastModel?: string;
  /** Bedrock: an application inference profile ARN per project, so the bill divides by project. Context `projectModels`. */
  readonly projectModels?: Record<string, string>;
  /**
   * Name of an existing Secrets Manager secret holding the GitHub webhook's secret (its string): with it
   * the API gets `POST /webhooks/github` (output GitHubWebhookUrl), without it no such route exists.
   * Needs `githubTriggers`. Context `githubWebhookSecretName`. @default none
   */
  readonly githubWebhookSecretName?: string;
  /**
   * What starts a session from GitHub: `repositories` (`owner/repo` to project id, required), `command`
   * (default `/claude`), `label` (default `claude`), `trustedAssociations` (default OWNER, MEMBER,
   * COLLABORATOR), `maxEventAgeMinutes` (default 60). Context `githubTriggers` (a JSON object). @default none
   */
  readonly githubTriggers?: Partial<GitHubTriggers> | string;
  /**
   * GitHub's REST API, where a GitHub session's pull request and comment are made (with the webhook
   * and `gitTokenSecretName`, whose token they use): GitHub Enterprise Server's is
   * `https://<host>/api/v3`. Context `githubApiUrl`. @default https://api.github.com
   */
  readonly githubApiUrl?: string;
  /**
   * Name of an existing Secrets Manager secret holding a GitHub App's credentials, JSON
   * `{"appId": "…", "privateKey": "<its PEM>"}`: each session's git gets an installation token of
   * its one repository (contents write) from a minter function, and with the webhook the reporter
   * one of the session's repository (issues and pull requests write) from another: the two minters
   * are the only readers of the key. Instead of `gitTokenSecretName`; `gitTokenScopes` still says
   * which repositories. Context `githubAppSecretName`. @default none
   */
  readonly githubAppSecretName?: string;
}

export class ClaudeSessionsStack extends Stack {
  readonly workflow: SessionWorkflow;
  readonly runner: ClaudeRunner;
  readonly creator: SessionCreator;
  readonly api: SessionApi;
  readonly events: SessionEvents;
  readonly monitoring: SessionMonitoring;

  constructor(scope: Construct, id: string, props: ClaudeSessionsStackProps = {}) {
    super(scope, id, props);
    const model = parseModelSettings(
      { provider: props.provider, model: props.model, smallFastModel: props.smallFastModel, projectModels: props.projectModels }, 'stack prop/context',
    );
    if (model.provider === 'bedrock' && (props.apiKeySecretName || props.apiKeySecretKmsKeyArn)) {
      throw new Error('apiKeySecretName is set but provider is bedrock: Claude then runs with IAM credentials and reads no API key');
    }
    // With Bedrock there is no key: each session's Claude gets the model role's credentials instead.
    const apiKeySecret = model.provider === 'anthropic' ? this.apiKeySecret(props.apiKeySecretName, props.apiKeySecretKmsKeyArn) : undefined;
    const modelAccess = model.provider === 'bedrock' ? new ModelAccess(this, 'ModelAccess', { settings: model }) : undefined;
    const protectedBranches = checkedBranchPatterns(props.protectedBranches, 'protectedBranches');
    const projectLimits = parseProjectLimits(props.projectLimits, 'projectLimits');
    // A project narrows the deployment's permission rules, never widens them.
    assertProjectRulesWithin(projectLimits, checkedPermissionRules(props.permissionRules, 'permissionRules'), 'projectLimits');
    // A schedule that would push a protected branch, or ask more than its project's caps, fails the synth, not every night:
    // the checks every start makes (startSession) that need no table.
    for (const schedule of props.schedules ?? []) {
      try {
        assertStartAllowed(schedule.input, { protectedBranches, projectLimits, allowedTools: props.allowedTools, shellOnLambda: props.shellOnLambda });
      } catch (err) {
        throw new Error(`schedule ${schedule.name}: ${(err as Error).message}`);
      }
    }
    const sessions = new SessionTable(this, 'Sessions', {
      keepLegacyProjectIndex: props.keepLegacyProjectIndex, withoutRunningIndex: props.withoutRunningIndex,
      keepLegacyMilestoneIndex: props.keepLegacyMilestoneIndex, withoutMilestoneSummaryIndex: props.withoutMilestoneSummaryIndex,
    });
    const transcripts = new TranscriptBucket(this, 'Transcripts');
    const creator = (this.creator = new SessionCreator(this, 'SessionCreator', {
      maxConcurrentSessions: props.maxConcurrentSessions, monthlyBudgetUsd: props.monthlyBudgetUsd, sessions, allowedTools: props.allowedTools,
      runAttempts: props.runAttempts, protectedBranches, shellOnLambda: props.shellOnLambda, projectLimits,
      sessionRetentionDays: checkedRetentionDays(props.sessionRetentionDays, 'sessionRetentionDays'),
    }));
    const gitTokenSecret = props.gitTokenSecretName ? Secret.fromSecretNameV2(this, 'GitToken', props.gitTokenSecretName) : undefined;
    const gitTokenScopes = checkedTokenScopes(props.gitTokenScopes, 'gitTokenScopes');
    if (gitTokenSecret && props.githubAppSecretName) {
      throw new Error('gitTokenSecretName or githubAppSecretName, not both: git gets one credential (a token for one repository, or the App\'s for each)');
    }
    const githubAppSecret = props.githubAppSecretName ? Secret.fromSecretNameV2(this, 'GitHubApp', props.githubAppSecretName) : undefined;
    if ((gitTokenSecret || githubAppSecret) && !gitTokenScopes?.length) {
      throw new Error(`gitTokenScopes must name where the git token may go (e.g. https://github.com/acme/) when ${gitTokenSecret ? 'gitTokenSecretName' : 'githubAppSecretName'} is set: it is sent to no other host`);
    }
    const githubApiUrl = checkedGitHubApiUrl(props.githubApiUrl, 'githubApiUrl');
    const gitTokenMinter = githubAppSecret
      ? new GitTokenMinter(this, 'GitTokenMinter', { purpose: 'git', appSecret: githubAppSecret, gitTokenScopes: gitTokenScopes!, apiUrl: githubApiUrl })
      : undefined;
    const repositories = codeCommitRepositories(this, props.codeCommitRepositories);
    // What both runners share beyond the model: git, repositories, permission rules.
    const git = {
      gitTokenSecret, gitTokenMinter, gitTokenScopes, trustedSettingsRepositories: props.trustedSettingsRepositories, codeCommitRepositories: repositories,
      maxCloneMiB: checkedMaxCloneMiB(props.maxCloneMiB, 'maxCloneMiB'),
      permissionRules: checkedPermissionRules(props.permissionRules, 'permissionRules'),
    };
    const runner = (this.runner = new ClaudeRunner(this, 'Runner', {
      apiKeySecret, model, modelAccess, transcripts, ...git, protectedBranches, sessions,
      reservedConcurrency: checkedRunnerConcurrency(props.runnerConcurrency),
      architecture: checkedRunnerArchitecture(props.runnerArchitecture, 'runnerArchitecture'),
    }));
    const fargate = new FargateRunner(this, 'Fargate', {
      image: runner.image, architecture: runner.architecture, apiKeySecret, model, modelAccess, transcripts, ...git, protectedBranches, vpc: props.vpc, sessions,
    });
    if (props.apiKeySecretKmsKeyArn) {
      // An imported key's grant cannot reach its key policy, and Secret.grantRead then adds none
      // to the roles either: the two readers of the secret get Decrypt, through Secrets Manager only.
      for (const grantee of [runner.function, fargate.taskDefinition.taskRole]) {
        Grant.addToPrincipal({
          grantee, actions: ['kms:Decrypt'], resourceArns: [props.apiKeySecretKmsKeyArn],
          conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${this.region}.${this.urlSuffix}` } },
        });
      }
    }
    this.workflow = new SessionWorkflow(this, 'Workflow', {
      sessions,
      creator: creator.function,
      runner: runner.function,
      fargate,
      runAttempts: props.runAttempts,
    });
    // The task answers its token and reads its prompt from its execution's input; nothing else.
    // SendTask* support no resource-level permission (Service Authorization Reference): the
    // token is the capability, and a grant on the state machine's ARN is not what IAM documents.
    Grant.addToPrincipal({
      grantee: fargate.taskDefinition.taskRole,
      actions: ['states:SendTaskSuccess', 'states:SendTaskFailure', 'states:SendTaskHeartbeat'],
      resourceArns: ['*'],
    });
    this.workflow.stateMachine.grantExecution(fargate.taskDefinition.taskRole, 'states:DescribeExecution');
    // The Lambda runner asks whether its execution still runs (AWS does not stop it): a policy of its
    // own, since the state machine names the function and the function's default policy may not name it back.
    const watch = new Policy(this, 'RunnerWatchesItsExecution', {
      statements: [new PolicyStatement({ actions: ['states:DescribeExecution'], resources: [this.executionsArn(this.workflow)] })],
    });
    watch.attachToRole(runner.function.role!);
    Validations.of(watch).acknowledge({
      id: `AwsSolutions::AwsSolutions-${this.executionsFinding(this.workflow)}`,
      reason: 'states:DescribeExecution on the executions of this one state machine: a runner asks whether its own execution still runs, whose name it cannot know at deploy time.',
    });
    Validations.of(fargate.taskDefinition).acknowledge({
      id: `AwsSolutions::AwsSolutions-${this.executionsFinding(this.workflow)}`,
      reason: 'states:DescribeExecution on the executions of this one state machine: a task reads its own execution\'s input (its prompt), whose name it cannot know at deploy time.',
    });
    this.api = new SessionApi(this, 'Http', {
      sessions, stateMachine: this.workflow.stateMachine, transcripts, allowedTools: props.allowedTools, protectedBranches, shellOnLambda: props.shellOnLambda,
      maxConcurrentSessions: props.maxConcurrentSessions, monthlyBudgetUsd: props.monthlyBudgetUsd, projectLimits,
    });
    const reaper = new SessionReaper(this, 'Reaper', { sessions, stateMachine: this.workflow.stateMachine });
    const sweeper = new SessionSweeper(this, 'Sweeper', { sessions, stateMachine: this.workflow.stateMachine, rate: props.sweepRate });
    new TaskStopWatch(this, 'TaskStopWatch', { cluster: fargate.cluster, taskDefinition: fargate.taskDefinition });
    Validations.of(reaper).acknowledge({
      id: `AwsSolutions::AwsSolutions-${this.executionsFinding(this.workflow)}`,
      reason: 'states:DescribeExecution on the executions of this one state machine: the reaper reads the input an event left out, of an execution it learns of only then.',
    });
    Validations.of(sweeper).acknowledge({
      id: `AwsSolutions::AwsSolutions-${this.executionsFinding(this.workflow)}`,
      reason: 'states:DescribeExecution on the executions of this one state machine: the sweeper asks about the execution of each RUNNING session, named only at run time.',
    });
    const schedules = new SessionSchedules(this, 'Schedules', { stateMachine: this.workflow.stateMachine, schedules: props.schedules ?? [] });
    this.events = new SessionEvents(this, 'Events', { sessions });
    const notifications = props.notifyStatuses?.length
      ? new SessionNotifications(this, 'Notifications', { eventBus: this.events.eventBus, statuses: checkedNotifyStatuses(props.notifyStatuses, 'notifyStatuses') })
      : undefined;
    const triggers = parseGitHubTriggers(props.githubTriggers, 'githubTriggers');
    if (Boolean(props.githubWebhookSecretName) !== Boolean(triggers)) {
      throw new Error('githubWebhookSecretName and githubTriggers go together: the webhook needs its secret and the repositories it maps to projects');
    }
    const github = props.githubWebhookSecretName && triggers ? new GitHubWebhook(this, 'GitHub', {
      api: this.api, stateMachine: this.workflow.stateMachine, sessions, transcripts, triggers, gitTokenScopes: gitTokenSecret || gitTokenMinter ? gitTokenScopes : undefined,
      secret: Secret.fromSecretNameV2(this, 'GitHubWebhookSecret', props.githubWebhookSecretName),
    }) : undefined;
    // Reports need a credential: the deployment's git token, or the App's tokens from a minter of their own
    // (issues and pull requests write), as the webhook's sessions push with the git minter's.
    const reportTokenMinter = github && githubAppSecret
      ? new GitTokenMinter(this, 'ReportTokenMinter', { purpose: 'report', appSecret: githubAppSecret, gitTokenScopes: gitTokenScopes!, apiUrl: githubApiUrl })
      : undefined;
    const reporter = github && (gitTokenSecret || reportTokenMinter) ? new GitHubReporter(this, 'GitHubReporter', {
      eventBus: this.events.eventBus, sessions, tokenSecret: gitTokenSecret, tokenMinter: reportTokenMinter, apiUrl: githubApiUrl,
    }) : undefined;
    this.monitoring = new SessionMonitoring(this, 'Monitoring', {
      stateMachine: this.workflow.stateMachine,
      reaper: reaper.function,
      runner: runner.function,
      deadLetterQueues: [
        schedules.deadLetterQueue, this.events.deadLetterQueue, reaper.deadLetterQueue,
        ...(reporter ? [reporter.deadLetterQueue] : []), ...(notifications ? [notifications.deadLetterQueue] : []),
      ],
      alarmTopic: props.alarmTopic ?? (props.alarmTopicArn ? Topic.fromTopicArn(this, 'AlarmTopic', props.alarmTopicArn) : undefined),
    });
    this.suppressReviewedFindings(runner, creator, this.workflow);
    Validations.of(this.workflow).acknowledge({
      id: `AwsSolutions::AwsSolutions-${taskFamilyRevisionsFinding(this.getLogicalId(fargate.taskDefinition.node.defaultChild as CfnElement))}`,
      reason: 'ecs:RunTask on the revisions of this one task definition family, as the EcsRunTask state grants it.',
    });
    this.suppressApiFindings(this.api, sessions);
    // What `CLAUDE_SESSIONS_API=<ApiUrl> npx claude-sessions run …` needs after a deploy.
    new CfnOutput(this, 'ApiUrl', { value: this.api.api.url, description: 'The sessions API (IAM-authorised): CLAUDE_SESSIONS_API for the claude-sessions CLI' });
    // What the deploy guide's next steps name: the key to put in, the machine to start, where records and transcripts live.
    new CfnOutput(this, 'StateMachineArn', { value: this.workflow.stateMachine.stateMachineArn, description: 'The session workflow: aws stepfunctions start-execution --state-machine-arn, or the console' });
    if (apiKeySecret) {
      new CfnOutput(this, 'ApiKeySecretArn', { value: apiKeySecret.secretArn, description: 'Put the Anthropic API key here: aws secretsmanager put-secret-value --secret-id <this> --secret-string <key>' });
    }
    if (github) new CfnOutput(this, 'GitHubWebhookUrl', { value: github.url, description: 'The Payload URL of the GitHub webhook (content type application/json, the secret in githubWebhookSecretName)' });
    new CfnOutput(this, 'SessionTableName', { value: sessions.table.tableName, description: 'The DynamoDB table holding every session, milestone and project limit' });
    if (notifications) {
      new CfnOutput(this, 'NotificationTopicArn', { value: notifications.topic.topicArn, description: 'Sessions closed with the notifyStatuses: aws sns subscribe --topic-arn <this> --protocol email --notification-endpoint <address>' });
    }
    new CfnOutput(this, 'TranscriptBucketName', { value: transcripts.bucket.bucketName, description: 'Milestone transcripts and unpushed workspace patches (kept when the stack is destroyed)' });

  }

  /** Every execution of the workflow's state machine, as grantExecution spells it (the name taken from the machine's ARN). */
  private executionsArn(workflow: SessionWorkflow): string {
    const name = Fn.select(6, Fn.split(':', workflow.stateMachine.stateMachineArn));
    return `arn:${this.partition}:states:${this.region}:${this.account}:execution:${name}:*`;
  }

  /** The finding cdk-nag reports for an action on every execution of the workflow's state machine, as it spells it. */
  private executionsFinding(workflow: SessionWorkflow): string {
    const machine = { Ref: this.getLogicalId(workflow.stateMachine.node.defaultChild as CfnElement) };
    const name = JSON.stringify({ 'Fn::Select': [6, { 'Fn::Split': [':', machine] }] });
    const region = Token.isUnresolved(this.region) ? '<AWS::Region>' : this.region;
    return `IAM5[Resource::arn:<AWS::Partition>:states:${region}:<AWS::AccountId>:execution:${name}:*]`;
  }

  private apiKeySecret(name: string | undefined, kmsKeyArn: string | undefined): ISecret {
    if (kmsKeyArn && !name) throw new Error('apiKeySecretKmsKeyArn is set but apiKeySecretName is not: the key belongs to an existing secret');
    if (name) return Secret.fromSecretNameV2(this, 'AnthropicApiKey', name);
    // A placeholder the runner recognises and refuses with a clear error until the key is put in.
    const secret = new Secret(this, 'AnthropicApiKey', {
      description: 'Anthropic API key for claude-sessions: put the key as the secret string (or JSON {"ANTHROPIC_API_KEY": "..."})',
      generateSecretString: {
        secretStringTemplate: JSON.stringify({ ANTHROPIC_API_KEY: 'REPLACE_ME' }),
        generateStringKey: 'placeholder',
      },
    });
    // Kept when the stack stops using it (a switch to provider bedrock): the key put in by hand is not lost.
    secret.applyRemovalPolicy(RemovalPolicy.RETAIN);
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions::AwsSolutions-SMG4',
      reason: 'An Anthropic API key cannot be rotated by a Secrets Manager rotation function: it is issued in the Anthropic console and put here by hand.',
    });
    return secret;
  }

  /** cdk-nag findings reviewed and accepted, each with its reason. */
  private suppressReviewedFindings(runner: ClaudeRunner, creator: SessionCreator, workflow: SessionWorkflow): void {
    const acknowledge = (scope: Construct, rule: string, reason: string) =>
      Validations.of(scope).acknowledge({ id: `AwsSolutions::AwsSolutions-${rule}`, reason });
    acknowledge(workflow, 'IAM5[Resource::*]',
      'X-Ray and CloudWatch Logs delivery APIs (logs:CreateLogDelivery and friends) support no resource-level permissions.');
    for (const fn of [runner, creator]) {
      const logicalId = this.getLogicalId(fn.function.node.defaultChild as CfnElement);
      acknowledge(workflow, `IAM5[Resource::<${logicalId}.Arn>:*]`,
        'lambda:InvokeFunction on this one function and its versions (ARN:*), as the LambdaInvoke task grants it.');
    }
  }

  private suppressApiFindings(http: SessionApi, sessions: SessionTable): void {
    const acknowledge = (scope: Construct, rule: string, reason: string) =>
      Validations.of(scope).acknowledge({ id: `AwsSolutions::AwsSolutions-${rule}`, reason });
    acknowledge(http, 'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      'The account-level role API Gateway needs to write access and execution logs.');
    acknowledge(http, sessions.indexesFinding(),
      'Query and Scan on the two indexes of this one table (a project\'s sessions, a milestone\'s tasks, the project ids); nothing outside it.');
    acknowledge(http, 'APIG2', 'Requests are validated in the handler by the shared zod schema, which names each bad field; a model would duplicate it.');
    acknowledge(http, 'APIG3', 'Every method is IAM-authorised (SigV4) and the stage is throttled; a WAF web ACL is left to the deployer.');
    acknowledge(http, 'COG4', 'The API uses AWS_IAM authorisation, not a Cognito user pool: its callers are AWS principals.');
  }
}

/**
 * The runner's reserved concurrency: a whole number from 1 (0 would throttle every session).
 * Whether the account can spare it (its quota less the 100 Lambda keeps unreserved) only the deploy knows.
 */
function checkedRunnerConcurrency(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`runnerConcurrency must be a whole number from 1 (the sessions the runner Lambda may run at once), not ${JSON.stringify(value)}`);
  }
  return value;
}
