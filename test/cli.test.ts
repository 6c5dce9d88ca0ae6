import type { ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { git, remoteRepository } from './support/git-remote.js';
import { cliEnvironment, runCli, stopEngine, type CliResult } from './support/cli-process.js';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';

let home: string;


/** The CLI as a user runs it: its own process, its state on disk between commands. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, started?: (child: ChildProcess) => void): Promise<CliResult> {
  return runCli(args, cliEnvironment(home, env), started);
}

/** Waits until the CLI under test has reached the API (its run is under way). */
async function firstRequest(api: AnthropicStandIn): Promise<void> {
  for (let i = 0; i < 400 && api.messageRequests.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'claude-sessions-home-'));
});
afterAll(async () => {
  await stopEngine(home);
});

describe('npx claude-sessions', () => {
  // One run that the first two tests read, made before either: neither depends on the other.
  let run: Awaited<ReturnType<typeof cli>>;
  let sessionId: string;
  beforeAll(async () => {
    run = await cli(['run', 'Summarise the README', '--project', 'cli-run', '--json']);
    sessionId = (JSON.parse(run.stdout || '{}') as { sessionId: string }).sessionId;
  });

  it('run --json: says it uses the stand-in first, shows the states, prints exactly the session record', () => {
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^Started a claude-sessions engine \(process \d+, http:\/\/127\.0\.0\.1:\d+\); it logs to .*engine\.log/m);
    expect(run.stderr).toMatch(/^No ANTHROPIC_API_KEY set: .*local stand-in/m);
    expect(run.stderr).toMatch(/→ CreateSession[\s\S]*→ RunClaude[\s\S]*→ ClaudeSucceeded[\s\S]*→ RecordUsage/);
    const session = JSON.parse(run.stdout);
    expect(Object.keys(session).sort()).toEqual([
      'attempts', 'cause', 'claudeSessionId', 'durationMs', 'endedAt', 'error', 'milestoneId', 'mode', 'model', 'modelUsage', 'numTurns',
      'projectId', 'provider', 'result', 'runtime', 'sessionId', 'startedAt', 'status', 'stopReason', 'taskId', 'totalCostUsd', 'trigger',
      'usage', 'workspace',
    ]);
    expect(session).toMatchObject({
      projectId: 'cli-run', status: 'COMPLETED', trigger: 'cli', usage: { inputTokens: 12, outputTokens: 34 }, provider: 'anthropic', model: null,
    });
    // The split by model holds the same tokens: one model served this session.
    expect(Object.values(session.modelUsage)).toEqual([expect.objectContaining(session.usage)]);
    expect(session.claudeSessionId).toBe(session.sessionId);
  });

  it('show and list read what run stored, from a new process', async () => {
    const show = await cli(['show', sessionId, '--json']);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ sessionId, status: 'COMPLETED' });

    const list = await cli(['list', '--project', 'cli-run']);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(sessionId);
    expect(list.stdout).toMatch(/COMPLETED\s+12\s+34/);

    const usage = await cli(['usage', '--project', 'cli-run', '--json']);
    expect(JSON.parse(usage.stdout)).toEqual([expect.objectContaining({ projectId: 'cli-run', sessions: 1 })]);
  });

  it('show --project reads the session under that project\'s path only; against a deployed API it needs --project', async () => {
    // Act
    const own = await cli(['show', sessionId, '--project', 'cli-run', '--json']);
    const other = await cli(['show', sessionId, '--project', 'cli-other']);
    // No request leaves: the usage error comes before any credential or network.
    const deployed = await cli(['show', sessionId, '--api', 'https://abc123.execute-api.eu-west-1.amazonaws.com/v1']);
    const milestone = await cli(['milestone', 'show', uuidv4(), '--api', 'https://abc123.execute-api.eu-west-1.amazonaws.com/v1']);
    // Assess
    expect(JSON.parse(own.stdout)).toMatchObject({ sessionId, projectId: 'cli-run' });
    expect(other).toMatchObject({ code: 1, stderr: `error: no session ${sessionId}\n` });
    expect(deployed.code).toBe(2);
    expect(deployed.stderr).toMatch(/^error: show needs --project with a deployed API: its paths name the project/);
    expect(milestone.code).toBe(2);
    expect(milestone.stderr).toMatch(/^error: milestone show needs --project with a deployed API/);
  });

  it('prints a readable session without --json', async () => {
    const run = await cli(['run', 'hello', '--project', 'demo', '--max-turns', '1']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Tokens\s+input 12 · output 34 · cache read 0 · cache write 0/);
    expect(run.stdout).toMatch(/Reply\n {2}Hello from the local Anthropic stand-in/);
  });

  it('refuses bad input before anything runs, naming each field, and leaves nothing RUNNING', async () => {
    const run = await cli(['run', '', '--project', 'bad id', '--session-id', 'nope', '--mode', 'weird']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/prompt: must not be empty/);
    expect(run.stderr).toMatch(/projectId: must be 1-64 characters/);
    expect(run.stderr).toMatch(/sessionId: must be a UUID/);
    expect(run.stderr).toMatch(/mode: must be one of fresh, milestone/);
    const running = await cli(['list', '--status', 'RUNNING', '--json']);
    expect(JSON.parse(running.stdout)).toEqual([]);
  });

  it('with ANTHROPIC_API_KEY set talks to ANTHROPIC_BASE_URL, the same code path but the URL', async () => {
    const api = await new AnthropicStandIn().start();
    try {
      api.respondWith({ kind: 'text', text: 'from the configured endpoint', usage: { input_tokens: 7, output_tokens: 8 } });
      const run = await cli(['run', 'hi', '--project', 'real', '--json'], { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: api.url });
      expect(run.code).toBe(0);
      expect(run.stderr).not.toMatch(/stand-in/);
      const session = JSON.parse(run.stdout);
      expect(session).toMatchObject({ result: 'from the configured endpoint', usage: { inputTokens: 7, outputTokens: 8 } });
      expect(api.messageRequests.map((r) => r.sessionId)).toEqual([session.sessionId]);

      // A session that did not complete exits non-zero, and still prints its record.
      api.respondByDefault({ kind: 'error', status: 401, message: 'invalid x-api-key' });
      const failed = await cli(['run', 'hi', '--project', 'real', '--json'], { ANTHROPIC_API_KEY: 'sk-ant-bad', ANTHROPIC_BASE_URL: api.url });
      expect(failed.code).toBe(1);
      expect(JSON.parse(failed.stdout)).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError', cause: expect.stringMatching(/401/) });
    } finally {
      await api.close();
    }
  });

  it('run --repo with a relative path: the session hands back a branch of that repository with what Claude wrote', async () => {
    // Prepare: Claude writes one file, through a stand-in the test steers
    const api = await new AnthropicStandIn().start();
    const { bare, main } = remoteRepository();
    api.respondWith({ kind: 'tool_use', name: 'Write', input: { file_path: 'CONTRIBUTING.md', content: '# Contributing\n' } }, { kind: 'text', text: 'Added it' });
    try {
      // Act
      const run = await cli(['run', 'Add a CONTRIBUTING.md', '--repo', relative(process.cwd(), bare), '--project', 'cli-ws', '--json'], {
        ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: api.endpoint.baseUrl,
      });
      // Assess
      expect(run.code, run.stderr).toBe(0);
      const session = JSON.parse(run.stdout);
      expect(session.workspace).toMatchObject({ repo: bare, baseCommit: main, branch: `claude-sessions/${session.sessionId}`, filesChanged: 1 });
      expect(git(bare, 'show', `claude-sessions/${session.sessionId}:CONTRIBUTING.md`)).toBe('# Contributing');
    } finally {
      await api.close();
    }
  });

  it('abort <id> from another terminal stops a running session, which closes ABORTED', async () => {
    const api = await new AnthropicStandIn().start();
    try {
      api.respondByDefault({ kind: 'stall' });
      const sessionId = uuidv4();
      const running = cli(['run', 'a long job', '--project', 'abort', '--session-id', sessionId], { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: api.url });
      await firstRequest(api);
      // The engine runs it; any other command is another client of the same engine.
      const listed = await cli(['list', '--project', 'abort', '--json']);
      expect(listed.code).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ sessionId, status: 'RUNNING' })]);
      const abort = await cli(['abort', sessionId]);
      expect(abort.code).toBe(0);
      expect(abort.stderr).toMatch(/Abort delivered/);
      const run = await running;
      expect(run.code).toBe(1);
      expect(JSON.parse((await cli(['show', sessionId, '--json'])).stdout)).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted' });
    } finally {
      await api.close();
    }
  });

  it('aborts the session of a `run` that is killed: the engine sees its event stream close', async () => {
    const api = await new AnthropicStandIn().start();
    try {
      api.respondByDefault({ kind: 'stall' });
      const sessionId = uuidv4();
      let child: ChildProcess | undefined;
      const running = cli(['run', 'doomed', '--project', 'orphan', '--session-id', sessionId], { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: api.url }, (c) => (child = c));
      await firstRequest(api);
      child!.kill('SIGKILL');
      await running;
      let list = await cli(['list', '--project', 'orphan', '--json']);
      for (let i = 0; i < 20 && list.stdout.includes('"RUNNING"'); i++) list = await cli(['list', '--project', 'orphan', '--json']);
      expect(list.code).toBe(0);
      expect(JSON.parse(list.stdout)).toEqual([expect.objectContaining({ sessionId, status: 'ABORTED', error: 'ExecutionAborted' })]);
    } finally {
      await api.close();
    }
  });
  it('milestone open / run --milestone / show / close: three tasks that build on each other, with their spend', async () => {
    // Act
    const opened = await cli(['milestone', 'open', '--project', 'cli-ms']);
    const milestoneId = opened.stdout.trim();
    const runs: CliResult[] = [];
    for (const prompt of ['Write a plan', 'Do step one', 'Do step two']) runs.push(await cli(['run', prompt, '--milestone', milestoneId, '--json']));
    const shown = await cli(['milestone', 'show', milestoneId]);
    const shownJson = JSON.parse((await cli(['milestone', 'show', milestoneId, '--project', 'cli-ms', '--json'])).stdout);
    const elsewhere = await cli(['milestone', 'close', milestoneId, '--project', 'cli-other']);
    const closed = await cli(['milestone', 'close', milestoneId]);
    const refused = await cli(['run', 'one more', '--milestone', milestoneId]);
    // Assess
    expect(opened.code).toBe(0);
    expect(opened.stderr).toContain(`--milestone ${milestoneId}`);
    for (const run of runs) {
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toMatchObject({ status: 'COMPLETED', mode: 'milestone', milestoneId, projectId: 'cli-ms', claudeSessionId: milestoneId });
    }
    // The stand-in counts the messages it was sent: the third task saw the two before it (their
    // prompts and replies, at least 4 more messages than the first). CLI fact: how many messages a
    // prompt takes is the CLI's (2.1.197: 1 and 5; 2.1.332 adds its environment as a message per invocation: 2 and 8).
    const received = (i: number) => Number(/received (\d+) message\(s\)/.exec(JSON.parse(runs[i]!.stdout).result)?.[1]);
    expect(received(2)).toBeGreaterThanOrEqual(received(0) + 4);
    expect(shown.stdout).toMatch(new RegExp(`Milestone\\s+${milestoneId}\\s+OPEN`));
    expect(shown.stdout).toMatch(/Tasks\s+3 \(COMPLETED 3\)/);
    expect(shownJson.totals.usage.inputTokens).toBe(shownJson.tasks.reduce((n: number, t: { usage: { inputTokens: number } }) => n + t.usage.inputTokens, 0));
    // Another project's path does not find it, and closes nothing.
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stderr).toContain(`milestone ${milestoneId} does not exist in project cli-other`);
    expect(closed.stdout).toMatch(/CLOSED/);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`milestone ${milestoneId} is closed and takes no more tasks`);
    expect(refused.stderr).not.toContain('→ CreateSession'); // refused before any execution
  });

  it('run --milestone --repo: the first task fixes the milestone\'s branch, later tasks inherit it, another --repo exits 2 naming the field', async () => {
    // Prepare
    const { bare } = remoteRepository();
    const other = remoteRepository();
    const milestoneId = (await cli(['milestone', 'open', '--project', 'cli-ms-ws'])).stdout.trim();
    // Act
    const first = await cli(['run', 'Look around', '--milestone', milestoneId, '--repo', relative(process.cwd(), bare), '--json']);
    const inherited = await cli(['run', 'Look again', '--milestone', milestoneId, '--json']);
    const refused = await cli(['run', 'Elsewhere', '--milestone', milestoneId, '--repo', other.bare]);
    const shown = await cli(['milestone', 'show', milestoneId]);
    // Assess: the built-in stand-in changes nothing, so no branch is pushed yet
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).workspace).toMatchObject({ repo: bare, branch: null });
    expect(JSON.parse(inherited.stdout).workspace).toMatchObject({ repo: bare, branch: null });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`workspace.repo: must be ${bare}, the repository of milestone ${milestoneId}`);
    expect(refused.stderr).not.toContain('→ CreateSession');
    expect(shown.stdout).toContain(`${bare} · branch claude-sessions/milestone-${milestoneId}`);
  });
});
