import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../project-root.js';
import { ENGINE_LOG, readEngineFile } from '../local/engine-file.js';
import type { StateEvent } from '../local/local-engine.js';
import { isAlive, lockHolder, makePrivateStateFolder } from '../local/state-lock.js';

/** A background engine exits after this long idle: no request, no stream, no running execution. */
export const DEFAULT_IDLE_EXIT_SECONDS = 300;

/** How long a command waits for an engine to come up: the first one may synthesize the workflow. */
const START_TIMEOUT_MS = 180_000;

export interface EngineReply<T = any> {
  status: number;
  body: T;
}

/** An error the engine answered with (status ≥ 400), its body kept. */
export class EngineRequestError extends Error {
  override readonly name = 'EngineRequestError';
  constructor(
    readonly status: number,
    readonly body: { message?: string; name?: string; errors?: Array<{ field: string; message: string }> },
  ) {
    super(body.message ?? `the engine answered ${status}`);
  }
}

/** A command's way to the engine that holds the state folder (lib/local/local-engine.ts). */
export class EngineClient {
  constructor(
    readonly url: string,
    readonly pid: number,
  ) {}

  /** JSON in, JSON out; an answer of 400 or more throws EngineRequestError. */
  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const { status, body: answer } = await this.send<T>(method, path, body);
    if (status >= 400) throw new EngineRequestError(status, answer as never);
    return answer;
  }

  send<T = any>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<EngineReply<T>> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(`${this.url}${path}`, { method, headers: payload === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : undefined });
          } catch {
            resolve({ status: res.statusCode!, body: { message: text } as T });
          }
        });
        res.on('error', reject);
      });
      if (timeoutMs) req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
      req.once('error', reject);
      req.end(payload);
    });
  }

  /**
   * GET /sessions/{id}/events: each state as the execution passes it, then the end with the
   * closed session. `attach`: this client's going away aborts the execution.
   */
  async *events(sessionId: string, attach: boolean): AsyncGenerator<{ event: 'state'; data: StateEvent } | { event: 'end'; data: EndEvent }> {
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = request(`${this.url}/sessions/${sessionId}/events${attach ? '?attach=1' : ''}`, { headers: { accept: 'text/event-stream' } }, resolve);
      req.once('error', reject);
      req.end();
    });
    if (res.statusCode !== 200) {
      let text = '';
      for await (const chunk of res) text += chunk;
      throw new EngineRequestError(res.statusCode ?? 500, JSON.parse(text || '{}'));
    }
    let buffer = '';
    for await (const chunk of res) {
      buffer += chunk;
      for (let at = buffer.indexOf('\n\n'); at >= 0; at = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if ((event === 'state' || event === 'end') && data !== undefined) yield { event, data: JSON.parse(data) } as never;
      }
    }
  }
}

export interface EndEvent {
  outcome?: { status: string; error?: string; cause?: string };
  session: import('../sessions/session-item.js').SessionRecord | null;
}

/** The engine named by the state folder's engine.json, if its process lives and it answers. */
export async function findEngine(home: string): Promise<EngineClient | undefined> {
  const file = await readEngineFile(home);
  if (!file || !isAlive(file.pid)) return undefined;
  const client = new EngineClient(file.url, file.pid);
  try {
    const { status, body } = await client.send<{ pid: number }>('GET', '/local/engine', undefined, 5_000);
    return status === 200 && body?.pid === file.pid ? client : undefined;
  } catch {
    return undefined; // a stale file: its port answers no more, or answers as something else
  }
}

/**
 * The running engine, else one started in the background (`claude-sessions engine`). Two
 * commands starting one at once: one engine takes the state lock, the other exits, and both
 * commands find the one that won through engine.json.
 */
export async function connectEngine(home: string, env: NodeJS.ProcessEnv, cwd: string, say: (line: string) => void): Promise<EngineClient> {
  const running = await findEngine(home);
  if (running) return running;
  await makePrivateStateFolder(home);
  const log = join(home, ENGINE_LOG);
  const idle = Number(env.CLAUDE_SESSIONS_ENGINE_IDLE_SECONDS) || DEFAULT_IDLE_EXIT_SECONDS;
  const out = openSync(log, 'a');
  const child = spawn(process.execPath, [join(PROJECT_ROOT, 'bin', 'claude-sessions.js'), 'engine', '--idle-exit', String(idle)], {
    cwd, env: { ...env, CLAUDE_SESSIONS_HOME: home }, detached: true, stdio: ['ignore', out, out],
  });
  closeSync(out);
  child.unref();
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const engine = await findEngine(home);
    if (engine) {
      if (engine.pid === child.pid) say(`Started a claude-sessions engine (process ${engine.pid}, ${engine.url}); it logs to ${log} and exits after ${idle} s idle.`);
      return engine;
    }
    // Ours lost the race for the state lock, or failed: the winner's file, if any, appears soon.
    if (exited && !(await lockHolderAlive(home))) {
      await new Promise((r) => setTimeout(r, 200));
      if (await findEngine(home)) continue;
      throw new Error(`the claude-sessions engine did not start; see ${log}:\n${await tail(log)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no claude-sessions engine answered within ${START_TIMEOUT_MS / 1000} s; see ${log}`);
}

async function lockHolderAlive(home: string): Promise<boolean> {
  const holder = await lockHolder(home);
  return holder !== undefined && isAlive(holder.pid);
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-10).join('\n');
}
