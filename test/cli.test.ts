import type { ChildProcess } from 'node:child_process';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { git, remoteRepository } from './support/git-remote.js';
import { cliEnvironment, runCli, stopEngine, type CliResult } from './support/cli-process.js';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { formatDuration, mergeModelVariants } from '../lib/cli/format.js';

let home: string;


/** The CLI as a user runs it: its own process, its state on disk between commands. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, started?: (child: ChildProcess) => void): Promise<CliResult> {
  return runCli(args, cliEnvironment(home, env), started);
}

/** The CLI with `input` piped to its stdin, as `… | claude-sessions run -`. */
function cliWithStdin(args: string[], input: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(args, cliEnvironment(home, env), undefined, { input });
}

/** The text of the first user message a model call carried (the prompt). */
function promptSent(request: { body: { messages?: unknown[] } }): string {
  const content = (request.body.messages?.[0] as { content: string | Array<{ type: string; text?: string }> }).content;
  return typeof content === 'string' ? content : content.filter((c) => c.type === 'text').map((c) => c.text).join('');
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
      projectId: 'cli-run', status: 'COMPLETED', trigger: 'cli', provider: 'anthropic', model: null,
    });
    // The built-in stand-in counts about a token for each 4 characters it was sent and replied.
    expect(session.usage.inputTokens).toBeGreaterThan('Summarise the README'.length / 4);
    expect(session.usage.outputTokens).toBeGreaterThan(10);
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
    const tokens = (JSON.parse(run.stdout) as { usage: { inputTokens: number; outputTokens: number } }).usage;
    expect(list.stdout).toMatch(new RegExp(`COMPLETED\\s+${tokens.inputTokens}\\s+${tokens.outputTokens}`));

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
    expect(run.stdout).toMatch(/Tokens\s+input \d+ · output \d+ · cache read 0 · cache write 0/);
    expect(run.stdout).toMatch(/Reply\n {2}Hello from the local Anthropic stand-in/);
  });

  it('refuses bad input before anything runs, naming each field, and leaves nothing RUNNING', async () => {
    const run = await cli(['run', '', '--project', 'bad id', '--session-id', 'nope', '--mode', 'weird']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/prompt: must not be empty/);
    expect(run.stderr).toMatch(/--project: must be 1-64 characters/);
    expect(run.stderr).toMatch(/--session-id: must be a UUID/);
    expect(run.stderr).toMatch(/--mode: must be one of fresh, milestone/);
    const running = await cli(['list', '--status', 'RUNNING', '--json']);
    expect(JSON.parse(running.stdout)).toEqual([]);
  });

  it('run - reads the prompt from stdin and --prompt-file from a file: a 99,000-character prompt reaches Claude whole', async () => {
    // Prepare: a prompt far past what an argument list takes
    const api = await new AnthropicStandIn().start();
    const prompt = `${'lorem ipsum '.repeat(8_249)}summarise it`;
    expect(prompt).toHaveLength(99_000);
    const file = join(home, 'prompt.txt');
    await writeFile(file, `from a file: ${prompt.slice(13)}`);
    const env = { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: api.url };
    try {
      // Act
      const piped = await cliWithStdin(['run', '-', '--project', 'long-prompt', '--json'], prompt, env);
      const fromFile = await cli(['run', '--prompt-file', relative(process.cwd(), file), '--project', 'long-prompt', '--json'], env);
      const both = await cli(['run', 'an argument', '--prompt-file', file]);
      const missing = await cli(['run', '--prompt-file', join(home, 'no-such-prompt.txt')]);
      // Assess
      expect(piped.code, piped.stderr).toBe(0);
      expect(fromFile.code, fromFile.stderr).toBe(0);
      const sent = api.messageRequests.map(promptSent);
      expect(sent.filter((p) => p.includes(prompt))).toHaveLength(1);
      expect(sent.filter((p) => p.includes(`from a file: ${prompt.slice(13)}`))).toHaveLength(1);
      expect(both.code).toBe(2);
      expect(both.stderr).toMatch(/not two of them/);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/--prompt-file: cannot read .*no-such-prompt\.txt: no such file/);
    } finally {
      await api.close();
    }
  });

  it('the built-in stand-in follows a prompt\'s stand-in: lines (an edit lands in the workspace, a stall times out, an error closes FAILED) and counts tokens by length', async () => {
    // Prepare: no ANTHROPIC_API_KEY, so the engine's built-in stand-in answers
    const { bare } = remoteRepository();
    const script = (...lines: object[]) => lines.map((l) => `stand-in: ${JSON.stringify(l)}`).join('\n');
    const run = async (prompt: string, ...flags: string[]) => {
      const result = await cli(['run', prompt, '--project', 'scripted', '--json', ...flags]);
      return { ...result, session: JSON.parse(result.stdout || 'null') as { status: string; error: string | null; cause: string | null; result: string | null; sessionId: string; usage: { inputTokens: number } } };
    };
    // Act
    const edit = await run(`Add notes.\n${script(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'NOTES.md', content: 'written by the scripted stand-in\n' } },
      { kind: 'text', text: 'Wrote NOTES.md.' },
    )}`, '--repo', bare);
    const stall = await run(`Wait.\n${script({ kind: 'stall' })}`, '--timeout-seconds', '5');
    const error = await run(`Fail.\n${script({ kind: 'error', status: 400, message: 'a scripted refusal' })}`);
    const bad = await run('stand-in: {"kind": "dance"}');
    const short = await run('hi');
    const long = await run(`hi ${'and more '.repeat(4_000)}`);
    // Assess
    expect(edit.session, edit.stderr).toMatchObject({ status: 'COMPLETED', result: 'Wrote NOTES.md.' });
    expect(git(bare, 'show', `claude-sessions/${edit.session.sessionId}:NOTES.md`)).toBe('written by the scripted stand-in');
    expect(stall.session, stall.stderr).toMatchObject({ status: 'TIMED_OUT' });
    expect(error.session, error.stderr).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError', cause: expect.stringContaining('a scripted refusal') });
    expect(bad.session).toMatchObject({ status: 'FAILED', cause: expect.stringContaining('needs a kind of text, tool_use, stall or error') });
    expect(long.session.usage.inputTokens - short.session.usage.inputTokens).toBeGreaterThan(36_000 / 4 - 100);
  });

  it('names the state folder in its first line when it is the directory\'s default, not when CLAUDE_SESSIONS_HOME names one', async () => {
    // Prepare: another directory, with no CLAUDE_SESSIONS_HOME (the cached workflow copied: no synth)
    const dir = await mkdtemp(join(tmpdir(), 'claude-sessions-cwd-'));
    const state = join(dir, '.claude-sessions');
    await cp(join(home, 'cache'), join(state, 'cache'), { recursive: true });
    const env = cliEnvironment(home);
    delete env.CLAUDE_SESSIONS_HOME;
    try {
      // Act
      const here = await runCli(['list'], env, undefined, { cwd: dir });
      const named = await cli(['list']);
      // Assess
      expect(here.code, here.stderr).toBe(0);
      expect(here.stderr.split('\n')[0]).toBe(`State: ${state} (this directory's; set CLAUDE_SESSIONS_HOME to one folder to use it from anywhere)`);
      expect(named.code).toBe(0);
      expect(named.stderr).not.toMatch(/^State:/m);
    } finally {
      await stopEngine(state);
    }
  });

  it('run --repo naming a path that is not there: a usage error naming --repo, exit 2, and no session', async () => {
    // Act
    const missing = await cli(['run', 'hi', '--repo', join(home, 'no-such-repo'), '--project', 'no-repo']);
    const relativeMissing = await cli(['run', 'hi', '--repo', 'no-such-repo-here', '--project', 'no-repo']);
    const list = await cli(['list', '--project', 'no-repo', '--json']);
    // Assess
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`--repo: no repository at ${join(home, 'no-such-repo')} (no such directory)`);
    expect(relativeMissing.code).toBe(2);
    expect(relativeMissing.stderr).toMatch(/--repo: no repository at .*no-such-repo-here/);
    expect(JSON.parse(list.stdout)).toEqual([]);
  });

  it('speaks in the user\'s terms: flags in field errors, a one-line hint on a usage error, --version, show by a unique id prefix, an unreachable API as ClaudeApiError', async () => {
    // Act
    const badTurns = await cli(['run', 'hi', '--max-turns', '0', '--max-budget-usd', 'lots']);
    const unknown = await cli(['frobnicate']);
    const version = await cli(['--version']);
    const { sessionId: id } = (JSON.parse((await cli(['list', '--project', 'cli-run', '--json'])).stdout) as Array<{ sessionId: string }>)[0]!;
    const byPrefix = await cli(['show', id.slice(0, 8), '--json']);
    const unreachable = await cli(['run', 'hi', '--project', 'unreachable', '--json'], { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: 'http://127.0.0.1:9' });
    // Assess
    expect(badTurns.code).toBe(2);
    expect(badTurns.stderr).toMatch(/^ {2}--max-turns: /m);
    expect(badTurns.stderr).toMatch(/^ {2}--max-budget-usd: /m);
    expect(badTurns.stderr).not.toMatch(/maxTurns|maxBudgetUsd/);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe('error: unknown command "frobnicate"\nRun `claude-sessions --help` for the commands and their flags.\n');
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^claude-sessions \d+\.\d+\.\d+ \(Claude Code \d+\.\d+\.\d+\)\n$/);
    expect(byPrefix.code, byPrefix.stderr).toBe(0);
    expect(JSON.parse(byPrefix.stdout)).toMatchObject({ sessionId: id });
    expect(unreachable.code).toBe(1);
    const failed = JSON.parse(unreachable.stdout) as { status: string; error: string; cause: string };
    expect(failed).toMatchObject({ status: 'FAILED', error: 'ClaudeApiError' });
    expect(failed.cause).not.toMatch(/^success:/);
  });

  it('counts a model under one name, its context variant (claude-opus-4-8[1m]) included', () => {
    const u = (inputTokens: number, costUsd: number) => ({ inputTokens, outputTokens: 1, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, costUsd });
    expect(mergeModelVariants({ 'claude-opus-4-8[1m]': u(10, 0.5), 'claude-opus-4-8': u(5, 0.25), 'claude-haiku-4-5': u(1, 0.01) })).toEqual({
      'claude-opus-4-8': { inputTokens: 15, outputTokens: 2, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, costUsd: 0.75 },
      'claude-haiku-4-5': u(1, 0.01),
    });
  });

  it('shows a session closed without a run of its own (aborted) with the time from its start to its close, not 0 ms', () => {
    expect(formatDuration({ durationMs: 0, startedAt: '2026-12-05T10:00:00.000Z', endedAt: '2026-12-05T10:00:10.000Z' })).toBe('10.0 s (start to close)');
    expect(formatDuration({ durationMs: 2_500, startedAt: '2026-12-05T10:00:00.000Z', endedAt: '2026-12-05T10:00:10.000Z' })).toBe('2.5 s');
    expect(formatDuration({ durationMs: 0, startedAt: '2026-12-05T10:00:00.000Z', endedAt: null })).toBe('0 ms');
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
    expect(refused.stderr).toContain(`--repo: must be ${bare}, the repository of milestone ${milestoneId}`);
    expect(refused.stderr).not.toContain('→ CreateSession');
    expect(shown.stdout).toContain(`${bare} · branch claude-sessions/milestone-${milestoneId}`);
  });
});
