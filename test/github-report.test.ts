import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import type { SessionRecord } from '../lib/sessions/session-item.js';
import { cliEnvironment, startServe, stopEngine } from './support/cli-process.js';
import { git } from './support/git-remote.js';
import { GitHubStandIn } from './support/github-stand-in.js';
import { HttpsGitRemote } from './support/https-git-remote.js';
import { waitFor } from './support/wait-for.js';

// GitHub out (issue 26, items 4 and 6), through `serve` as a user runs it: a signed issue comment
// starts a session of the real CLI on a repository served over https (git http-backend), its
// branch is pushed, and the engine's reporter opens the pull request and comments on the issue
// through the GitHub stand-in's REST API, after the session closed and without touching its record.

const SECRET = 'the webhook secret of the report tests';
const TOKEN = 'ghs_the_deployment_token';

let anthropic: AnthropicStandIn;
let github: GitHubStandIn;
let remote: HttpsGitRemote;
let repoUrl: string;
let home: string;
let child: ChildProcess;
let url: string;
/** What the engine has printed so far. */
let stderr: () => string;
let issueNumber = 500;

beforeAll(async () => {
  anthropic = await new AnthropicStandIn().start();
  github = await new GitHubStandIn().start();
  remote = await new HttpsGitRemote().start();
  remote.repository('acme', 'widgets');
  repoUrl = `https://127.0.0.1:${remote.port}/acme/widgets`; // a repository's html_url: no .git
  home = await mkdtemp(join(tmpdir(), 'claude-sessions-github-report-'));
  ({ child, url, stderr } = await startServe(cliEnvironment(home, {
    ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: anthropic.url, CLAUDE_SESSIONS_STANDBY: '0',
    CLAUDE_SESSIONS_GITHUB_WEBHOOK_SECRET: SECRET,
    CLAUDE_SESSIONS_GITHUB_TRIGGERS: JSON.stringify({ repositories: { 'acme/widgets': 'widgets' } }),
    CLAUDE_SESSIONS_GIT_TOKEN: TOKEN, CLAUDE_SESSIONS_GIT_TOKEN_SCOPES: `https://127.0.0.1:${remote.port}/acme/`,
    CLAUDE_SESSIONS_GITHUB_API_URL: github.url,
    GIT_SSL_CAINFO: remote.caFile,
  })));
});

afterAll(async () => {
  child?.kill('SIGINT');
  await new Promise((resolve) => (child?.exitCode === null ? child.once('exit', resolve) : resolve(undefined)));
  await stopEngine(home);
  await Promise.all([anthropic?.close(), github?.close(), remote?.close()]);
});

beforeEach(() => {
  anthropic.reset();
  github.calls.length = 0;
});

/** A GitHub issue_comment (created) on a new issue of acme/widgets, by a collaborator. */
function commentEvent(body: string) {
  const number = ++issueNumber;
  const issueUrl = `${repoUrl}/issues/${number}`;
  github.issues.set(`acme/widgets#${number}`, `Widgets crash on empty input (${number})`);
  return {
    action: 'created',
    issue: { number, title: `Widgets crash on empty input (${number})`, body: 'It throws.', html_url: issueUrl, updated_at: new Date().toISOString(), state: 'open' },
    comment: {
      id: 3_000_000 + number, html_url: `${issueUrl}#issuecomment-${3_000_000 + number}`, body, user: { login: 'maintainer' },
      author_association: 'COLLABORATOR', created_at: new Date().toISOString(),
    },
    repository: { id: 42, full_name: 'acme/widgets', html_url: repoUrl },
  };
}

async function deliver(payload: unknown): Promise<{ status: number; body: { started?: boolean; sessionId?: string } }> {
  const body = JSON.stringify(payload);
  const response = await fetch(`${url}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', 'x-github-event': 'issue_comment', 'x-github-delivery': uuidv4(),
      'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
    },
    body,
  });
  return { status: response.status, body: await response.json() as { started?: boolean; sessionId?: string } };
}

async function sessionRecord(sessionId: string): Promise<SessionRecord | undefined> {
  const response = await fetch(`${url}/projects/widgets/sessions/${sessionId}`);
  return response.ok ? (await response.json()) as SessionRecord : undefined;
}

const closed = (sessionId: string) => waitFor(async () => {
  const session = await sessionRecord(sessionId);
  return session && session.status !== 'RUNNING' ? session : undefined;
}, `session ${sessionId} to close`, 90_000);

/** The issue's comments, once the one marked with this session has been posted. */
const reported = (issue: number, sessionId: string) => waitFor(async () => {
  const comments = github.comments.get(`acme/widgets#${issue}`) ?? [];
  return comments.some((c) => c.body.includes(`claude-sessions:session=${sessionId}`)) ? comments : undefined;
}, `the report of session ${sessionId}`, 60_000);

const pullsOf = (branch: string | null | undefined) => (github.pulls.get('acme/widgets') ?? []).filter((p) => p.head === branch);

describe('a GitHub session reports on GitHub after it closes', () => {
  it('a /claude comment on an issue: the branch is pushed, one pull request opened with the usage in its body, one comment on the issue linking it', async () => {
    // Prepare: Claude writes a file, then says what it did
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'GUARD.md', content: 'Empty input is refused.\n' } },
      { kind: 'text', text: 'Added a guard for the empty string.' },
    );
    const event = commentEvent('/claude add a guard for the empty string');

    // Act
    const answer = await deliver(event);
    const session = await closed(answer.body.sessionId!);
    const comments = await reported(event.issue.number, session.sessionId);

    // Assess: the branch on the remote, its one pull request, the issue's one comment
    expect(session, `${session.error}: ${session.cause}`).toMatchObject({ status: 'COMPLETED', trigger: 'github', workspace: { branch: expect.any(String), filesChanged: 1 } });
    const branch = session.workspace!.branch!;
    expect(git(remote.barePath(`${repoUrl}.git`), 'rev-parse', branch)).toBe(session.workspace!.commit);
    const [pull, ...more] = pullsOf(branch);
    expect(more).toEqual([]);
    expect(pull).toMatchObject({ base: 'main', title: `Widgets crash on empty input (${event.issue.number})` });
    expect(pull!.body).toContain(`Resolves #${event.issue.number}.`);
    expect(pull!.body).toContain('Added a guard for the empty string.');
    const u = session.usage;
    const tokens = (u.inputTokens + u.outputTokens + u.cacheReadInputTokens + u.cacheCreationInputTokens).toLocaleString('en-US');
    expect(tokens).not.toBe('0');
    expect(pull!.body).toContain(`| \`${session.sessionId}\` | ${tokens} (input ${u.inputTokens.toLocaleString('en-US')}`);
    expect(pull!.body).toContain(`| ${session.numTurns} | $${session.totalCostUsd.toFixed(6)} |`);
    expect(comments).toHaveLength(1);
    expect(comments[0]!.body).toContain(`Opened ${pull!.html_url} from \`${branch}\` (1 file(s) changed, +1 −0).`);
    expect(github.writes).toEqual(['POST /repos/acme/widgets/pulls', `POST /repos/acme/widgets/issues/${event.issue.number}/comments`]);
    expect(new Set(github.calls.map((c) => c.authorization))).toEqual(new Set([`Bearer ${TOKEN}`]));
  });

  it('with GitHub answering 500 to its first calls and to the comment after the pull request opened, the session\'s record is unchanged and the report is retried to one pull request and one comment', async () => {
    // Prepare: an outage of the next two calls, then of the comment's POST once (the pull request made already)
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'RETRY.md', content: 'retried\n' } },
      { kind: 'text', text: 'Wrote RETRY.md.' },
    );
    github.failNext(2);
    github.failNext(1, (call) => call.method === 'POST' && call.path.endsWith('/comments'));
    const event = commentEvent('/claude write RETRY.md');

    // Act
    const answer = await deliver(event);
    const session = await closed(answer.body.sessionId!);
    const comments = await reported(event.issue.number, session.sessionId);
    const after = await sessionRecord(session.sessionId);

    // Assess: three failed tries logged, the fourth found the pull request the third opened; the record as it was when it closed
    expect(github.calls.filter((c) => c.status === 500).map((c) => `${c.method} ${c.path}`)).toEqual([
      `GET /repos/acme/widgets/issues/${event.issue.number}/comments`, `GET /repos/acme/widgets/issues/${event.issue.number}/comments`,
      `POST /repos/acme/widgets/issues/${event.issue.number}/comments`,
    ]);
    expect(stderr()).toMatch(new RegExp(`github report of session ${session.sessionId}, try 2 of 5: GitHub GET /repos/acme/widgets/issues/${event.issue.number}/comments answered 500`));
    expect(stderr()).toMatch(new RegExp(`github report of session ${session.sessionId}, try 3 of 5: GitHub POST /repos/acme/widgets/issues/${event.issue.number}/comments answered 500`));
    expect(after).toEqual(session);
    expect(session.status).toBe('COMPLETED');
    expect(pullsOf(session.workspace!.branch)).toHaveLength(1);
    expect(comments).toHaveLength(1);
    expect(github.writes).toEqual(['POST /repos/acme/widgets/pulls', `POST /repos/acme/widgets/issues/${event.issue.number}/comments`]);
  });

  it('a session that changes nothing opens no pull request and says so on the issue', async () => {
    // Prepare
    anthropic.respondWith({ kind: 'text', text: 'The guard is there already: nothing to change.' });
    const event = commentEvent('/claude check the guard');

    // Act
    const answer = await deliver(event);
    const session = await closed(answer.body.sessionId!);
    const comments = await reported(event.issue.number, session.sessionId);

    // Assess
    expect(session).toMatchObject({ status: 'COMPLETED', workspace: { branch: null, filesChanged: 0 } });
    expect(github.pulls.get('acme/widgets')?.filter((p) => p.body.includes(session.sessionId)) ?? []).toEqual([]);
    expect(comments).toHaveLength(1);
    expect(comments[0]!.body).toContain('Claude changed nothing, so no pull request was opened.');
    expect(comments[0]!.body).toContain('The guard is there already: nothing to change.');
    expect(github.writes).toEqual([`POST /repos/acme/widgets/issues/${event.issue.number}/comments`]);
  });

  it('a failed session\'s comment says what failed and what was spent, and opens no pull request', async () => {
    // Prepare: the API refuses every call
    anthropic.respondByDefault({ kind: 'error', status: 400, message: 'prompt is too long' });
    const event = commentEvent('/claude do the impossible');

    // Act
    const answer = await deliver(event);
    const session = await closed(answer.body.sessionId!);
    const comments = await reported(event.issue.number, session.sessionId);
    anthropic.reset();

    // Assess
    expect(session.status).toBe('FAILED');
    expect(comments).toHaveLength(1);
    expect(comments[0]!.body).toContain(`The session failed: ${session.error}`);
    expect(comments[0]!.body).toContain(`| \`${session.sessionId}\` |`);
    expect(comments[0]!.body).toContain(`| ${session.numTurns} | $${session.totalCostUsd.toFixed(6)} |`);
    expect(github.writes).toEqual([`POST /repos/acme/widgets/issues/${event.issue.number}/comments`]);
  });
});
