import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { ClaudeEndpoint } from '../claude/claude-process.js';
import { tokenScopeOf } from '../claude/repository-scopes.js';
import type { FixedEndpointRunnerConfig, RunnerConfig } from '../claude/run-session-task.js';
import { GitHubAppError } from '../github/app-token.js';
import { runnerEnvironment } from '../claude/runner-environment.js';
import { splitRunnerConfig } from '../claude/runner-config.js';
import { failStoppedTask, type TaskStateChange } from '../claude/stopped-task.js';
import { PROJECT_ROOT } from '../project-root.js';
import { namedError } from './integration-errors.js';
import type { LocalS3 } from './local-s3.js';
import type { LocalTaskCallbacks } from './local-task-callbacks.js';
import { LOCAL_GIT_TOKEN_MINTER_ARN } from './task-credentials.js';

/** What the workflow's RunClaudeOnFargate state hands ECS RunTask (its rendered Parameters). */
export interface EcsRunTaskParameters {
  Overrides?: { ContainerOverrides?: { Environment?: { Name: string; Value: string }[] }[] };
}

/** ECS RunTask refuses container overrides over 8 KiB in all (InvalidParameterException). */
const ECS_MAX_OVERRIDES_BYTES = 8_192;

/**
 * ECS with a task token, on this machine: each task is the runner image's task.mjs as its own
 * Node process, with the environment ECS gives the container, reporting to the local endpoint
 * for task tokens and DescribeExecution, and refused as ECS refuses it (overrides over 8 KiB).
 */
export class LocalFargate {
  /** Tasks running now, by session id, as ECS ListTasks would show them. */
  readonly tasks = new Map<string, ChildProcess>();
  /** Lose ECS's "task stopped" events, as EventBridge may: only the heartbeat then tells a dead task. */
  dropTaskEvents = false;

  constructor(
    private readonly callbacks: LocalTaskCallbacks,
    private readonly runnerConfig: FixedEndpointRunnerConfig,
    /** S3, for a milestone task's transcript (started on first use). */
    private readonly s3: () => Promise<LocalS3>,
    /** The session table, where a task records the spend of a run stopped because its execution ended. */
    private readonly sessions: { endpoint: string; tableName: string },
  ) {}

  /**
   * ECS RunTask with a task token: the task entry point as its own Node process, with the
   * environment ECS would give it, reporting to the local task-token endpoint.
   */
  async runTask(params: EcsRunTaskParameters, heartbeatSeconds: number | undefined, signal: AbortSignal, endpoint = this.runnerConfig.endpoint): Promise<unknown> {
    const overridesBytes = Buffer.byteLength(JSON.stringify(params.Overrides ?? {}), 'utf8');
    if (overridesBytes > ECS_MAX_OVERRIDES_BYTES) {
      throw namedError('ECS.InvalidParameterException', `Container Overrides length must be at most ${ECS_MAX_OVERRIDES_BYTES}; these are ${overridesBytes} bytes`);
    }
    const overrides = Object.fromEntries(
      (params.Overrides?.ContainerOverrides?.[0]?.Environment ?? []).map((e) => [e.Name, e.Value]),
    );
    const token = overrides.TASK_TOKEN;
    if (!token) throw namedError('ECS.InvalidParameterException', 'the task has no TASK_TOKEN override');
    const heartbeatMs = heartbeatSeconds ? heartbeatSeconds * 1000 : undefined;
    const session = JSON.parse(overrides.SESSION_JSON ?? '{}') as {
      sessionId?: string; projectId?: string; executionArn?: string; milestoneId?: string; platformTimeoutSeconds?: number;
    };
    const sessionId = session.sessionId ?? token;
    // A milestone task reads and writes its transcript: it gets the S3 endpoint, as ECS gives it the bucket.
    const milestoneTask = Boolean((JSON.parse(overrides.MILESTONE_JSON ?? 'null') as { item?: unknown } | null)?.item);
    const s3 = milestoneTask ? await this.s3() : undefined;
    // The very bundle the image runs (cdk/runner-image.ts stages the same files for cdk.out). Bundled
    // once per process, before the heartbeat clock starts: a busy machine's esbuild is not the task's delay.
    const taskEntry = join(await runnerImageContext(), 'task.mjs');
    const endpointEnvironment = taskEndpointEnvironment(endpoint); // refuses before anything waits on the token
    // The task's own credential, not this runtime's: its session's items, its milestone's transcript,
    // its own token and execution (LocalTaskCredentials); revoked when the task ends.
    const credential = this.callbacks.tasks.issue({
      sessionId, projectId: session.projectId ?? '', executionArn: session.executionArn ?? '', taskToken: token,
      ...(milestoneTask && session.milestoneId ? { milestoneId: session.milestoneId } : {}),
    });
    const waiting = this.callbacks.wait(token, heartbeatMs, signal, session.platformTimeoutSeconds);
    waiting.catch(() => undefined); // awaited below; never an unhandled rejection if spawning throws first
    const child = spawn(process.execPath, ['--enable-source-maps', taskEntry], {
      cwd: PROJECT_ROOT,
      detached: true,
      stdio: 'ignore',
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        // The CA git trusts here (a private git host's), as the runner in this process does (workspace.ts).
        ...(process.env.GIT_SSL_CAINFO ? { GIT_SSL_CAINFO: process.env.GIT_SSL_CAINFO } : {}),
        ...overrides,
        AWS_REGION: 'us-east-1',
        // s3rver's own fixed key pair; the local stores and the task-token endpoint tell the task by
        // its session token, as a task role's credentials carry one on ECS.
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        AWS_SESSION_TOKEN: credential,
        AWS_ENDPOINT_URL_SFN: this.callbacks.endpoint,
        AWS_ENDPOINT_URL_DYNAMODB: this.sessions.endpoint,
        // Its repository's git token by the minter's Invoke (the runtime's credential stays in this process).
        ...(this.callbacks.gitTokens ? { AWS_ENDPOINT_URL_LAMBDA: this.callbacks.endpoint } : {}),
        ...(s3 ? { AWS_ENDPOINT_URL_S3: s3.endpoint } : {}),
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        ...endpointEnvironment,
        // The environment cdk/fargate-runner.ts gives the container, from the same contract.
        ...runnerEnvironment({
          // The in-process runner's settings, as the environment carries them (runner-config.ts).
          ...splitRunnerConfig(this.runnerConfig).settings,
          transcriptBucket: s3?.store.bucket,
          sessionTable: this.sessions.tableName,
          gitTokenMinterArn: this.callbacks.gitTokens ? LOCAL_GIT_TOKEN_MINTER_ARN : undefined,
          // A local run is the user's own: the mode it was given is what it asked for.
          trustedInputsOnly: this.runnerConfig.permissionMode === 'bypassPermissions' || undefined,
          heartbeatIntervalSeconds: heartbeatMs ? Math.max(0.2, heartbeatMs / 3000) : 30,
          // As cdk/fargate-runner.ts: a user of its own for the CLI, where this machine lets the task make one (root).
          separateUser: true,
          model: endpoint.provider === 'bedrock'
            ? { provider: 'bedrock', model: endpoint.model, smallFastModel: endpoint.smallFastModel }
            : { provider: 'anthropic', model: endpoint.model },
        }),
      },
    });
    this.tasks.set(sessionId, child);
    child.once('error', () => this.callbacks.tasks.revoke(credential)); // never started: no exit follows
    child.once('exit', (exitCode, signal) => {
      this.callbacks.tasks.revoke(credential);
      this.tasks.delete(sessionId);
      if (this.dropTaskEvents) return;
      // ECS's "task stopped" event, to the same watch the stack deploys (TaskStopWatch).
      const stopped: TaskStateChange = {
        lastStatus: 'STOPPED', stopCode: 'EssentialContainerExited', stoppedReason: 'Essential container in task exited',
        containers: [{ name: 'runner', ...(exitCode !== null ? { exitCode } : { reason: `killed by ${signal}` }) }],
        overrides: { containerOverrides: params.Overrides?.ContainerOverrides?.map((c) => ({ environment: (c.Environment ?? []).map((e) => ({ name: e.Name, value: e.Value })) })) },
      };
      void failStoppedTask(stopped, (token, error, cause) => this.callbacks.failTask(token, error, cause)).catch(() => undefined);
    });
    // Step Functions stops no task it waits for with a token (only .sync does): when the execution
    // ends, is aborted or times out, the task runs on until its heartbeat or its watch tells it,
    // stops Claude and records the spend. Here too, so that is the code the tests run.
    return waiting;
  }

  /** When the runtime closes: waits `graceMs` for the tasks to stop themselves, then stops the rest as ECS StopTask would. */
  async stopAll(graceMs = 0): Promise<void> {
    const exits = [...this.tasks.values()].map((task) => new Promise<void>((resolve) => {
      if (task.exitCode !== null || task.signalCode !== null) resolve();
      else task.once('exit', () => resolve());
    }));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(exits), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    for (const task of this.tasks.values()) signalGroup(task, 'SIGKILL');
  }
}

/**
 * The local git token minter: the runner's own git credential (a token, or the App's mint), for
 * a repository under its gitTokenScopes only, as GitTokenMinter answers a deployed task. None
 * where the runner has no credential.
 */
export function localGitTokenMinter(config: Pick<RunnerConfig, 'gitToken' | 'gitTokenScopes'>): ((repo: string) => Promise<string>) | undefined {
  const { gitToken, gitTokenScopes } = config;
  if (!gitToken) return undefined;
  return async (repo) => {
    if (!tokenScopeOf(repo, gitTokenScopes)) throw new GitHubAppError(`${repo} is under none of gitTokenScopes: no token is minted for it`);
    const token = await gitToken(repo);
    if (!token) throw new GitHubAppError(`no git token for ${repo}`);
    return token;
  };
}

/**
 * Where the local task reaches Claude. The Anthropic key itself, where ECS gives the task the
 * secret's ARN; Bedrock through its base URL (a stand-in or a gateway), as a deployed task
 * would with the model role's credentials, which a local task has no STS to assume.
 */
function taskEndpointEnvironment(endpoint: ClaudeEndpoint): Record<string, string> {
  if (endpoint.provider !== 'bedrock') {
    return { ANTHROPIC_API_KEY: endpoint.apiKey, ...(endpoint.baseUrl ? { ANTHROPIC_BASE_URL: endpoint.baseUrl } : {}) };
  }
  if (!endpoint.baseUrl || endpoint.credentials) {
    throw namedError('ECS.InvalidParameterException', 'the local Fargate runtime reaches Bedrock only through ANTHROPIC_BEDROCK_BASE_URL (a stand-in or a gateway): run the session on the lambda runtime to use your AWS credentials');
  }
  return { ANTHROPIC_BEDROCK_BASE_URL: endpoint.baseUrl };
}

let runnerImage: Promise<string> | undefined;

/** The runner image's staged context, bundled once per process (only Fargate tasks need it). */
function runnerImageContext(): Promise<string> {
  runnerImage ??= import('../../cdk/runner-image.js')
    .then(({ stageRunnerImage }) => stageRunnerImage({ bundle: true }))
    .catch((err: unknown) => {
      runnerImage = undefined; // the next task tries again (a source fixed meanwhile)
      throw err;
    });
  return runnerImage;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.exitCode !== null || !child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

