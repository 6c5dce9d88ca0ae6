import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive } from '../../lib/local/state-lock.js';

// The CLI as a user runs it: `node bin/claude-sessions.js …` in its own process, its state
// folder on disk between commands, and the engine its first command starts in the background.

export const BIN = join(process.cwd(), 'bin', 'claude-sessions.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** This process's environment for a command with its own state folder, without Claude settings of the developer's. */
export function cliEnvironment(home: string, env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const base = { ...process.env };
  delete base.ANTHROPIC_API_KEY;
  delete base.ANTHROPIC_BASE_URL;
  return { ...base, CLAUDE_SESSIONS_HOME: home, ...env };
}

/**
 * Runs one command to its end, with exactly `env`; `started` sees the process (to signal it).
 * `options.input` is piped to its stdin (else none), `options.cwd` is where it runs.
 */
export function runCli(
  args: string[], env: NodeJS.ProcessEnv, started?: (child: ChildProcess) => void, options: { input?: string; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: options.cwd, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    started?.(child);
    if (options.input !== undefined) child.stdin!.end(options.input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export async function engineFile(home: string): Promise<{ pid: number; url: string } | undefined> {
  return JSON.parse(await readFile(join(home, 'engine.json'), 'utf8').catch(() => 'null')) ?? undefined;
}

/** The engine a state folder's commands started: gone with the test, not after its idle period. */
export async function stopEngine(home: string): Promise<void> {
  const engine = await engineFile(home);
  if (engine && isAlive(engine.pid)) process.kill(engine.pid, 'SIGTERM');
}

/** Stops a `serve` that startServe started (one already gone, by exit or signal, is not waited for), then its state folder's engine. */
export async function stopServe(child: ChildProcess | undefined, home: string): Promise<void> {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGINT');
    await exited;
  }
  await stopEngine(home);
}

/** `serve` in the foreground with exactly `env`, resolved once it listens. */
export async function startServe(env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      stderr += d;
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  return { child, url, stderr: () => stderr };
}
