import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { statSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildClaudeArgs, type ClaudeArgsOptions } from './claude-args.js';
import { ModelGateway } from './model-gateway.js';
import { handOver, killRunProcesses, processStartTicks, runUser, type RunUser } from './run-processes.js';

// How the CLI process is started. No schema library here: the process that starts it loads
// only what it needs (the Lambda's cold start, the task's).

/** Where the CLI reaches Claude: the Anthropic API with a key, or Amazon Bedrock with AWS credentials. */
export type ClaudeEndpoint = AnthropicEndpoint | BedrockEndpoint;
export type ModelProvider = 'anthropic' | 'bedrock';
export const MODEL_PROVIDERS: readonly ModelProvider[] = ['anthropic', 'bedrock'];

export interface AnthropicEndpoint {
  provider?: 'anthropic';
  /** Passed to the CLI only, never logged or returned. */
  apiKey: string;
  /** ANTHROPIC_BASE_URL; unset means the real API. */
  baseUrl?: string;
  /** ANTHROPIC_MODEL; unset, the CLI picks its own default. */
  model?: string;
}

/** AWS credentials handed to the CLI: for invoking the model only (docs/ARCHITECTURE.md#bedrock). */
export interface ModelCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** When they stop working: the run is stopped before (an assumed role's last at most one hour). */
  expiration?: Date;
}

/** The model a local run on Bedrock is pinned to when ANTHROPIC_MODEL does not say: an unpinned CLI picks its own default. */
export const DEFAULT_BEDROCK_MODEL = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';

export interface BedrockEndpoint {
  provider: 'bedrock';
  /** AWS_REGION: where the model is invoked. */
  region: string;
  /** ANTHROPIC_MODEL, always set: an unpinned CLI picks its own default, which moves with CLI versions. */
  model: string;
  /** ANTHROPIC_DEFAULT_HAIKU_MODEL: the small, fast model the CLI uses for its side tasks. */
  smallFastModel?: string;
  /** ANTHROPIC_BEDROCK_BASE_URL; unset means Bedrock's own endpoint in the region. */
  baseUrl?: string;
  /** Absent: the CLI signs nothing (CLAUDE_CODE_SKIP_BEDROCK_AUTH, for a stand-in or a signing gateway). */
  credentials?: ModelCredentials;
}


/** Everything that decides how the CLI process is started (all of a run's options but the prompt and its lifecycle). */
export interface ClaudeProcessOptions extends ClaudeArgsOptions {
  endpoint: ClaudeEndpoint;
  /** Wall-clock limit for the whole run. */
  timeoutMs: number;
  /** Kill when the CLI prints nothing for this long (a hung CLI or a stalled stream). */
  idleTimeoutMs: number;
  /** How many times the CLI itself retries a failed API call (CLAUDE_CODE_MAX_RETRIES). */
  maxRetries?: number;
  /** The CLI's binary; defaults to the one of @anthropic-ai/claude-code. */
  claudePath?: string;
  /** Where the per-run HOME is made; defaults to the OS temp dir (Lambda: /tmp). */
  workRoot?: string;
  /**
   * Start the CLI as a user of its own (a fresh uid per run, RunUser), so nothing it starts can read
   * the runner's environment or memory: Fargate, where the runner is root. A runner that is not root
   * cannot, and runs it as itself. @default false
   */
  separateUser?: boolean;
  /**
   * The runner is alone in its sandbox with what it starts (a Lambda execution environment): after
   * the run, every process of the runner's user that started after the CLI is the run's, and is
   * killed, one that left the CLI's group and cleared its environment included. Never on a shared
   * machine (the local runtime), where that user's other programs would be killed. @default false
   */
  ownsSandbox?: boolean;
}

/**
 * A standby older than this is not used: the CLI waits for its prompt as long as it takes
 * (stream-json input), but what it was started with (the endpoint's credentials) may age.
 */
export const STANDBY_MAX_AGE_MS = 5 * 60_000;

let claudePath: string | undefined;

/**
 * The native `claude` binary. The package's postinstall copies it over bin/claude.exe;
 * where install scripts did not run (npm --ignore-scripts, the image build), that file is a
 * stub, and the binary is taken from the platform package it would have been copied from.
 */
export function defaultClaudePath(): string {
  if (claudePath) return claudePath;
  const require = createRequire(import.meta.url);
  const wrapper = join(require.resolve('@anthropic-ai/claude-code/package.json'), '..', 'bin', 'claude.exe');
  if (statSync(wrapper).size > 1_000_000) return (claudePath = wrapper);
  const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;
  const musl = process.platform === 'linux' && !glibc ? '-musl' : '';
  const binary = process.platform === 'win32' ? 'claude.exe' : 'claude';
  try {
    const platformPackage = require.resolve(`@anthropic-ai/claude-code-${process.platform}-${process.arch}${musl}/package.json`);
    return (claudePath = join(platformPackage, '..', binary));
  } catch {
    return (claudePath = wrapper); // the stub, which says how to install the binary
  }
}

export async function makeHome(workRoot: string | undefined): Promise<{ home: string; workDir: string }> {
  const home = await mkdtemp(join(workRoot ?? tmpdir(), 'claude-run-'));
  const workDir = join(home, 'work');
  await mkdir(workDir, { recursive: true });
  return { home, workDir };
}

/** How one run starts the CLI: all of it but the prompt, which goes to stdin. */
export interface ClaudeSpawn {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export function claudeSpawn(options: ClaudeProcessOptions, home: string, workDir: string): ClaudeSpawn {
  return { command: options.claudePath ?? defaultClaudePath(), args: buildClaudeArgs(options), env: claudeEnv(options, home), cwd: workDir };
}

/** A CLI started for a run: the process, the gateway (ModelGateway) it reaches the model through, and its user if it has one. */
export interface StartedClaude {
  child: ChildProcess;
  gateway: ModelGateway;
  user?: RunUser;
  /** Where the runner owns its sandbox: when the CLI started, in clock ticks since boot (/proc). */
  startTicks?: number;
}

/** Every process the run started, gone: the CLI's group, and what left it (run-processes.ts). */
export async function stopRunProcesses(started: StartedClaude): Promise<void> {
  signalGroup(started.child.pid, 'SIGKILL');
  await killRunProcesses({
    user: started.user, marker: started.gateway.marker,
    startedSince: started.startTicks !== undefined ? { uid: process.getuid!(), ticks: started.startTicks } : undefined,
  });
}

/**
 * Starts the CLI as `claudeSpawn` describes it, except that it reaches the model through a
 * gateway of its own: its environment holds no key and no AWS credentials, only the gateway's
 * URL and a per-run token.
 */
export async function startClaudeBehindGateway(options: ClaudeProcessOptions, home: string, workDir: string): Promise<StartedClaude> {
  const gateway = await ModelGateway.open(options.endpoint, { budgetUsd: options.maxBudgetUsd });
  try {
    const user = options.separateUser ? runUser() : undefined;
    if (user) await handOver(home, user);
    const child = startClaude(claudeSpawn({ ...options, endpoint: gateway.endpoint }, home, workDir), user);
    const startTicks = options.ownsSandbox && child.pid ? await processStartTicks(child.pid) : undefined;
    return { child, gateway, user, startTicks };
  } catch (err) {
    await gateway.close();
    throw err;
  }
}

export function startClaude(spec: ClaudeSpawn, user?: RunUser): ChildProcess {
  return spawn(spec.command, spec.args, {
    cwd: spec.cwd,
    env: spec.env,
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true, // its own process group, so a kill takes the tools it started too
  });
}

/** What must be equal for a CLI started ahead to be the one a run would start (its own HOME aside). */
function spawnKey(spec: ClaudeSpawn, home: string): string {
  const env = Object.entries(spec.env).map(([k, v]) => [k, v?.split(home).join('<home>')]).sort();
  return JSON.stringify([spec.command, spec.args, env]);
}

/**
 * The CLI, started before its prompt is known: it boots (most of a cold run's second)
 * ahead of its run (the local engine's next `run`), then waits on stdin. Until the prompt arrives
 * it sends no Messages request, so nothing is spent before the session exists; a standby
 * that is not claimed is stopped. Only fresh conversations: a resumed one needs its
 * transcript in place before the CLI starts.
 */
export class StandbyClaude {
  private state: 'waiting' | 'claimed' | 'gone' = 'waiting';
  private readonly startedAt = Date.now();

  /** Whether a run took it (else it was, or will be, stopped unused). */
  get claimed(): boolean {
    return this.state === 'claimed';
  }

  private constructor(
    private readonly key: string,
    readonly child: ChildProcess,
    private readonly gateway: ModelGateway,
    readonly home: string,
    readonly workDir: string,
    /** The session it was started for (its `--session-id`): the run that claims it must be that session. */
    readonly sessionId: string,
    private readonly maxAgeMs: number,
  ) {
    child.once('error', () => (this.state = 'gone')); // a spawn failure shows again, in full, when the run spawns anew
    child.once('exit', () => {
      if (this.state === 'waiting') this.state = 'gone';
    });
    child.stdin?.on('error', () => {});
  }

  static async start(options: ClaudeProcessOptions, maxAgeMs = STANDBY_MAX_AGE_MS): Promise<StandbyClaude> {
    if (options.conversation !== 'fresh') throw new Error('only a fresh conversation can be started ahead of its prompt');
    const { home, workDir } = await makeHome(options.workRoot);
    try {
      // Keyed on the deployment's endpoint (held in memory only): a run for another endpoint does not match.
      const key = spawnKey(claudeSpawn(options, home, workDir), home);
      const { child, gateway } = await startClaudeBehindGateway(options, home, workDir);
      return new StandbyClaude(key, child, gateway, home, workDir, options.sessionId, maxAgeMs);
    } catch (err) {
      await rm(home, { recursive: true, force: true });
      throw err;
    }
  }

  /** Still waiting for a run, and young enough to be given one. */
  get usable(): boolean {
    return this.state === 'waiting' && !this.stale;
  }

  private get stale(): boolean {
    return Date.now() - this.startedAt > this.maxAgeMs;
  }

  /** Hands the process to a run that would start the very same one; undefined otherwise. */
  claim(options: ClaudeProcessOptions): { child: ChildProcess; gateway: ModelGateway; home: string; workDir: string } | undefined {
    // Only a fresh conversation's arguments match (start() refuses others), so a resumed run never claims it.
    if (!this.usable) return undefined;
    if (spawnKey(claudeSpawn(options, this.home, this.workDir), this.home) !== this.key) return undefined;
    this.state = 'claimed';
    return { child: this.child, gateway: this.gateway, home: this.home, workDir: this.workDir };
  }

  /** Stops an unclaimed CLI (it never had a prompt) and removes its HOME. */
  async discard(): Promise<void> {
    if (this.state === 'claimed') return;
    this.state = 'gone';
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      signalGroup(this.child.pid, 'SIGKILL');
      await exited;
    }
    await this.gateway.close();
    await rm(this.home, { recursive: true, force: true });
  }
}

function claudeEnv(options: ClaudeProcessOptions, home: string): NodeJS.ProcessEnv {
  return { ...baseClaudeEnv(home, options), ...providerEnv(options.endpoint) };
}

/**
 * The CLI's environment before its provider's variables: a fresh one, not process.env, so the
 * runner's AWS credentials and other secrets stay out of reach of the CLI and of any tool it runs.
 */
export function baseClaudeEnv(home: string, options: Pick<ClaudeProcessOptions, 'maxRetries' | 'timeoutMs'>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    CLAUDE_CONFIG_DIR: join(home, '.claude'),
    TMPDIR: home,
    LANG: 'C.UTF-8',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    // The working directory's CLAUDE.md, read as an added directory's (REPOSITORY_IS_DATA).
    CLAUDE_CODE_ADDITIONAL_DIRECTORIES_CLAUDE_MD: '1',
    // A subagent runs in the foreground: 2.1.332 runs it in the background by default and answers
    // its completion with a main-model call after the result line, which no result would count.
    CLAUDE_CODE_DISABLE_BACKGROUND_TASKS: '1',
    CLAUDE_CODE_MAX_RETRIES: String(options.maxRetries ?? 2),
    // A single stalled request must not outlive the run's own limit.
    API_TIMEOUT_MS: String(Math.max(1_000, Math.min(options.timeoutMs, 600_000))),
  };
}

/** The CLI's own variables for its provider (Claude Code's Bedrock settings: docs/ARCHITECTURE.md#bedrock). */
function providerEnv(endpoint: ClaudeEndpoint): NodeJS.ProcessEnv {
  if (endpoint.provider !== 'bedrock') {
    const env: NodeJS.ProcessEnv = { ANTHROPIC_API_KEY: endpoint.apiKey };
    if (endpoint.baseUrl) env.ANTHROPIC_BASE_URL = endpoint.baseUrl;
    if (endpoint.model) env.ANTHROPIC_MODEL = endpoint.model;
    return env;
  }
  // Every model the CLI may pick (its main model, the aliases a subagent may ask for, the
  // small model of its side tasks) is one the deployment granted: no default of the CLI's own.
  const env: NodeJS.ProcessEnv = {
    CLAUDE_CODE_USE_BEDROCK: '1',
    AWS_REGION: endpoint.region,
    ANTHROPIC_MODEL: endpoint.model,
    ANTHROPIC_DEFAULT_OPUS_MODEL: endpoint.model,
    ANTHROPIC_DEFAULT_SONNET_MODEL: endpoint.model,
    ANTHROPIC_DEFAULT_HAIKU_MODEL: endpoint.smallFastModel ?? endpoint.model,
    // Else the CLI probes its own default models (an InvokeModel of max_tokens 1 on each tier
    // it thinks unpinned, 2.1.197): calls the model role is denied, or billed if it were not.
    CLAUDE_CODE_PROVIDER_MANAGED_BY_HOST: '1',
  };
  if (endpoint.baseUrl) env.ANTHROPIC_BEDROCK_BASE_URL = endpoint.baseUrl;
  if (endpoint.credentials) {
    env.AWS_ACCESS_KEY_ID = endpoint.credentials.accessKeyId;
    env.AWS_SECRET_ACCESS_KEY = endpoint.credentials.secretAccessKey;
    if (endpoint.credentials.sessionToken) env.AWS_SESSION_TOKEN = endpoint.credentials.sessionToken;
  } else {
    env.CLAUDE_CODE_SKIP_BEDROCK_AUTH = '1';
  }
  return env;
}

export function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Time kept back from the platform's limit to report and close the session. */
const REPORT_MARGIN_MS = 30_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/** What of a session decides how its CLI starts (SessionStart has it all). */
export interface SessionClaudeSettings {
  sessionId: string;
  tools?: readonly string[];
  /** Its project's permission rules, narrowing the runner's (CreateSession sets them from projectLimits). */
  permissionRules?: readonly string[];
  mode: 'fresh' | 'milestone';
  maxTurns?: number;
  maxBudgetUsd?: number;
  timeoutSeconds: number;
}

/** What of the runner's configuration decides it (RunnerConfig has it all). */
export interface RunnerClaudeSettings {
  endpoint: ClaudeEndpoint;
  claudePath?: string;
  workRoot?: string;
  /** @default 300 s without a line of output */
  idleTimeoutMs?: number;
  /** @default 2 */
  maxRetries?: number;
  /** Time the platform still gives this run (Lambda's remaining time), if bounded. */
  remainingMs?: () => number;
  tools?: readonly string[];
  permissionMode?: ClaudeArgsOptions['permissionMode'];
  /** Permission rules the CLI allows unasked (the deployment's CLAUDE_PERMISSION_RULES). */
  permissionRules?: readonly string[];
  /** Start each CLI as a user of its own (CLAUDE_SEPARATE_USER: Fargate). */
  separateUser?: boolean;
  /** The runner is alone in its sandbox (Lambda): ClaudeProcessOptions.ownsSandbox. */
  ownsSandbox?: boolean;
}

/** How the runner starts the CLI for a session: one place, so a standby started ahead matches. */
export function claudeProcessOptions(
  session: SessionClaudeSettings,
  config: RunnerClaudeSettings,
  sessionId: string,
  conversation: ClaudeArgsOptions['conversation'],
): ClaudeProcessOptions {
  let timeoutMs = session.timeoutSeconds * 1000;
  if (config.remainingMs) timeoutMs = Math.max(1_000, Math.min(timeoutMs, config.remainingMs() - REPORT_MARGIN_MS));
  return {
    sessionId,
    conversation,
    maxTurns: session.maxTurns,
    maxBudgetUsd: session.maxBudgetUsd,
    endpoint: config.endpoint,
    timeoutMs,
    idleTimeoutMs: config.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    maxRetries: config.maxRetries,
    claudePath: config.claudePath,
    workRoot: config.workRoot,
    // The session's own tools, which CreateSession has checked against the deployment's allow-list.
    tools: session.tools ?? config.tools,
    permissionMode: config.permissionMode,
    permissionRules: permissionRulesOf(session, config),
    separateUser: config.separateUser,
    ownsSandbox: config.ownsSandbox,
  };
}

/**
 * The rules the CLI allows unasked: the session's project's, which may only narrow the runner's
 * (the deployment's permissionRules; checked at synth, and here again, since the runner's are what
 * the deployment approved).
 */
function permissionRulesOf(session: SessionClaudeSettings, config: RunnerClaudeSettings): readonly string[] | undefined {
  if (!session.permissionRules) return config.permissionRules;
  const widened = session.permissionRules.filter((rule) => !(config.permissionRules ?? []).includes(rule));
  if (widened.length) {
    throw new Error(`the session's project permission rules name ${widened.join(', ')}, which this runner's permissionRules do not allow: a project may narrow them, never widen them`);
  }
  return session.permissionRules;
}

/**
 * Starts the CLI of a fresh session before the workflow reaches its runner: it boots
 * meanwhile, and gets its prompt only from the runner.
 */
export async function standbyForSession(session: SessionClaudeSettings, config: RunnerClaudeSettings, maxAgeMs?: number): Promise<StandbyClaude> {
  if (session.mode !== 'fresh') throw new Error('only a fresh session has its CLI started ahead');
  return StandbyClaude.start(claudeProcessOptions(session, config, session.sessionId, 'fresh'), maxAgeMs);
}
