import './polyfill.js';
import { PutItemCommand, UpdateItemCommand, type PutItemCommandInput, type UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { StateMachine } from 'aws-local-stepfunctions';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { runSessionTask, type RunnerConfig, type RunnerInput } from '../claude/run-session-task.js';
import { runnerEnvironment } from '../claude/runner-environment.js';
import type { ClaudeEndpoint, StandbyClaude } from '../claude/claude-process.js';
import type { ExecutionInput } from '../sessions/execution-input.js';
import { executionArnFor, type SessionStarter, type StartedSession } from '../api/session-starter.js';
import { SESSION_SK, type SessionRecord } from '../sessions/session-item.js';
import { SessionRepository } from '../sessions/session-repository.js';
import { MilestoneRepository } from '../sessions/milestone-repository.js';
import type { LocalS3 } from './local-s3.js';
import type { TranscriptStorage } from '../claude/transcript-store.js';
import { createSession, type SessionPolicy, type ValidateInputEvent } from '../sessions/session-creation.js';
import { ProjectSlots, SLOTS_SK } from '../sessions/project-slots.js';
import { MILESTONE_SK } from '../sessions/milestone-item.js';
import { paginateScan } from '@aws-sdk/lib-dynamodb';
import { reapExecution } from '../sessions/session-reaper.js';
import { localClaudeEndpoint, type AnthropicStandIn } from './anthropic-stand-in.js';
import { LocalDynamoDb } from './local-dynamodb.js';
import { LocalTaskCallbacks } from './local-task-callbacks.js';
import { ABORT_REQUESTS_DIR, acquireStateLock } from './state-lock.js';

import { loadWorkflowDefinition, type WorkflowDefinition } from './workflow-definition.js';
import { PROJECT_ROOT } from '../project-root.js';

interface EcsRunTaskParameters {
  Overrides?: { ContainerOverrides?: { Environment?: { Name: string; Value: string }[] }[] };
}

/** ECS RunTask refuses container overrides over 8 KiB in all (InvalidParameterException). */
const ECS_MAX_OVERRIDES_BYTES = 8_192;
/** Step Functions task tokens run up to 2,048 characters; the local ones are that long, so overrides are tried at their largest. */
const TASK_TOKEN_CHARS = 2_048;

export interface LocalRuntimeOptions {
  /** State directory (DynamoDB on disk, cached definition); omit for in-memory state. */
  home?: string;
  /**
   * Where Claude is: a key (and base URL) for a real endpoint, or a stand-in to talk to.
   * @default from ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL, else a built-in stand-in
   */
  endpoint?: ClaudeEndpoint;
  standIn?: AnthropicStandIn;
  runner?: Omit<RunnerConfig, 'endpoint'>;
  /** Directory for the cached definition when home is not set. */
  cacheDir?: string;
  /** Overrides the Fargate state's HeartbeatSeconds (tests: seconds, not minutes). */
  fargateHeartbeatSeconds?: number;
  /** What holds the state, for the lock's message to others. @default 'claude-sessions' */
  command?: string;
  /** The deployment's session policy, as CreateSession's environment holds it on AWS. */
  policy?: SessionPolicy;
}

/** One entry of the execution's event log (StateEntered, StateFailed, …). */
export type EventLog = ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer E> ? E : never;

export type ExecutionStatus = 'SUCCEEDED' | 'FAILED' | 'ABORTED' | 'TIMED_OUT';

export interface ExecutionOutcome {
  status: ExecutionStatus;
  output?: unknown;
  error?: string;
  cause?: string;
}

export interface LocalExecution {
  executionArn: string;
  name: string;
  /** The execution's input as JSON, as DescribeExecution returns it. */
  input: string;
  /** Each state as it is entered, left, failed or caught, as the execution runs. */
  events: AsyncIterable<EventLog>;
  outcome: Promise<ExecutionOutcome>;
  abort(): void;
}

const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:000000000000:stateMachine:ClaudeSessionsWorkflow';

/**
 * The synthesized state machine, run on this machine: aws-local-stepfunctions executes
 * the ASL from `cdk synth`; its Task states are routed to the real calls (DynamoDB on
 * dynalite, the CreateSession and runner code in-process, the real Claude CLI).
 */
export class LocalRuntime implements SessionStarter {
  readonly repository: SessionRepository;
  readonly milestones: MilestoneRepository;
  readonly slots: ProjectSlots;
  /** Set when the runtime started its own stand-in (no API key given). */
  readonly standIn?: AnthropicStandIn;
  private readonly machine: StateMachine;
  private readonly executions = new Map<string, LocalExecution>();

  private releaseLock: () => Promise<void> = async () => {};
  private abortWatch?: NodeJS.Timeout;
  /** Sessions found RUNNING at start (their process had died) and closed ABORTED. */
  orphansClosed: string[] = [];

  /** Fargate tasks running now, as ECS ListTasks would show them. */
  readonly fargateTasks = new Map<string, ChildProcess>();

  private s3Started?: Promise<LocalS3>;

  /**
   * S3 (s3rver), started on first use: only milestones need it, and loading it costs most
   * of a second, which a fresh session's `run` should not pay.
   */
  s3(): Promise<LocalS3> {
    this.s3Started ??= import('./local-s3.js').then(({ LocalS3 }) => LocalS3.start({ path: this.s3Path }));
    return this.s3Started;
  }

  /** The transcript store, on the lazily started S3. */
  readonly transcripts: TranscriptStorage = {
    save: async (milestoneId, body) => (await this.s3()).store.save(milestoneId, body),
    load: async (milestoneId, pointer) => (await this.s3()).store.load(milestoneId, pointer),
    markClosed: async (key) => (await this.s3()).store.markClosed(key),
  };

  private constructor(
    private readonly definition: WorkflowDefinition,
    readonly dynamodb: LocalDynamoDb,
    private readonly runnerConfig: RunnerConfig,
    ownStandIn: AnthropicStandIn | undefined,
    private readonly callbacks: LocalTaskCallbacks,
    private readonly fargateHeartbeatSeconds: number | undefined,
    readonly policy: SessionPolicy,
    private readonly s3Path: string | undefined,
  ) {
    this.runnerConfig = { ...this.runnerConfig, transcripts: this.transcripts };
    this.repository = new SessionRepository(dynamodb.documentClient, dynamodb.tableName);
    this.milestones = new MilestoneRepository(dynamodb.documentClient, dynamodb.tableName);
    this.slots = new ProjectSlots(dynamodb.documentClient, dynamodb.tableName);
    this.standIn = ownStandIn;
    // Validated when it was synthesized and cached (loadWorkflowDefinition).
    this.machine = new StateMachine(withoutTimeoutPaths(definition.asl) as never, { validationOptions: { noValidate: true } });
  }

  static async start(options: LocalRuntimeOptions = {}): Promise<LocalRuntime> {
    const cacheDir = options.home ? join(options.home, 'cache') : (options.cacheDir ?? join(process.cwd(), '.claude-sessions', 'cache'));
    let releaseLock = async () => {};
    if (options.home) {
      await mkdir(options.home, { recursive: true });
      releaseLock = await acquireStateLock(options.home, options.command ?? 'claude-sessions');
    }
    const definition = await loadWorkflowDefinition(cacheDir).catch(async (err: unknown) => {
      await releaseLock();
      throw err;
    });
    const dynamodb = await LocalDynamoDb.start({
      path: options.home ? join(options.home, 'dynamodb') : undefined,
      table: definition.table,
    }).catch(async (err: unknown) => {
      await releaseLock();
      throw err;
    });
    // Whatever fails from here on, nothing started stays open (a stray server keeps Node alive).
    let ownStandIn: AnthropicStandIn | undefined;
    let callbacks: LocalTaskCallbacks | undefined;
    try {
      let endpoint = options.endpoint ?? options.standIn?.endpoint;
      if (!endpoint) ({ endpoint, standIn: ownStandIn } = await localClaudeEndpoint(process.env));
      // DescribeExecution answers from the executions this runtime runs (a task reads its prompt there).
      callbacks = await new LocalTaskCallbacks((arn) => runtime.inputOf(arn)).start();
      const runtime = new LocalRuntime(
        definition, dynamodb, { ...options.runner, endpoint }, ownStandIn, callbacks, options.fargateHeartbeatSeconds,
        options.policy ?? {}, options.home ? join(options.home, 's3') : undefined,
      );
      runtime.releaseLock = releaseLock;
      if (options.home) {
        // Holding the lock means no other process runs anything here: a RUNNING session
        // is an orphan of a process that died (kill -9, a crash) and is closed now.
        runtime.orphansClosed = await runtime.closeOrphans();
        runtime.watchAbortRequests(join(options.home, ABORT_REQUESTS_DIR));
      }
      return runtime;
    } catch (err) {
      await ownStandIn?.close();
      await callbacks?.close();
      await dynamodb.close();
      await releaseLock();
      throw err;
    }
  }

  /**
   * StartExecution: the name is the session id when the input has one. A name already
   * running returns that execution, as Step Functions does for an identical request.
   */
  startExecution(input: unknown, name?: string, options: { standby?: StandbyClaude } = {}): LocalExecution {
    const sessionId = (input as { sessionId?: unknown } | null)?.sessionId;
    const executionName = name ?? (typeof sessionId === 'string' && sessionId ? sessionId : uuidv4());
    const existing = this.executions.get(executionName);
    if (existing) {
      void options.standby?.discard();
      return existing;
    }

    const executionArn = executionArnFor(STATE_MACHINE_ARN, executionName);
    const stop = new AbortController();
    const run = this.machine.run(input as never, {
      overrides: { taskResourceLocalHandlers: this.taskHandlers(stop.signal, options.standby) as never, retryIntervalOverrides: this.fastRetries() },
      context: {
        Execution: { Id: executionArn, Name: executionName, StartTime: new Date().toISOString() },
        StateMachine: { Id: STATE_MACHINE_ARN, Name: 'ClaudeSessionsWorkflow' },
        // aws-local-stepfunctions does not fill $$.State.EnteredTime; close enough for endedAt.
        State: {
          get EnteredTime() {
            return new Date().toISOString();
          },
        },
        // A fresh token each time a .waitForTaskToken state reads it, as long as AWS's longest.
        Task: {
          get Token() {
            return randomBytes(TASK_TOKEN_CHARS).toString('base64url').slice(0, TASK_TOKEN_CHARS);
          },
        },
      },
    });
    const outcome = run.result
      .then(
        (output): ExecutionOutcome => ({ status: 'SUCCEEDED', output }),
        (err: unknown): ExecutionOutcome => toExecutionOutcome(err),
      )
      .then(async (result) => {
        // A CLI started ahead that no runner took (bad input, a refused start) never had a prompt.
        await options.standby?.discard();
        // What EventBridge delivers to the reaper on AWS, delivered here in-process.
        if (result.status !== 'SUCCEEDED') {
          await reapExecution(this.repository, {
            executionArn, name: executionName, status: result.status, input: JSON.stringify(input ?? null),
            error: result.error ?? null, cause: result.cause ?? null,
          }, { milestones: this.milestones, slots: this.slots }).catch(() => undefined);
        }
        return result;
      });
    const abort = () => {
      stop.abort();
      run.abort();
    };
    const execution: LocalExecution = { executionArn, name: executionName, input: JSON.stringify(input ?? null), events: run.eventLogs, outcome, abort };
    this.executions.set(executionName, execution);
    void outcome.finally(() => this.executions.delete(executionName));
    return execution;
  }

  /**
   * SessionStarter for the HTTP API: like StartExecution with name = sessionId, a
   * session that exists already (running or closed) starts nothing new.
   */
  async start(input: ExecutionInput & { sessionId: string }): Promise<StartedSession> {
    const executionArn = executionArnFor(STATE_MACHINE_ARN, input.sessionId);
    if (this.executions.has(input.sessionId) || (await this.repository.get(input.sessionId))) {
      return { sessionId: input.sessionId, executionArn, started: false };
    }
    const execution = this.startExecution(input, input.sessionId);
    void execution.outcome; // runs in the background; its session tells how it went
    return { sessionId: input.sessionId, executionArn: execution.executionArn, started: true };
  }

  /** A running execution's input, by ARN (DescribeExecution). */
  inputOf(executionArn: string): string | undefined {
    return [...this.executions.values()].find((e) => e.executionArn === executionArn)?.input;
  }

  /** Starts an execution, waits for it to end, and returns the session it tracked. */
  async run(input: unknown): Promise<{ execution: LocalExecution; outcome: ExecutionOutcome; session?: SessionRecord }> {
    const execution = this.startExecution(input);
    const outcome = await execution.outcome;
    const session = await this.repository.get(execution.name).catch(() => undefined);
    return { execution, outcome, session };
  }

  /**
   * What a dead process left held, found in one scan (this runs at every local command's
   * start): RUNNING sessions, milestone leases and project slots. With the state lock held,
   * nothing here is live, so all of it is closed or freed.
   */
  private async closeOrphans(): Promise<string[]> {
    const closed: string[] = [];
    const pages = paginateScan(
      { client: this.dynamodb.documentClient },
      {
        TableName: this.dynamodb.tableName,
        FilterExpression:
          '(sk = :session AND #status = :running) OR (sk = :milestone AND attribute_exists(leaseExecutionArn)) OR (sk = :slots AND attribute_exists(running))',
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':session': SESSION_SK, ':running': 'RUNNING', ':milestone': MILESTONE_SK, ':slots': SLOTS_SK },
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) {
        if (item.sk === SESSION_SK) {
          const sessionId = String(item.sessionId);
          const done = await this.repository.closeWithError(
            sessionId, 'ABORTED', 'ExecutionAborted', 'the local process that ran this session ended before closing it',
          );
          if (done) closed.push(sessionId);
        } else if (item.sk === MILESTONE_SK) {
          await this.milestones.releaseLease(String(item.id), String(item.leaseExecutionArn));
        } else {
          const projectId = String(item.pk).slice('PROJECT#'.length);
          for (const sessionId of item.running as Set<string>) await this.slots.release(projectId, sessionId);
        }
      }
    }
    return closed;
  }

  /** `claude-sessions abort <id>` from another process leaves a request file here. */
  private watchAbortRequests(dir: string): void {
    this.abortWatch = setInterval(() => {
      void readdir(dir)
        .then(async (names) => {
          for (const name of names) {
            this.executions.get(name)?.abort();
            await rm(join(dir, name), { force: true });
          }
        })
        .catch(() => undefined);
    }, 250);
    this.abortWatch.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.abortWatch);
    for (const execution of this.executions.values()) execution.abort();
    for (const task of this.fargateTasks.values()) signalGroup(task, 'SIGKILL');
    await Promise.allSettled([...this.executions.values()].map((e) => e.outcome));
    await this.standIn?.close();
    await this.callbacks.close();
    if (this.s3Started) await (await this.s3Started).close();
    await this.dynamodb.close();
    await this.releaseLock();
  }

  private taskHandlers(signal: AbortSignal, standby?: StandbyClaude): Record<string, (input: any) => Promise<unknown>> {
    // The first runner call takes it; runClaude uses it if it was started as that run would start one.
    const takeStandby = () => {
      const taken = standby;
      standby = undefined;
      return taken;
    };
    const handlers: Record<string, (input: any) => Promise<unknown>> = {};
    for (const [name, state] of Object.entries(this.definition.asl.States)) {
      if (state.Type !== 'Task') continue;
      const resource = String(state.Resource);
      if (resource === 'arn:aws:states:::dynamodb:putItem') {
        handlers[name] = (params: PutItemCommandInput) => this.dynamodbCall(new PutItemCommand(params));
      } else if (resource === 'arn:aws:states:::dynamodb:updateItem') {
        handlers[name] = (params: UpdateItemCommandInput) => this.dynamodbCall(new UpdateItemCommand(params));
      } else if (resource.endsWith(':states:::ecs:runTask.waitForTaskToken')) {
        const heartbeatSeconds = this.fargateHeartbeatSeconds ?? (state.HeartbeatSeconds as number | undefined);
        handlers[name] = (params: EcsRunTaskParameters) => this.runFargateTask(params, heartbeatSeconds, signal);
      } else if (this.definition.functions[resource] === 'create-session') {
        handlers[name] = (event: ValidateInputEvent) => lambdaCall(() => createSession(event, this.policy, this.repository));
      } else if (this.definition.functions[resource] === 'runner') {
        handlers[name] = (input: RunnerInput) => lambdaCall(() => runSessionTask(input, { ...this.runnerConfig, signal, takeStandby }));
      } else {
        throw new Error(`state ${name} calls ${resource}, which the local runtime cannot run`);
      }
    }
    return handlers;
  }

  /**
   * ECS RunTask with a task token: the task entry point as its own Node process, with the
   * environment ECS would give it, reporting to the local task-token endpoint.
   */
  private async runFargateTask(params: EcsRunTaskParameters, heartbeatSeconds: number | undefined, signal: AbortSignal): Promise<unknown> {
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
    const session = JSON.parse(overrides.SESSION_JSON ?? '{}') as { sessionId?: string; platformTimeoutSeconds?: number };
    const sessionId = session.sessionId ?? token;
    const waiting = this.callbacks.wait(token, heartbeatMs, signal, session.platformTimeoutSeconds);
    waiting.catch(() => undefined); // awaited below; never an unhandled rejection if spawning throws first
    const { endpoint } = this.runnerConfig;
    // A milestone task reads and writes its transcript: it gets the S3 endpoint, as ECS gives it the bucket.
    const s3 = (JSON.parse(overrides.MILESTONE_JSON ?? 'null') as { item?: unknown } | null)?.item ? await this.s3() : undefined;
    // The very bundle the image runs (cdk/runner-image.ts stages the same files for cdk.out).
    const taskEntry = join(await runnerImageContext(), 'task.mjs');
    const child = spawn(process.execPath, ['--enable-source-maps', taskEntry], {
      cwd: PROJECT_ROOT,
      detached: true,
      stdio: 'ignore',
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        ...overrides,
        AWS_REGION: 'us-east-1',
        // s3rver checks signatures against its own fixed key; the task-token endpoint takes any.
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        AWS_ENDPOINT_URL_SFN: this.callbacks.endpoint,
        ...(s3 ? { AWS_ENDPOINT_URL_S3: s3.endpoint } : {}),
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        // The key itself, where ECS gives the task the secret's ARN.
        ANTHROPIC_API_KEY: endpoint.apiKey,
        ...(endpoint.baseUrl ? { ANTHROPIC_BASE_URL: endpoint.baseUrl } : {}),
        // The environment cdk/fargate-runner.ts gives the container, from the same contract.
        ...runnerEnvironment({
          transcriptBucket: s3?.store.bucket,
          idleTimeoutMs: this.runnerConfig.idleTimeoutMs,
          maxApiRetries: this.runnerConfig.maxRetries,
          tools: this.runnerConfig.tools,
          permissionMode: this.runnerConfig.permissionMode,
          heartbeatIntervalSeconds: heartbeatMs ? Math.max(0.2, heartbeatMs / 3000) : 30,
        }),
      },
    });
    this.fargateTasks.set(sessionId, child);
    child.once('exit', () => this.fargateTasks.delete(sessionId));
    try {
      return await waiting;
    } catch (err) {
      // As ECS StopTask would: a task nobody waits for any more is stopped.
      signalGroup(child, 'SIGKILL');
      throw err;
    }
  }

  /** Retries keep their order and count locally, without the production back-off waits. */
  private fastRetries(): Record<string, number> {
    return Object.fromEntries(
      Object.entries(this.definition.asl.States).filter(([, s]) => 'Retry' in s).map(([name]) => [name, 50]),
    );
  }

  /** A direct DynamoDB integration: errors carry the names Step Functions gives them. */
  private async dynamodbCall(command: PutItemCommand | UpdateItemCommand): Promise<unknown> {
    try {
      const { $metadata: _metadata, ...output } = (await this.dynamodb.client.send(command as never)) as { $metadata: unknown };
      return output;
    } catch (err) {
      throw namedError(`DynamoDB.${(err as Error).name}`, (err as Error).message);
    }
  }
}

/** A Lambda error as Step Functions sees it: Error is the error's name, Cause a JSON document. */
async function lambdaCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    throw namedError(error.name, JSON.stringify({ errorType: error.name, errorMessage: error.message }));
  }
}

let runnerImage: Promise<string> | undefined;

/** The runner image's staged context, bundled once per process (only Fargate tasks need it). */
function runnerImageContext(): Promise<string> {
  runnerImage ??= import('../../cdk/runner-image.js').then(({ stageRunnerImage }) => stageRunnerImage({ bundle: true }));
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

/**
 * aws-local-stepfunctions reads TimeoutSecondsPath against the state's Parameters, not its
 * input as Step Functions does; the Fargate handler enforces that timeout itself instead.
 */
function withoutTimeoutPaths(asl: WorkflowDefinition['asl']): WorkflowDefinition['asl'] {
  const States = Object.fromEntries(
    Object.entries(asl.States).map(([name, state]) => {
      const { TimeoutSecondsPath: _ignored, ...rest } = state;
      return [name, rest];
    }),
  );
  return { ...asl, States };
}

function namedError(name: string, message: string): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

function toExecutionOutcome(err: unknown): ExecutionOutcome {
  const error = err as Error & { cause?: Error };
  if (error?.name === 'ExecutionAbortedError') return { status: 'ABORTED' };
  if (error?.name === 'ExecutionTimeoutError') return { status: 'TIMED_OUT', error: 'States.Timeout' };
  const cause = error?.cause instanceof Error ? error.cause : error;
  return { status: 'FAILED', error: cause?.name ?? 'Error', cause: cause?.message };
}
