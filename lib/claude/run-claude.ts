import type { ChildProcess } from 'node:child_process';
import { lstat, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  StandbyClaude, makeHome, signalGroup, startClaudeBehindGateway, stopRunProcesses, type ClaudeProcessOptions, type StartedClaude,
} from './claude-process.js';
import { promptMessage } from './claude-args.js';
import { ClaudeResult } from './claude-result.js';
import { ClaudeAbortedError, ClaudeCrashError, ClaudeOutputError, ClaudeSpawnError } from './errors.js';
import type { MeteredUsage } from './usage-meter.js';


export interface RunClaudeOptions extends ClaudeProcessOptions {
  /** Written to the CLI's stdin, as its one user message. */
  prompt: string;
  /** Stops the CLI (its whole process group) when the execution is aborted, and throws ClaudeAbortedError. */
  signal?: AbortSignal;
  /** Stops the CLI when its execution has ended under it (ExecutionWatch); the run then returns `stopped`, with what it spent. */
  executionEnded?: AbortSignal;
  /** The conversation to continue (`conversation: 'resume'`), put where the CLI looks for it. */
  restoreTranscript?: Buffer;
  /** A CLI started ahead for this run; used if it was started exactly as this run would start one, else stopped. */
  standby?: StandbyClaude;
  /** A repository in the working directory: put there before the CLI starts, dealt with after it ends. */
  workspace?: WorkspaceHooks;
}

/** What a session's workspace does around the CLI (lib/claude/workspace.ts); both run with the run's HOME. */
export interface WorkspaceHooks {
  /** Before the CLI starts, within `timeLeftMs`: a failure throws, and Claude does not run. */
  prepare(workDir: string, home: string, timeLeftMs: number): Promise<void>;
  /** After the CLI ended, before its HOME goes: must not throw. */
  finish(workDir: string, home: string, run: ClaudeRun): Promise<void>;
}

/** How the CLI ended. */
export type ClaudeRunEnd =
  | { kind: 'result'; result: ClaudeResult; wallMs: number }
  /** Killed by a watchdog. */
  | { kind: 'timeout'; reason: 'wall-clock' | 'no-output'; limitMs: number; numTurns: number; wallMs: number }
  /** Stopped because its execution ended (an abort, an execution timeout). */
  | { kind: 'stopped'; numTurns: number; wallMs: number }
  /** Ended without a result (crash, kill, non-zero exit). */
  | { kind: 'crashed'; error: ClaudeCrashError; numTurns: number; wallMs: number };

export type ClaudeRun = ClaudeRunEnd & {
  /**
   * What the model answered through the run's gateway, priced: the run's usage, however it ended
   * and whatever the CLI printed (a process the CLI started can print a result of its own).
   */
  metered: MeteredUsage;
  /** The conversation's transcript as the CLI left it (persisted conversations only). */
  transcript?: Buffer;
};

const KILL_GRACE_MS = 2_000;

/**
 * The time a workspace keeps back from Claude for its commit and push (and the record after them):
 * a quarter of the run's limit, at most a minute. The clone comes out of the limit too, so a slow
 * clone shortens Claude's run, never the platform's (a Lambda past its own limit loses everything).
 */
export function workspaceReserveMs(timeoutMs: number): number {
  return Math.min(60_000, Math.floor(timeoutMs / 4));
}

/**
 * Runs the real `claude` CLI once, headless, in a throw-away HOME, and returns its
 * result. Throws for infrastructure failures (no result, crash, unparseable output).
 */
export async function runClaude(options: RunClaudeOptions): Promise<ClaudeRun> {
  // The run's wall clock starts now, before the clone: the CLI gets what the clone left of it.
  const deadline = Date.now() + options.timeoutMs;
  const standby = options.standby?.claim(options);
  if (options.standby && !standby) await options.standby.discard();
  const { home, workDir } = standby ?? (await makeHome(options.workRoot));
  const configDir = join(home, '.claude');
  let started: StartedClaude | undefined = standby;
  try {
    // The clone may take what the run has, less the push's reserve and a second for Claude.
    await options.workspace?.prepare(workDir, home, deadline - Date.now() - workspaceReserveMs(options.timeoutMs) - 1_000);
    if (options.restoreTranscript) {
      const dir = join(configDir, 'projects', projectDirName(workDir));
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, `${options.sessionId}.jsonl`), options.restoreTranscript);
    }
    const timeoutMs = options.workspace ? Math.max(1_000, deadline - Date.now() - workspaceReserveMs(options.timeoutMs)) : options.timeoutMs;
    started ??= await startClaudeBehindGateway({ ...options, timeoutMs }, home, workDir);
    const ended = await superviseClaude({ ...options, timeoutMs }, started.child);
    // Before the push: nothing the session left running may race it, or outlive the session,
    // or call the model after its usage is read.
    await stopRunProcesses(started);
    // What is still under way is read to its end first, and nothing new is let through.
    const run: ClaudeRun = { ...ended, metered: await started.gateway.drain() };
    if (options.conversation !== 'fresh') run.transcript = await findTranscript(configDir, options.sessionId);
    await options.workspace?.finish(workDir, home, run);
    return run;
  } finally {
    if (started) await stopRunProcesses(started);
    await started?.gateway.close();
    // Nothing of one session stays on a warm container for the next.
    await rm(home, { recursive: true, force: true });
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
    const file = join(projects, dir, `${sessionId}.jsonl`);
    // The HOME is the CLI's (on Fargate its own user's): a link there would make the runner read another file.
    if (!(await lstat(file).catch(() => undefined))?.isFile()) continue;
    const body = await readFile(file).catch(() => undefined);
    if (body) return body;
  }
  return undefined;
}

/** Gives the CLI its prompt, reads its stream, and enforces the limits. */
async function superviseClaude(options: RunClaudeOptions, child: ChildProcess): Promise<ClaudeRunEnd> {
  const started = Date.now();
  // A CLI that dies before reading its prompt closes the pipe: its exit says why, not EPIPE.
  child.stdin!.on('error', () => {});
  child.stdin!.end(promptMessage(options.prompt));
  const progress = new TurnCount();
  let result: ClaudeResult | undefined;
  let badLine: string | undefined;
  let stderrTail = '';
  let killedFor: 'wall-clock' | 'no-output' | 'aborted' | 'stopped' | undefined;

  const killGroup = (reason: 'wall-clock' | 'no-output' | 'aborted' | 'stopped') => {
    if (killedFor) return;
    killedFor = reason;
    signalGroup(child.pid, 'SIGTERM');
    setTimeout(() => signalGroup(child.pid, 'SIGKILL'), KILL_GRACE_MS).unref();
  };
  const wallTimer = setTimeout(() => killGroup('wall-clock'), options.timeoutMs);
  const onAbort = () => killGroup('aborted');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const onEnded = () => killGroup('stopped');
  if (options.executionEnded?.aborted) onEnded();
  options.executionEnded?.addEventListener('abort', onEnded, { once: true });
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

  // What Claude's tools left running in the background goes with the CLI: it would hold the
  // output open, race the workspace's push, and outlive into the next session on a warm Lambda.
  child.once('exit', () => signalGroup(child.pid, 'SIGKILL'));
  const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    child.once('error', (err) => reject(new ClaudeSpawnError(`could not start the Claude CLI: ${err.message}`, { cause: err })));
    // 'close' waits for stdout to drain, so the result line is in before we look.
    child.once('close', (code, signal) => resolve({ code, signal }));
  }).finally(() => {
    clearTimeout(wallTimer);
    clearTimeout(idleTimer);
    options.signal?.removeEventListener('abort', onAbort);
    options.executionEnded?.removeEventListener('abort', onEnded);
  });
  const wallMs = Date.now() - started;

  if (killedFor === 'aborted') throw new ClaudeAbortedError('the Claude CLI was stopped because its execution was aborted');
  // A result printed before the stop is the better record of what was spent (it has the cost).
  if (killedFor === 'stopped' && !result) return { kind: 'stopped', numTurns: progress.turns, wallMs };
  if (killedFor && killedFor !== 'stopped') {
    const limitMs = killedFor === 'wall-clock' ? options.timeoutMs : options.idleTimeoutMs;
    return { kind: 'timeout', reason: killedFor, limitMs, numTurns: progress.turns, wallMs };
  }
  if (result) return { kind: 'result', result, wallMs };
  if (badLine !== undefined) {
    throw new ClaudeOutputError(`the Claude CLI printed output that is not its JSON result: ${JSON.stringify(badLine)}`);
  }
  if (exit.code === 0) throw new ClaudeOutputError('the Claude CLI exited 0 but printed no JSON result');
  const error = new ClaudeCrashError(exit.code, exit.signal, stderrTail.trim());
  return { kind: 'crashed', error, numTurns: progress.turns, wallMs };
}

/** The model calls the stream reports, for runs that are killed before their result says how many. */
class TurnCount {
  turns = 0;

  observe(raw: unknown): void {
    const line = raw as { type?: string; event?: { type?: string } };
    if (line.type === 'stream_event' && line.event?.type === 'message_start') this.turns += 1;
  }
}
