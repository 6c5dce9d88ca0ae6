import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildClaudeArgs, type ClaudeArgsOptions } from './claude-args.js';
import { ClaudeResult, fromApiUsage } from './claude-result.js';
import { ClaudeAbortedError, ClaudeCrashError, ClaudeOutputError, ClaudeSpawnError } from './errors.js';
import type { Usage } from '../sessions/session-item.js';

export interface ClaudeEndpoint {
  /** Passed to the CLI only, never logged or returned. */
  apiKey: string;
  /** ANTHROPIC_BASE_URL; unset means the real API. */
  baseUrl?: string;
}

export interface RunClaudeOptions extends ClaudeArgsOptions {
  /** Written to the CLI's stdin. */
  prompt: string;
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
  /** Stops the CLI (its whole process group) when the execution is aborted. */
  signal?: AbortSignal;
  /** The conversation to continue (`conversation: 'resume'`), put where the CLI looks for it. */
  restoreTranscript?: Buffer;
  /** A CLI started ahead for this run; used if it was started exactly as this run would start one, else stopped. */
  standby?: StandbyClaude;
}

export type ClaudeRun = (
  | { kind: 'result'; result: ClaudeResult; wallMs: number }
  /** Killed by a watchdog; `usage` is what the stream had reported until then. */
  | { kind: 'timeout'; reason: 'wall-clock' | 'no-output'; limitMs: number; usage: Usage; numTurns: number; wallMs: number }
  /** Ended without a result (crash, kill, non-zero exit); the tokens streamed so far are kept. */
  | { kind: 'crashed'; error: ClaudeCrashError; usage: Usage; numTurns: number; wallMs: number }
) & {
  /** The conversation's transcript as the CLI left it (persisted conversations only). */
  transcript?: Buffer;
};

const KILL_GRACE_MS = 2_000;
/** A standby is used within this time of its start, well before the CLI's 3 s wait for stdin ends. */
export const STANDBY_MAX_AGE_MS = 2_000;

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

/**
 * Runs the real `claude` CLI once, headless, in a throw-away HOME, and returns its
 * result. Throws for infrastructure failures (no result, crash, unparseable output).
 */
export async function runClaude(options: RunClaudeOptions): Promise<ClaudeRun> {
  const standby = options.standby?.claim(options);
  if (options.standby && !standby) await options.standby.discard();
  const { home, workDir } = standby ?? (await makeHome(options.workRoot));
  const configDir = join(home, '.claude');
  try {
    if (options.restoreTranscript) {
      const dir = join(configDir, 'projects', projectDirName(workDir));
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, `${options.sessionId}.jsonl`), options.restoreTranscript);
    }
    const run: ClaudeRun = await superviseClaude(options, standby?.child ?? startClaude(claudeSpawn(options, home, workDir)));
    if (options.conversation !== 'fresh') run.transcript = await findTranscript(configDir, options.sessionId);
    return run;
  } finally {
    // Nothing of one session stays on a warm container for the next.
    await rm(home, { recursive: true, force: true });
  }
}

async function makeHome(workRoot: string | undefined): Promise<{ home: string; workDir: string }> {
  const home = await mkdtemp(join(workRoot ?? tmpdir(), 'claude-run-'));
  const workDir = join(home, 'work');
  await mkdir(workDir, { recursive: true });
  return { home, workDir };
}

/** How one run starts the CLI: all of it but the prompt, which goes to stdin. */
interface ClaudeSpawn {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
}

function claudeSpawn(options: Omit<RunClaudeOptions, 'prompt'>, home: string, workDir: string): ClaudeSpawn {
  return { command: options.claudePath ?? defaultClaudePath(), args: buildClaudeArgs(options), env: claudeEnv(options, home), cwd: workDir };
}

function startClaude(spec: ClaudeSpawn): ChildProcess {
  return spawn(spec.command, spec.args, {
    cwd: spec.cwd,
    env: spec.env,
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
 * while the workflow creates the session, then waits on stdin. Until the prompt arrives
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
    readonly home: string,
    readonly workDir: string,
  ) {
    child.once('error', () => (this.state = 'gone')); // a spawn failure shows again, in full, when the run spawns anew
    child.once('exit', () => {
      if (this.state === 'waiting') this.state = 'gone';
    });
    child.stdin?.on('error', () => {});
  }

  static async start(options: Omit<RunClaudeOptions, 'prompt' | 'standby' | 'restoreTranscript' | 'signal'>): Promise<StandbyClaude> {
    if (options.conversation !== 'fresh') throw new Error('only a fresh conversation can be started ahead of its prompt');
    const { home, workDir } = await makeHome(options.workRoot);
    const spec = claudeSpawn(options, home, workDir);
    return new StandbyClaude(spawnKey(spec, home), startClaude(spec), home, workDir);
  }

  /** Hands the process to a run that would start the very same one; undefined otherwise. */
  claim(options: RunClaudeOptions): { child: ChildProcess; home: string; workDir: string } | undefined {
    if (this.state !== 'waiting' || options.restoreTranscript || options.conversation !== 'fresh') return undefined;
    // The CLI gives up on stdin 3 s after it starts ("no stdin data received in 3s", 2.1.x):
    // an older standby could read an empty prompt and fail the session, so it is not used.
    if (Date.now() - this.startedAt > STANDBY_MAX_AGE_MS) return undefined;
    if (spawnKey(claudeSpawn(options, this.home, this.workDir), this.home) !== this.key) return undefined;
    this.state = 'claimed';
    return { child: this.child, home: this.home, workDir: this.workDir };
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
    await rm(this.home, { recursive: true, force: true });
  }
}

/**
 * The CLI keeps a conversation under $CLAUDE_CONFIG_DIR/projects/<cwd, every character
 * outside [A-Za-z0-9] replaced by "-">/<session id>.jsonl (measured with 2.1.197: a
 * transcript written under one work directory resumes under another once put there).
 */
export function projectDirName(workDir: string): string {
  return workDir.replace(/[^A-Za-z0-9]/g, '-');
}

async function findTranscript(configDir: string, sessionId: string): Promise<Buffer | undefined> {
  const projects = join(configDir, 'projects');
  const dirs = await readdir(projects).catch(() => [] as string[]);
  for (const dir of dirs) {
    const body = await readFile(join(projects, dir, `${sessionId}.jsonl`)).catch(() => undefined);
    if (body) return body;
  }
  return undefined;
}

function claudeEnv(options: Omit<RunClaudeOptions, 'prompt'>, home: string): NodeJS.ProcessEnv {
  // A fresh environment, not process.env: the runner's AWS credentials and other
  // secrets stay out of reach of the CLI and of any tool it runs.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    CLAUDE_CONFIG_DIR: join(home, '.claude'),
    TMPDIR: home,
    LANG: 'C.UTF-8',
    ANTHROPIC_API_KEY: options.endpoint.apiKey,
    DISABLE_AUTOUPDATER: '1',
    DISABLE_TELEMETRY: '1',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    CLAUDE_CODE_MAX_RETRIES: String(options.maxRetries ?? 2),
    // A single stalled request must not outlive the run's own limit.
    API_TIMEOUT_MS: String(Math.max(1_000, Math.min(options.timeoutMs, 600_000))),
  };
  if (options.endpoint.baseUrl) env.ANTHROPIC_BASE_URL = options.endpoint.baseUrl;
  return env;
}

/** Gives the CLI its prompt, reads its stream, and enforces the limits. */
async function superviseClaude(options: RunClaudeOptions, child: ChildProcess): Promise<ClaudeRun> {
  const started = Date.now();
  // A CLI that dies before reading its prompt closes the pipe: its exit says why, not EPIPE.
  child.stdin!.on('error', () => {});
  child.stdin!.end(options.prompt);
  const progress = new StreamProgress();
  let result: ClaudeResult | undefined;
  let badLine: string | undefined;
  let stderrTail = '';
  let killedFor: 'wall-clock' | 'no-output' | 'aborted' | undefined;

  const killGroup = (reason: 'wall-clock' | 'no-output' | 'aborted') => {
    if (killedFor) return;
    killedFor = reason;
    signalGroup(child.pid, 'SIGTERM');
    setTimeout(() => signalGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS).unref();
  };
  const wallTimer = setTimeout(() => killGroup('wall-clock'), options.timeoutMs);
  const onAbort = () => killGroup('aborted');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let idleTimer = setTimeout(() => killGroup('no-output'), options.idleTimeoutMs);
  const sawOutput = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => killGroup('no-output'), options.idleTimeoutMs);
  };

  child.stderr!.on('data', (chunk: Buffer) => {
    sawOutput();
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-500);
  });
  const lines = createInterface({ input: child.stdout!, crlfDelay: Infinity });
  lines.on('line', (line) => {
    sawOutput();
    if (!line.trim()) return;
    let event: unknown;
    try {
      event = JSON.parse(line);
    } catch {
      badLine ??= line.slice(0, 200);
      return;
    }
    progress.observe(event);
    if ((event as { type?: unknown }).type === 'result') {
      const parsed = ClaudeResult.safeParse(event);
      if (parsed.success) result = parsed.data;
      else badLine ??= `result object did not match: ${parsed.error.issues.map((i) => i.path.join('.')).join(', ')}`;
    }
  });

  const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    child.once('error', (err) => reject(new ClaudeSpawnError(`could not start the Claude CLI: ${err.message}`, { cause: err })));
    // 'close' waits for stdout to drain, so the result line is in before we look.
    child.once('close', (code, signal) => resolve({ code, signal }));
  }).finally(() => {
    clearTimeout(wallTimer);
    clearTimeout(idleTimer);
    options.signal?.removeEventListener('abort', onAbort);
  });
  const wallMs = Date.now() - started;

  if (killedFor === 'aborted') throw new ClaudeAbortedError('the Claude CLI was stopped because its execution was aborted');
  if (killedFor) {
    const limitMs = killedFor === 'wall-clock' ? options.timeoutMs : options.idleTimeoutMs;
    return { kind: 'timeout', reason: killedFor, limitMs, usage: progress.usage(), numTurns: progress.turns, wallMs };
  }
  if (result) return { kind: 'result', result, wallMs };
  if (badLine !== undefined) {
    throw new ClaudeOutputError(`the Claude CLI printed output that is not its JSON result: ${JSON.stringify(badLine)}`);
  }
  if (exit.code === 0) throw new ClaudeOutputError('the Claude CLI exited 0 but printed no JSON result');
  const error = new ClaudeCrashError(exit.code, exit.signal, stderrTail.trim());
  return { kind: 'crashed', error, usage: progress.usage(), numTurns: progress.turns, wallMs };
}

function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** Usage as the stream reports it, for runs that are killed before their result. */
class StreamProgress {
  turns = 0;
  private readonly finished: Usage[] = [];
  private readonly current = new Map<string, Usage>();

  observe(raw: unknown): void {
    const line = raw as { type?: string; parent_tool_use_id?: string | null; event?: { type?: string; message?: { usage?: unknown }; usage?: unknown } };
    if (line.type !== 'stream_event' || !line.event) return;
    const key = line.parent_tool_use_id ?? 'main';
    const { event } = line;
    if (event.type === 'message_start') {
      const previous = this.current.get(key);
      if (previous) this.finished.push(previous);
      this.turns += 1;
      this.current.set(key, toUsage(event.message?.usage));
    } else if (event.type === 'message_delta') {
      // message_delta carries the message's cumulative counts: they replace, not add.
      const before = this.current.get(key);
      const delta = toUsage(event.usage);
      this.current.set(key, before ? { ...before, ...nonZero(delta) } : delta);
    }
  }

  usage(): Usage {
    const total: Usage = { inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
    for (const u of [...this.finished, ...this.current.values()]) {
      total.inputTokens += u.inputTokens;
      total.outputTokens += u.outputTokens;
      total.cacheReadInputTokens += u.cacheReadInputTokens;
      total.cacheCreationInputTokens += u.cacheCreationInputTokens;
    }
    return total;
  }
}

function toUsage(raw: unknown): Usage {
  const u = (raw ?? {}) as Record<string, unknown>;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
  return fromApiUsage({
    input_tokens: n(u.input_tokens),
    output_tokens: n(u.output_tokens),
    cache_read_input_tokens: n(u.cache_read_input_tokens),
    cache_creation_input_tokens: n(u.cache_creation_input_tokens),
  });
}

function nonZero(usage: Usage): Partial<Usage> {
  return Object.fromEntries(Object.entries(usage).filter(([, v]) => v > 0));
}
