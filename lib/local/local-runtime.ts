import { randomUUID } from 'node:crypto';
import './polyfill.js';
import { TransactWriteItemsCommand, UpdateItemCommand, type TransactWriteItemsCommandInput, type UpdateItemCommandInput } from '@aws-sdk/client-dynamodb';
import { StateMachine, type RunOptions, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { v4 as uuidv4 } from 'uuid';
import type { ExecutionWatch } from '../claude/execution-watch.js';
import { runSessionTask, type FixedEndpointRunnerConfig, type RunnerConfig, type RunnerInput } from '../claude/run-session-task.js';
import { runnerConfigOf, splitRunnerConfig } from '../claude/runner-config.js';
import { standbyForSession, type ClaudeEndpoint, type StandbyClaude } from '../claude/claude-process.js';
import { sessionStartOf, parseExecutionInput, type ExecutionInput } from '../sessions/execution-input.js';
import { assertProjectRulesWithin, withinProjectLimit } from '../sessions/project-limits.js';
import { executionArnFor, type LocalStartOptions, type SessionStarter, type StartedSession } from '../api/session-starter.js';
import type { SessionRecord } from '../sessions/session-item.js';
import { SessionRepository } from '../sessions/session-repository.js';
import { MilestoneRepository } from '../sessions/milestone-repository.js';
import type { LocalS3 } from './local-s3.js';
import { LocalFargate, localGitTokenMinter, type EcsRunTaskParameters } from './local-fargate.js';
import { closeOrphans, runsFolder, stopOrphanRuns } from './orphan-sweep.js';
import { executionContext, fastRetries, withStepFunctionsTaskTimeouts } from './asl-patches.js';
import { lambdaCall, namedError } from './integration-errors.js';
import type { TranscriptStorage } from '../claude/transcript-store.js';
import { createSession, type SessionPolicy, type ValidateInputEvent } from '../sessions/session-creation.js';
import { ProjectSlots } from '../sessions/project-slots.js';
import { reapExecution, type ExecutionDescription } from '../sessions/session-reaper.js';
import { sweepEndedExecutions, type SweptSession } from '../sessions/session-sweeper.js';
import type { AnthropicStandIn } from './anthropic-stand-in.js';
import { localClaudeEndpoint, localProvider, type EndpointSource } from './local-endpoint.js';
import { LocalDynamoDb } from './local-dynamodb.js';
import { LocalTaskCallbacks } from './local-task-callbacks.js';
import { LocalTaskCredentials } from './task-credentials.js';
import { acquireStateLock, makePrivateStateFolder } from './state-lock.js';
import { loadWorkflowDefinition, type WorkflowDefinition } from './workflow-definition.js';

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
  /**
   * What ECS answers the next RunTask calls before it starts a task, in order (tests: capacity
   * unavailable is `ECS.AmazonECSException`). @default none: every RunTask starts its task
   */
  fargateRefusals?: string[];
  /**
   * Whether this machine's Fargate tasks can start the CLI as a user of their own (the task is
   * root): without, a session naming a shell on fargate is refused (SessionPolicy.fargateSeparateUser).
   * @default whether this process is root
   */
  fargateSeparateUser?: boolean;
  /**
   * The runner Lambda's reserved concurrency (the deployment's `runnerConcurrency`): a RunClaude
   * invoke while that many runner invocations run (an aborted execution's runner too, until it
   * notices) is refused `Lambda.TooManyRequestsException`, as Lambda throttles it. @default none
   */
  runnerConcurrency?: number;
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

/**
 * An execution's event log, kept: each reader gets every event from the first, then the live
 * ones, so a client that asks a moment after the start (the engine's event stream) misses none.
 */
class EventFeed implements AsyncIterable<EventLog> {
  private readonly events: EventLog[] = [];
  private ended = false;
  private wake: Array<() => void> = [];

  constructor(source: AsyncIterable<EventLog>) {
    void (async () => {
      try {
        for await (const event of source) this.notify(() => this.events.push(event));
      } catch {
        // the outcome says how the execution ended
      } finally {
        this.notify(() => (this.ended = true));
      }
    })();
  }

  private notify(change: () => void): void {
    change();
    const waiting = this.wake;
    this.wake = [];
    for (const w of waiting) w();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<EventLog> {
    for (let next = 0; ; ) {
      if (next < this.events.length) yield this.events[next++]!;
      else if (this.ended) return;
      else await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }
}

/** How long an ended execution's events stay readable: a client that attached late still sees them. */
const ENDED_EVENTS_KEPT_MS = 10 * 60 * 1000;

type TaskHandlers = NonNullable<NonNullable<RunOptions['overrides']>['taskResourceLocalHandlers']>;
type StateJson = Parameters<TaskHandlers[string]>[0];

/**
 * A Task state's handler: it receives the state's rendered Parameters, JSON of the shape its
 * Parameters build (the ASL is the contract), and returns the service's JSON answer.
 */
function taskHandler<I>(handle: (input: I) => Promise<unknown>): TaskHandlers[string] {
  return async (input: StateJson) => (await handle(input as unknown as I)) as unknown as StateJson;
}

const STATE_MACHINE_ARN = 'arn:aws:states:us-east-1:000000000000:stateMachine:ClaudeSessionsWorkflow';

/**
 * The synthesized state machine, run on this machine: aws-local-stepfunctions executes
 * the ASL from `cdk synth`; its Task states are routed to the real calls (DynamoDB on
 * dynalite, the CreateSession and runner code in-process, the real Claude CLI).
 */
/** How often a local runner asks whether its execution still runs (5 s on AWS: DescribeExecution's quota). */
const LOCAL_WATCH_INTERVAL_MS = 1_000;
/** How long a closing runtime waits for its Fargate tasks to stop themselves (their watch asks every 5 s). */
const FARGATE_DRAIN_MS = 15_000;

export class LocalRuntime implements SessionStarter {
  readonly repository: SessionRepository;
  readonly milestones: MilestoneRepository;
  readonly slots: ProjectSlots;
  /** Set when the runtime started its own stand-in (no API key given). */
  readonly standIn?: AnthropicStandIn;
  private readonly machine: StateMachine;
  private readonly executions = new Map<string, LocalExecution>();
  /** How each execution ended (SUCCEEDED, FAILED, ABORTED, TIMED_OUT), for its runner's watch and DescribeExecution. */
  private readonly endedStatus = new Map<string, ExecutionOutcome>();
  /** What ECS answers the next RunTask calls before starting a task (LocalRuntimeOptions.fargateRefusals). */
  private fargateRefusals: string[] = [];
  /** Runner tasks in progress: one whose execution was aborted runs on until it notices. */
  private readonly runners = new Set<Promise<unknown>>();
  /** LocalRuntimeOptions.runnerConcurrency. */
  private runnerConcurrency: number | undefined;
  /**
   * Where the environment's endpoint comes from when this runtime resolved it (none given): asked
   * again for each session its own executions run (the API's, the page's, a schedule's), since
   * AWS credentials expire while an engine runs. A `run` brings its own, resolved as it starts.
   */
  private endpointSource: EndpointSource | undefined;
  private readonly ended = new Map<string, { execution: LocalExecution; timer: NodeJS.Timeout }>();

  private releaseLock: () => Promise<void> = async () => {};
  /** Sessions found RUNNING at start (their process had died) and closed ABORTED. */
  orphansClosed: string[] = [];

  /**
   * Emulates EventBridge's best-effort delivery (tests): while true, an execution that ends other
   * than SUCCEEDED sends the reaper no event, so only `sweep()` can close its session, as on AWS
   * when the status-change event is lost.
   */
  dropExecutionEvents = false;

  /**
   * Called with the session id of each execution that ended, once the reaper had its turn (and
   * of each session the sweep closed): where the engine hears "Session Closed" (the stream and
   * EventBridge on AWS). The session may still be RUNNING when its close was lost: read it.
   */
  onExecutionEnded?: (sessionId: string) => void;

  private readonly fargate: LocalFargate;

  /** Lose ECS's "task stopped" events (LocalFargate.dropTaskEvents): a dead task is then seen at its heartbeat's end only. */
  set dropTaskEvents(drop: boolean) {
    this.fargate.dropTaskEvents = drop;
  }

  /** Fargate tasks running now, as ECS ListTasks would show them. */
  get fargateTasks(): ReadonlyMap<string, import('node:child_process').ChildProcess> {
    return this.fargate.tasks;
  }

  private s3Started?: Promise<LocalS3>;

  /**
   * S3 (s3rver), started on first use: only milestones need it, and loading it costs most
   * of a second, which a fresh session's `run` should not pay. It admits this runtime's own
   * clients, and each Fargate task to its milestone's transcript with the task's own credential.
   */
  s3(): Promise<LocalS3> {
    this.s3Started ??= import('./local-s3.js').then(({ LocalS3 }) => LocalS3.start({ path: this.s3Path, tasks: this.callbacks.tasks }));
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
    private readonly runnerConfig: FixedEndpointRunnerConfig,
    ownStandIn: AnthropicStandIn | undefined,
    private readonly callbacks: LocalTaskCallbacks,
    private readonly fargateHeartbeatSeconds: number | undefined,
    readonly policy: SessionPolicy,
    private readonly s3Path: string | undefined,
  ) {
    this.runnerConfig = { ...this.runnerConfig, transcripts: this.transcripts };
    this.fargate = new LocalFargate(callbacks, this.runnerConfig, () => this.s3(), { endpoint: dynamodb.endpoint, tableName: dynamodb.tableName });
    this.repository = new SessionRepository(dynamodb.documentClient, dynamodb.tableName);
    this.milestones = new MilestoneRepository(dynamodb.documentClient, dynamodb.tableName);
    this.slots = new ProjectSlots(dynamodb.documentClient, dynamodb.tableName);
    this.standIn = ownStandIn;
    // Validated when it was synthesized and cached (loadWorkflowDefinition).
    this.machine = new StateMachine(withStepFunctionsTaskTimeouts(definition.asl) as unknown as StateMachineDefinition, { validationOptions: { noValidate: true } });
  }

  /** Boots the runtime: takes the state folder's lock, loads the definition, starts its stores and stand-ins. */
  static async boot(options: LocalRuntimeOptions = {}): Promise<LocalRuntime> {
    // A project narrows the runner's permission rules, never widens them: as the synth refuses it.
    assertProjectRulesWithin(options.policy?.projectLimits, options.runner?.permissionRules, 'CLAUDE_SESSIONS_PROJECT_LIMITS');
    const cacheDir = options.home ? join(options.home, 'cache') : (options.cacheDir ?? join(process.cwd(), '.claude-sessions', 'cache'));
    let releaseLock = async () => {};
    if (options.home) {
      await makePrivateStateFolder(options.home);
      releaseLock = await acquireStateLock(options.home, options.command ?? 'claude-sessions');
      // Before anything runs here: what the last process's runs left (it died with them running) goes.
      await stopOrphanRuns(options.home).catch(async (err: unknown) => {
        await releaseLock();
        throw err;
      });
    }
    const definition = await loadWorkflowDefinition(cacheDir).catch(async (err: unknown) => {
      await releaseLock();
      throw err;
    });
    // This runtime's own clients hold one token, in this process only; each Fargate task gets a
    // credential of its own, for its own session (it records its stopped run in the table, as a
    // deployed one does with its role), revoked when it ends.
    const taskCredentials = new LocalTaskCredentials();
    const dynamodb = await LocalDynamoDb.start({
      path: options.home ? join(options.home, 'dynamodb') : undefined,
      table: definition.table,
      tasks: taskCredentials,
    }).catch(async (err: unknown) => {
      await releaseLock();
      throw err;
    });
    // Whatever fails from here on, nothing started stays open (a stray server keeps Node alive).
    let ownStandIn: AnthropicStandIn | undefined;
    let callbacks: LocalTaskCallbacks | undefined;
    try {
      let endpoint = options.endpoint ?? options.standIn?.endpoint;
      let endpointSource: EndpointSource | undefined;
      if (!endpoint) ({ endpoint, standIn: ownStandIn, source: endpointSource } = await localClaudeEndpoint(process.env, localProvider(undefined, process.env)));
      // The settings it was given are what its Fargate tasks get as their environment (LocalFargate).
      const { settings, platform } = splitRunnerConfig(options.runner ?? {});
      const runnerConfig = runnerConfigOf(settings, {
        savePatch: localPatches(options.home), codeCommitCredentials: localAwsCredentials,
        // The runs' HOMEs in the state folder: the next process finds what a killed one left (stopOrphanRuns).
        ...(options.home ? { workRoot: runsFolder(options.home) } : {}),
        ...platform, endpoint,
      });
      // DescribeExecution answers from the executions this runtime runs (a task reads its prompt there);
      // a task's git token comes from the runner's own credential, by the minter's Invoke, as on AWS.
      callbacks = await new LocalTaskCallbacks(
        (arn) => runtime.describeExecution(arn).then(({ status, input }) => ({ status, input }), () => undefined),
        taskCredentials,
        localGitTokenMinter(runnerConfig),
      ).start();
      const runtime = new LocalRuntime(
        definition, dynamodb, runnerConfig, ownStandIn, callbacks, options.fargateHeartbeatSeconds,
        { ...options.policy, fargateSeparateUser: options.fargateSeparateUser ?? process.getuid?.() === 0 },
        options.home ? join(options.home, 's3') : undefined,
      );
      runtime.releaseLock = releaseLock;
      runtime.fargateRefusals = [...(options.fargateRefusals ?? [])];
      runtime.runnerConcurrency = options.runnerConcurrency;
      runtime.endpointSource = endpointSource;
      if (options.home) {
        // Holding the lock means no other process runs anything here: a RUNNING session
        // is an orphan of a process that died (kill -9, a crash) and is closed now.
        runtime.orphansClosed = await closeOrphans(dynamodb, runtime);
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
   * Step Functions' StartExecution, as a console or a test calls it, unchecked (CreateSession
   * checks): the name is the session id when the input has one. A name already running returns
   * that execution, as Step Functions does for an identical request. A session is started with
   * `startSession`, which comes here through `start`.
   */
  startExecution(input: unknown, name?: string, options: LocalStartOptions = {}): LocalExecution {
    const sessionId = (input as { sessionId?: unknown } | null)?.sessionId;
    const executionName = name ?? (typeof sessionId === 'string' && sessionId ? sessionId : uuidv4());
    const existing = this.executions.get(executionName);
    if (existing) {
      void options.standby?.discard();
      return existing;
    }

    const executionArn = executionArnFor(STATE_MACHINE_ARN, executionName);
    const stop = new AbortController();
    const run = this.machine.run(input as StateJson, {
      overrides: {
        taskResourceLocalHandlers: this.taskHandlers(stop.signal, executionName, options.standby, options.endpoint),
        retryIntervalOverrides: fastRetries(this.definition.asl),
      },
      context: executionContext({ arn: STATE_MACHINE_ARN, name: 'ClaudeSessionsWorkflow' }, { arn: executionArn, name: executionName }),
    });
    const outcome = run.result
      .then(
        (output): ExecutionOutcome => ({ status: 'SUCCEEDED', output }),
        (err: unknown): ExecutionOutcome => toExecutionOutcome(err),
      )
      .then(async (result) => {
        this.endedStatus.set(executionName, result);
        // A CLI started ahead that no runner took (bad input, a refused start) never had a prompt.
        await options.standby?.discard();
        // What EventBridge delivers to the reaper on AWS, delivered here in-process (unless dropped, as it may be there).
        if (result.status !== 'SUCCEEDED' && !this.dropExecutionEvents) {
          await reapExecution(this.repository, {
            executionArn, name: executionName, status: result.status, input: JSON.stringify(input ?? null),
            error: result.error ?? null, cause: result.cause ?? null,
          }, { milestones: this.milestones, slots: this.slots }).catch(() => undefined);
        }
        this.onExecutionEnded?.(executionName);
        return result;
      });
    const abort = () => {
      stop.abort();
      run.abort();
    };
    const events = new EventFeed(run.eventLogs);
    const execution: LocalExecution = { executionArn, name: executionName, input: JSON.stringify(input ?? null), events, outcome, abort };
    this.executions.set(executionName, execution);
    clearTimeout(this.ended.get(executionName)?.timer);
    this.ended.delete(executionName);
    this.endedStatus.delete(executionName); // a new execution of that name runs
    void outcome.finally(() => {
      this.executions.delete(executionName);
      const timer = setTimeout(() => {
        this.ended.delete(executionName);
        this.endedStatus.delete(executionName);
      }, ENDED_EVENTS_KEPT_MS).unref();
      this.ended.set(executionName, { execution, timer });
    });
    return execution;
  }

  /**
   * Where `startSession` starts a local session (SessionStarter): StartExecution with name =
   * sessionId, and as on AWS a session id that is taken (its execution runs, or its session exists,
   * which outlives the executions this runtime remembers) starts nothing new.
   */
  async start(input: ExecutionInput & { sessionId: string }, options: LocalStartOptions = {}): Promise<StartedSession> {
    const executionArn = executionArnFor(STATE_MACHINE_ARN, input.sessionId);
    if (this.executions.has(input.sessionId) || (await this.repository.get(input.sessionId))) {
      return { sessionId: input.sessionId, executionArn, started: false };
    }
    const execution = this.startExecution(input, input.sessionId, options);
    void execution.outcome; // runs in the background; its session tells how it went
    return { sessionId: input.sessionId, executionArn: execution.executionArn, started: true };
  }

  /** Executions running now. */
  get running(): number {
    return this.executions.size;
  }

  /** A running execution, by name (the session id). */
  execution(name: string): LocalExecution | undefined {
    return this.executions.get(name);
  }

  /** An execution running or ended in the last minutes, by name: its events replay from the first. */
  recentExecution(name: string): LocalExecution | undefined {
    return this.executions.get(name) ?? this.ended.get(name)?.execution;
  }

  /** A running execution's input, by ARN (DescribeExecution). */
  inputOf(executionArn: string): string | undefined {
    return [...this.executions.values()].find((e) => e.executionArn === executionArn)?.input;
  }

  /**
   * DescribeExecution of this runtime's executions: RUNNING, or how it ended while its events are
   * kept (10 minutes); after that, or for one another process ran, `ExecutionDoesNotExist`.
   */
  async describeExecution(executionArn: string): Promise<ExecutionDescription> {
    const name = executionArn.slice(executionArn.lastIndexOf(':') + 1);
    const execution = this.executions.get(name) ?? this.ended.get(name)?.execution;
    if (execution?.executionArn === executionArn) {
      const outcome = this.endedStatus.get(name);
      if (!outcome) return { status: 'RUNNING', input: execution.input };
      return { status: outcome.status, input: execution.input, error: outcome.error ?? null, cause: outcome.cause ?? null };
    }
    throw namedError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
  }

  /**
   * The sweeper's pass, as the schedule runs it on AWS (`sweepEndedExecutions`): closes the
   * RUNNING sessions whose execution has ended and frees their slots and leases. The engine runs
   * it periodically; `minAgeMs` 0 sweeps sessions of any age (tests).
   */
  async sweep(options: { minAgeMs?: number } = {}): Promise<SweptSession[]> {
    const swept = await sweepEndedExecutions(this.repository, {
      milestones: this.milestones, slots: this.slots, describe: (arn) => this.describeExecution(arn), minAgeMs: options.minAgeMs,
    });
    for (const { sessionId, closed } of swept) if (closed) this.onExecutionEnded?.(sessionId);
    return swept;
  }

  /** Starts an execution, waits for it to end, and returns the session it tracked. */
  async run(input: unknown): Promise<{ execution: LocalExecution; outcome: ExecutionOutcome; session?: SessionRecord }> {
    const execution = this.startExecution(input);
    const outcome = await execution.outcome;
    const session = await this.repository.get(execution.name).catch(() => undefined);
    return { execution, outcome, session };
  }

  async close(): Promise<void> {
    for (const { timer } of this.ended.values()) clearTimeout(timer);
    for (const execution of this.executions.values()) execution.abort();
    await Promise.allSettled([...this.executions.values()].map((e) => e.outcome));
    // As on AWS, a runner outlives its aborted execution until it notices (within a watch interval);
    // a Fargate task too (its heartbeat or its watch), and is stopped only if it does not.
    await Promise.allSettled(this.runners);
    await this.fargate.stopAll(FARGATE_DRAIN_MS);
    await this.standIn?.close();
    await this.callbacks.close();
    if (this.s3Started) await (await this.s3Started).close();
    await this.dynamodb.close();
    await this.releaseLock();
  }

  /** The Claude its runner talks to when an execution names none (a `run` names its shell's). */
  get endpoint(): ClaudeEndpoint {
    return this.runnerConfig.endpoint;
  }

  /**
   * The CLI this runtime's runner would start for a fresh session with this input (its
   * sessionId included) and `endpoint`, booted now; a run given it uses it if it still matches.
   */
  async standbyFor(input: Record<string, unknown>, endpoint?: ClaudeEndpoint, maxAgeMs?: number): Promise<StandbyClaude> {
    // As CreateSession will make it (its project's caps included), so the booted CLI's flags match the run's.
    const { session } = sessionStartOf(withinProjectLimit(parseExecutionInput(input), this.policy.projectLimits), { executionArn: '' });
    return standbyForSession(session, endpoint ? { ...this.runnerConfig, endpoint } : this.runnerConfig, maxAgeMs);
  }

  /** `endpoint`: this execution's Claude, when not the runtime's (a `run` client's own environment). */
  /** RUNNING, or how a local execution ended: what DescribeExecution says on AWS. */
  private executionStatus(executionName: string): string {
    return this.endedStatus.get(executionName)?.status ?? (this.executions.has(executionName) ? 'RUNNING' : 'ABORTED');
  }

  /**
   * The runner's watch of its execution (ExecutionWatch). The state machine's abort does not reach
   * a running Lambda task, here as on AWS: the runner asks, every second here, and records the spend.
   */
  private watchOf(executionName: string): ExecutionWatch {
    const invocation = randomUUID(); // each runner call is its own invocation, as each Lambda invoke is
    return {
      claimAttempt: (start, attempt) => this.repository.claimAttempt(start, attempt, invocation),
      status: async () => this.executionStatus(executionName),
      intervalMs: LOCAL_WATCH_INTERVAL_MS,
      recordStopped: async (start, outcome, attemptSpend) => {
        await this.repository.recordStoppedRun(start, outcome, attemptSpend);
      },
    };
  }

  private taskHandlers(signal: AbortSignal, executionName: string, standby?: StandbyClaude, endpoint?: ClaudeEndpoint): TaskHandlers {
    // The execution's own endpoint (a `run`'s), else the environment's as of this session.
    const runnerConfig: FixedEndpointRunnerConfig = endpoint ? { ...this.runnerConfig, endpoint }
      : this.endpointSource ? { ...this.runnerConfig, sessionEndpoint: this.endpointSource } : this.runnerConfig;
    // The first runner call is handed it (RunnerEdge); runClaude uses it if it was started as that run would start one.
    const takeStandby = () => {
      const taken = standby;
      standby = undefined;
      return taken;
    };
    const handlers: TaskHandlers = {};
    for (const [name, state] of Object.entries(this.definition.asl.States)) {
      if (state.Type !== 'Task') continue;
      const resource = String(state.Resource);
      if (resource === 'arn:aws:states:::dynamodb:updateItem') {
        handlers[name] = taskHandler((params: UpdateItemCommandInput) => this.dynamodbCall(new UpdateItemCommand(params)));
      } else if (resource.endsWith(':states:::aws-sdk:dynamodb:transactWriteItems')) {
        handlers[name] = taskHandler((params: TransactWriteItemsCommandInput) => this.dynamodbCall(new TransactWriteItemsCommand(params), 'DynamoDb'));
      } else if (resource.endsWith(':states:::ecs:runTask.waitForTaskToken')) {
        const heartbeatSeconds = this.fargateHeartbeatSeconds ?? (state.HeartbeatSeconds as number | undefined);
        handlers[name] = taskHandler(async (params: EcsRunTaskParameters) => {
          const refusal = this.fargateRefusals.shift();
          if (refusal) throw namedError(refusal, 'Capacity is unavailable at this time. Please try again later or in a different availability zone');
          return this.fargate.runTask(params, heartbeatSeconds, signal, runnerConfig.endpoint);
        });
      } else if (this.definition.functions[resource] === 'create-session') {
        handlers[name] = taskHandler((event: ValidateInputEvent) => lambdaCall(() => createSession(event, this.policy, this.repository, this.slots)));
      } else if (this.definition.functions[resource] === 'runner') {
        handlers[name] = taskHandler(async (input: RunnerInput) => {
          // Lambda refuses the invoke itself: nothing of the function runs (no claim, no Claude).
          if (this.runnerConcurrency !== undefined && this.runners.size >= this.runnerConcurrency) {
            throw namedError('Lambda.TooManyRequestsException', 'Rate Exceeded. (Service: Lambda, Status Code: 429, Reason: ReservedFunctionConcurrentInvocationLimitExceeded)');
          }
          return lambdaCall(() => this.tracked(runSessionTask(input, { ...runnerConfig, watch: this.watchOf(executionName) }, { standby: takeStandby() })));
        });
      } else {
        throw new Error(`state ${name} calls ${resource}, which the local runtime cannot run`);
      }
    }
    return handlers;
  }

  /** A runner's promise, kept until it settles: close() waits for runners its aborts left running. */
  private tracked<T>(run: Promise<T>): Promise<T> {
    this.runners.add(run);
    void run.catch(() => undefined).finally(() => this.runners.delete(run));
    return run;
  }

  /**
   * A direct DynamoDB integration: errors carry the names Step Functions gives them, `DynamoDB.`
   * for the optimized integration, `DynamoDb.` for the AWS SDK one.
   */
  private async dynamodbCall(command: UpdateItemCommand | TransactWriteItemsCommand, prefix = 'DynamoDB'): Promise<object> {
    try {
      const { $metadata: _metadata, ...output } = await this.dynamodb.client.send(command as UpdateItemCommand);
      return output;
    } catch (err) {
      throw namedError(`${prefix}.${(err as Error).name}`, (err as Error).message);
    }
  }
}

function toExecutionOutcome(err: unknown): ExecutionOutcome {
  const error = err as Error & { cause?: Error };
  if (error?.name === 'ExecutionAbortedError') return { status: 'ABORTED' };
  if (error?.name === 'ExecutionTimeoutError') return { status: 'TIMED_OUT', error: 'States.Timeout' };
  const cause = error?.cause instanceof Error ? error.cause : error;
  return { status: 'FAILED', error: cause?.name ?? 'Error', cause: cause?.message };
}

/** A workspace change that could not be pushed, kept in the state folder (workspaces/<sessionId>.patch). */
function localPatches(home: string | undefined): (sessionId: string, patch: Buffer) => Promise<string> {
  return async (sessionId, patch) => {
    const dir = home ? join(home, 'workspaces') : join(tmpdir(), 'claude-sessions-workspaces');
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${sessionId}.patch`);
    await writeFile(file, patch);
    return file;
  };
}

/**
 * This machine's AWS credentials (the SDK's default chain), for a CodeCommit workspace's git
 * password; the chain is loaded only when a session needs it.
 */
let localChain: AwsCredentialIdentityProvider | undefined;
const localAwsCredentials: AwsCredentialIdentityProvider = async (props) => {
  // One chain, which keeps what it resolved (an SSO or assume-role profile) until it expires.
  localChain ??= (await import('@aws-sdk/credential-providers')).fromNodeProviderChain();
  return localChain(props);
};
