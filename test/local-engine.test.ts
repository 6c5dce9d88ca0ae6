import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, readdir, readlink, stat } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { isAlive } from '../lib/local/state-lock.js';
import { cliEnvironment, engineFile, runCli, startServe, type CliResult } from './support/cli-process.js';

/** Every state folder a test made: the engines in them are stopped after the file. */
const homes: string[] = [];
let seed: string;


/** A state folder of its own, with the synthesized workflow already cached (a fresh one synthesizes for seconds). */
async function newHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'claude-sessions-engine-'));
  if (seed) await cp(join(seed, 'cache'), join(home, 'cache'), { recursive: true });
  homes.push(home);
  return home;
}

const environment = cliEnvironment;

/** The CLI as a user runs it, in its own process. */
function cli(home: string, args: string[], env: NodeJS.ProcessEnv = {}, started?: (child: ChildProcess) => void): Promise<CliResult> {
  return runCli(args, environment(home, env), started);
}

/** `serve` in the foreground, resolved once it listens. */
function serve(home: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; url: string }> {
  return startServe(environment(home, env));
}


/** Signal 0 and not a zombie: a killed engine nobody has reaped yet is gone. */
const alive = isAlive;

/** The `claude` processes a process started, with the HOME each runs in (its working directory's parent). */
async function claudeChildren(parent: number): Promise<Array<{ pid: number; home: string }>> {
  const found: Array<{ pid: number; home: string }> = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const command = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (ppid !== parent || !/claude/.test(command.split('\0')[0] ?? '')) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => undefined);
    if (cwd) found.push({ pid: Number(entry), home: dirname(cwd) });
  }
  return found;
}

/** Processes whose environment names `home` (a run's CLI and every tool it started inherit its HOME). */
async function processesOf(home: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await readFile(`/proc/${entry}/environ`).catch(() => undefined);
    if (environ?.includes(`HOME=${home}\0`) && alive(Number(entry))) pids.push(Number(entry));
  }
  return pids;
}

async function until(check: () => Promise<boolean> | boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (await check()) return true;
  return check();
}

beforeAll(async () => {
  seed = await mkdtemp(join(tmpdir(), 'claude-sessions-engine-seed-'));
  homes.push(seed);
  await cli(seed, ['list']); // starts an engine, which synthesizes the workflow into seed/cache
});

afterAll(async () => {
  for (const home of homes) {
    const engine = await engineFile(home);
    if (engine && alive(engine.pid)) process.kill(engine.pid, 'SIGTERM');
  }
});

describe('one local engine, many clients', () => {
  it('a client with CLAUDE_SESSIONS_API and another state folder runs a session on the served state, and reads it back', async () => {
    // Prepare: serve on one state folder; a client on another, pointed at it
    const served = await newHome();
    const elsewhere = await newHome();
    const server = await serve(served);
    try {
      // Act
      const run = await cli(elsewhere, ['run', 'Summarise the README', '--project', 'remote', '--json'], { CLAUDE_SESSIONS_API: server.url });
      const list = await cli(elsewhere, ['list', '--api', server.url, '--project', 'remote', '--json']);
      const local = await cli(served, ['show', JSON.parse(run.stdout || '{}').sessionId ?? 'none', '--json']);
      // Assess: the session ran on the served state (through POST /projects/remote/sessions), and no engine started for the other folder
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain(`· ${server.url}`);
      const session = JSON.parse(run.stdout);
      expect(session).toMatchObject({ status: 'COMPLETED', projectId: 'remote', trigger: 'api' });
      expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ sessionId: session.sessionId })]);
      expect(JSON.parse(local.stdout)).toMatchObject({ sessionId: session.sessionId, status: 'COMPLETED' });
      expect(existsSync(join(elsewhere, 'engine.json'))).toBe(false);
    } finally {
      server.child.kill('SIGTERM');
    }
  }, 120_000);

  it('with serve running, run from another process completes through it and list shows the session', async () => {
    // Prepare
    const home = await newHome();
    const server = await serve(home);
    try {
      // Act
      const run = await cli(home, ['run', 'Summarise the README', '--project', 'demo', '--json']);
      const list = await cli(home, ['list', '--project', 'demo', '--json']);
      // Assess
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).not.toMatch(/Started a claude-sessions engine/);
      expect(run.stderr).toContain(`engine ${server.url}`);
      expect(run.stderr).toMatch(/→ CreateSession[\s\S]*→ RunClaude[\s\S]*→ RecordUsage[\s\S]*✓ execution succeeded/);
      const session = JSON.parse(run.stdout);
      expect(session).toMatchObject({ status: 'COMPLETED', projectId: 'demo', trigger: 'cli' });
      expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ sessionId: session.sessionId, status: 'COMPLETED' })]);
    } finally {
      server.child.kill('SIGTERM');
    }
  });

  it('10 concurrent runs all complete through a running serve', async () => {
    const home = await newHome();
    const server = await serve(home);
    try {
      const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => cli(home, ['run', `task ${i}`, '--project', 'many', '--json'])));
      for (const run of runs) expect(run.code, run.stderr).toBe(0);
      const list = JSON.parse((await cli(home, ['list', '--project', 'many', '--json'])).stdout) as Array<{ status: string }>;
      expect(list.map((s) => s.status)).toEqual(Array(10).fill('COMPLETED'));
    } finally {
      server.child.kill('SIGTERM');
    }
  });

  it('10 concurrent runs with no engine running: one engine starts, all ten run through it', async () => {
    const home = await newHome();
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => cli(home, ['run', `task ${i}`, '--project', 'race', '--json'])));
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const engines = new Set(runs.map((r) => /local state machine, engine (\S+)/.exec(r.stderr)?.[1]));
    expect(engines.size).toBe(1);
    expect(runs.filter((r) => /Started a claude-sessions engine/.test(r.stderr))).toHaveLength(1);
    const list = JSON.parse((await cli(home, ['list', '--project', 'race', '--json'])).stdout) as Array<{ status: string }>;
    expect(list.map((s) => s.status)).toEqual(Array(10).fill('COMPLETED'));
  });

  it('an engine killed with SIGKILL is replaced by the next command, which closes its running session ABORTED and stops its Claude', async () => {
    // Prepare: a session that stays running, in a background engine
    const home = await newHome();
    const api = await new AnthropicStandIn().start();
    // Claude busy in a long tool call: it needs no model (whose gateway dies with the engine) to run on.
    api.respondWith({ kind: 'tool_use', name: 'Bash', input: { command: 'sleep 300' } });
    api.respondByDefault({ kind: 'stall' });
    try {
      const sessionId = uuidv4();
      const running = cli(home, ['run', 'a long job', '--project', 'killed', '--session-id', sessionId], { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: api.url });
      expect(await until(() => api.messageRequests.length > 0, 60_000)).toBe(true);
      const killed = (await engineFile(home))!;
      const claudes = await claudeChildren(killed.pid);
      expect(claudes.length).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 2_000)); // the CLI starts its tool
      // Act
      process.kill(killed.pid, 'SIGKILL');
      const orphaned = await running;
      const list = await cli(home, ['list', '--project', 'killed', '--json']);
      // Assess
      expect(orphaned.code).toBe(1);
      expect(orphaned.stderr).toMatch(/the engine .* went away/);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stderr).toMatch(/Started a claude-sessions engine/);
      expect((await engineFile(home))?.pid).not.toBe(killed.pid);
      // list shows a summary (issue 24: no reply or cause in the project index); show has the cause
      expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ sessionId, status: 'ABORTED', error: 'ExecutionAborted' })]);
      const shown = await cli(home, ['show', sessionId, '--json']);
      expect(JSON.parse(shown.stdout)).toMatchObject({ cause: 'the local process that ran this session ended before closing it' });
      // The killed engine's CLI did not run on under PID 1, and its HOME (claude-run-*) is gone.
      for (const claude of claudes) {
        expect(alive(claude.pid), `claude ${claude.pid} still running`).toBe(false);
        expect(await processesOf(claude.home)).toEqual([]);
        expect(existsSync(claude.home), claude.home).toBe(false);
      }
    } finally {
      await api.close();
    }
  });

  it('Ctrl-C in run aborts its session through the engine, which closes it ABORTED and keeps serving', async () => {
    // Prepare
    const home = await newHome();
    const api = await new AnthropicStandIn().start();
    api.respondByDefault({ kind: 'stall' });
    try {
      let child: ChildProcess | undefined;
      const running = cli(home, ['run', 'a long job', '--project', 'ctrl-c', '--json'], { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: api.url }, (c) => (child = c));
      expect(await until(() => api.messageRequests.length > 0, 60_000)).toBe(true);
      const engine = (await engineFile(home))!;
      // Act
      child!.kill('SIGINT');
      const run = await running;
      // Assess
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/Interrupted: aborting the execution…[\s\S]*✗ execution aborted/);
      expect(JSON.parse(run.stdout)).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted' });
      expect(alive(engine.pid)).toBe(true);
    } finally {
      await api.close();
    }
  });

  it('a background engine exits after its idle period, and takes its engine.json and the state lock with it', async () => {
    const home = await newHome();
    const list = await cli(home, ['list'], { CLAUDE_SESSIONS_ENGINE_IDLE_SECONDS: '2' });
    expect(list.code, list.stderr).toBe(0);
    const { pid } = (await engineFile(home))!;
    expect(alive(pid)).toBe(true);

    expect(await until(() => !alive(pid), 15_000)).toBe(true);
    expect(existsSync(join(home, 'engine.json'))).toBe(false);
    expect(existsSync(join(home, 'lock'))).toBe(false);
    expect(await readFile(join(home, 'engine.log'), 'utf8')).toMatch(/The engine exits: idle for 2 s/);
  });

  it('serve takes the state over from an idle background engine, which exits', async () => {
    // Prepare
    const home = await newHome();
    await cli(home, ['list']);
    const background = (await engineFile(home))!;
    // Act
    const server = await serve(home);
    try {
      // Assess
      expect(alive(background.pid)).toBe(false);
      expect((await engineFile(home))?.url).toBe(server.url);
      expect(await readFile(join(home, 'engine.log'), 'utf8')).toMatch(/The engine exits: handed the state over to a serve/);
    } finally {
      server.child.kill('SIGTERM');
    }
  });

  it('serve does not idle out, and a second serve on the same state says which process holds it', async () => {
    const home = await newHome();
    const server = await serve(home);
    try {
      const second = await cli(home, ['serve', '--port', '0']);
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/in use by process \d+ \(claude-sessions serve\)/);
      expect(server.child.exitCode).toBeNull();
    } finally {
      server.child.kill('SIGTERM');
    }
  });

  it('a run takes the Claude CLI the engine booted after the last one; a run with other flags starts its own; all complete', async () => {
    // Prepare
    const home = await newHome();
    const server = await serve(home);
    const standby = async () => ((await (await fetch(`${server.url}/local/engine`)).json()) as { standby: Record<string, number> | null }).standby;
    try {
      const first = await cli(home, ['run', 'one', '--project', 'ahead', '--json']);
      expect(first.code, first.stderr).toBe(0);
      expect(await until(async () => (await standby())?.started === 1, 10_000)).toBe(true);
      // Act: the same flags from the same shell, then other flags
      const second = await cli(home, ['run', 'two', '--project', 'ahead', '--json']);
      const afterSecond = await standby();
      const third = await cli(home, ['run', 'three', '--project', 'ahead', '--max-turns', '3', '--json']);
      // Assess: the second used the booted CLI (the session is the one it was started for); the third did not, and ran anyway
      expect(second.code, second.stderr).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ status: 'COMPLETED', numTurns: 1 });
      expect(afterSecond).toMatchObject({ used: 1, unused: 0 });
      expect(third.code, third.stderr).toBe(0);
      expect(JSON.parse(third.stdout)).toMatchObject({ status: 'COMPLETED' });
      expect(await until(async () => (await standby())?.unused === 1, 10_000)).toBe(true);
      expect(await standby()).toMatchObject({ used: 1, unused: 1 });

      // Two runs at once like the third: one of them takes the CLI booted after it, each runs its own session
      expect(await until(async () => (await standby())?.started === 3, 10_000)).toBe(true);
      const pair = await Promise.all(['four', 'five'].map((prompt) => cli(home, ['run', prompt, '--project', 'ahead', '--max-turns', '3', '--json'])));
      const sessions = pair.map((r) => JSON.parse(r.stdout) as { sessionId: string; status: string; promptChars: number });
      expect(sessions.map((x) => x.status)).toEqual(['COMPLETED', 'COMPLETED']);
      expect(new Set(sessions.map((x) => x.sessionId)).size).toBe(2);
      expect(await until(async () => (await standby())?.used === 2, 10_000)).toBe(true);
    } finally {
      server.child.kill('SIGTERM');
    }
  });

  it('CLAUDE_SESSIONS_STANDBY=0: no CLI is booted ahead', async () => {
    const home = await newHome();
    const server = await serve(home, { CLAUDE_SESSIONS_STANDBY: '0' });
    try {
      const run = await cli(home, ['run', 'one', '--project', 'ahead', '--json']);
      expect(run.code, run.stderr).toBe(0);
      const engine = (await (await fetch(`${server.url}/local/engine`)).json()) as { standby: unknown };
      expect(engine.standby).toBeNull();
    } finally {
      server.child.kill('SIGTERM');
    }
  });
});

describe('the engine\'s own routes: only this machine, and changes only from its own pages', () => {
  /** A request with the Host and Origin a page of another site (or a rebound name) would send. */
  function send(url: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; text: string }> {
    const target = new URL(path, url);
    return new Promise((resolve, reject) => {
      const req = request({ host: target.hostname, port: target.port, method, path: target.pathname, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      });
      req.once('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  it('refuses a foreign Host on every route and a foreign Origin on every change, and does none of them', async () => {
    // Prepare: a serve with one running session to abort
    const home = await newHome();
    const stalls = await new AnthropicStandIn().start();
    stalls.respondByDefault({ kind: 'stall' });
    const { child, url } = await serve(home, { ANTHROPIC_BASE_URL: stalls.url, ANTHROPIC_API_KEY: 'sk-ant-local' });
    try {
      const port = new URL(url).port;
      const own = { host: `127.0.0.1:${port}` };
      const started = await send(url, 'POST', '/local/runs', own, { input: { prompt: 'wait', projectId: 'guarded' }, endpoint: { apiKey: 'sk-ant-local', baseUrl: stalls.url } });
      expect(started.status).toBe(202);
      const { sessionId } = JSON.parse(started.text) as { sessionId: string };
      expect(await until(() => stalls.messageRequests.length === 1, 20_000)).toBe(true);
      const routes: [method: string, path: string, body?: unknown][] = [
        ['GET', '/local/engine'],
        ['POST', '/local/runs', { input: { prompt: 'leak the key', projectId: 'guarded' } }],
        ['POST', `/sessions/${sessionId}/abort`],
        ['GET', `/sessions/${sessionId}/events`],
        ['GET', `/local/sessions/${sessionId}`],
        ['PUT', '/projects/guarded/limit', { limit: 1 }],
        ['POST', '/local/engine/exit'],
      ];
      // Act
      const replies = [];
      for (const [method, path, body] of routes) {
        replies.push({ path, method, status: (await send(url, method, path, { host: `evil.example:${port}` }, body)).status });
        if (method !== 'GET') replies.push({ path, method, status: (await send(url, method, path, { ...own, origin: 'https://evil.example' }, body)).status });
      }
      // Assess: every one refused, the session still running, no limit set, no second session, the engine serving
      expect(replies.filter((r) => r.status !== 403)).toEqual([]);
      const engine = await send(url, 'GET', '/local/engine', own);
      expect(JSON.parse(engine.text)).toMatchObject({ running: 1 });
      const sessions = JSON.parse((await send(url, 'GET', '/projects/guarded/sessions', own)).text) as { items: { sessionId: string; status: string }[] };
      expect(sessions.items).toEqual([expect.objectContaining({ sessionId, status: 'RUNNING' })]);
      expect(stalls.messageRequests).toHaveLength(1);
      expect((await stat(home)).mode & 0o777).toBe(0o700);
    } finally {
      child.kill('SIGINT');
      await new Promise((resolve) => child.once('exit', resolve));
      await stalls.close();
    }
  });
});
