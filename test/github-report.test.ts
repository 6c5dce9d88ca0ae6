import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { issueBranch } from '../lib/api/github-webhook.js';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import type { MilestoneView } from '../lib/sessions/milestone-repository.js';
import type { SessionRecord } from '../lib/sessions/session-item.js';
import { cliEnvironment, startServe, stopServe } from './support/cli-process.js';
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
  await stopServe(child, home);
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

async function deliver(payload: unknown, event = 'issue_comment'): Promise<{ status: number; body: { started?: boolean; sessionId?: string; milestoneId?: string; reason?: string; closed?: string; message?: string } }> {
  const body = JSON.stringify(payload);
  const response = await fetch(`${url}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', 'x-github-event': event, 'x-github-delivery': uuidv4(),
      'x-hub-signature-256': `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`,
    },
    body,
  });
  return { status: response.status, body: await response.json() as { started?: boolean; sessionId?: string; milestoneId?: string; reason?: string; closed?: string; message?: string } };
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

/** A collaborator's issue_comment on pull request `pull` of acme/widgets, as GitHub sends it: the pull request as an issue, its body included. */
function pullCommentEvent(pull: { number: number; title: string; body: string; html_url: string }, body: string, state = 'open') {
  const commentId = 4_000_000 + ++issueNumber;
  return {
    action: 'created',
    issue: {
      number: pull.number, title: pull.title, body: pull.body, html_url: `${repoUrl}/pull/${pull.number}`, updated_at: new Date().toISOString(), state,
      pull_request: { url: `https://api.github.example/repos/acme/widgets/pulls/${pull.number}` },
    },
    comment: {
      id: commentId, html_url: `${repoUrl}/pull/${pull.number}#issuecomment-${commentId}`, body, user: { login: 'maintainer' },
      author_association: 'MEMBER', created_at: new Date().toISOString(),
    },
    repository: { id: 42, full_name: 'acme/widgets', html_url: repoUrl },
  };
}

/** GitHub's pull_request (closed) event of a pull request of acme/widgets, from `headRepo` (a fork: another). */
function pullClosedEvent(pull: { number: number; body: string; html_url: string }, head: string, headRepo = 'acme/widgets') {
  return {
    action: 'closed', number: pull.number,
    pull_request: {
      number: pull.number, body: pull.body, html_url: pull.html_url, state: 'closed', closed_at: new Date().toISOString(), merged: true,
      head: { ref: head, repo: { full_name: headRepo } }, base: { ref: 'main', repo: { full_name: 'acme/widgets' } },
    },
    repository: { id: 42, full_name: 'acme/widgets', html_url: repoUrl },
  };
}

async function milestoneOf(milestoneId: string): Promise<MilestoneView> {
  const response = await fetch(`${url}/projects/widgets/milestones/${milestoneId}`);
  expect(response.status).toBe(200);
  return (await response.json()) as MilestoneView;
}

/** The user's text and Claude's replies a model call carried, as one string. */
const conversationOf = (index: number) => JSON.stringify(anthropic.messageRequests[index]!.body.messages);

/** A /claude comment on a new issue whose session writes `file`: its session and the pull request it opened. */
async function issueWithPullRequest(file: string, content: string) {
  anthropic.respondWith(
    { kind: 'tool_use', name: 'Write', input: { file_path: file, content } },
    { kind: 'text', text: `Wrote ${file} (ALPHA-REPLY).` },
  );
  const event = commentEvent(`/claude write ${file} (ALPHA-PROMPT)`);
  const answer = await deliver(event);
  const session = await closed(answer.body.sessionId!);
  await reported(event.issue.number, session.sessionId);
  const [pull] = pullsOf(session.workspace?.branch);
  expect(pull, `${session.error}: ${session.cause}`).toBeDefined();
  return { event, session, pull: pull!, milestoneId: answer.body.milestoneId! };
}

describe('a pull request is a milestone', () => {
  it('a /claude comment on the pull request an issue\'s session opened continues its conversation on its branch: the task sees the first one\'s file and messages, and its comment shows its usage and the running total', async () => {
    // Prepare: the issue's task writes NOTES.md and opens the pull request
    const first = await issueWithPullRequest('NOTES.md', 'first task was here\n');
    const callsBefore = anthropic.messageRequests.length;
    // The pull request's task reads the file (CLI fact: a Read with a limit reads the disk, not the conversation's copy), then writes another
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Read', input: { file_path: 'NOTES.md', limit: 10 } },
      { kind: 'tool_use', name: 'Write', input: { file_path: 'MORE.md', content: 'second task\n' } },
      { kind: 'text', text: 'Read the notes and wrote MORE.md.' },
    );

    // Act: the comment, and GitHub's redelivery of it once its task has run
    const comment = pullCommentEvent(first.pull, '/claude now add MORE.md (BETA-PROMPT)');
    const answer = await deliver(comment);
    const second = await closed(answer.body.sessionId!);
    const comments = await reported(first.pull.number, second.sessionId);
    const redelivered = await deliver(comment);

    // Assess: one milestone, one conversation (the CLI resumed it: the milestone's id on every call, the first task's turns in the second's)
    const branch = issueBranch(first.event.issue.number);
    expect(first.session).toMatchObject({ mode: 'milestone', milestoneId: first.milestoneId, claudeSessionId: first.milestoneId, workspace: { branch } });
    expect(answer).toMatchObject({ status: 202, body: { started: true, milestoneId: first.milestoneId } });
    expect(redelivered).toMatchObject({ status: 202, body: { started: false, sessionId: second.sessionId } });
    expect(second, `${second.error}: ${second.cause}`).toMatchObject({
      status: 'COMPLETED', taskId: `pr-${first.pull.number}`, mode: 'milestone', milestoneId: first.milestoneId,
      workspace: { branch, baseCommit: first.session.workspace!.commit, filesChanged: 1 },
    });
    expect(anthropic.messageRequests.map((r) => r.sessionId)).toEqual(anthropic.messageRequests.map(() => first.milestoneId));
    const secondFirstCall = conversationOf(callsBefore);
    for (const earlier of ['ALPHA-PROMPT', 'ALPHA-REPLY', 'BETA-PROMPT']) expect(secondFirstCall).toContain(earlier);
    expect(JSON.stringify((anthropic.messageRequests[callsBefore + 1]!.body.messages as { content: unknown }[]).at(-1))).toContain('first task was here');
    // The same branch, one commit on the other; one pull request
    expect(git(remote.barePath(`${repoUrl}.git`), 'log', '--format=%H', branch).split('\n').slice(0, 2)).toEqual([second.workspace!.commit, first.session.workspace!.commit]);
    expect(pullsOf(branch)).toHaveLength(1);
    expect(first.pull.body).toContain(`<!-- claude-sessions:issue=${first.event.issue.number} -->`);
    // The pull request's thread: this task's usage and the conversation's total so far, the sum of both records
    expect(comments).toHaveLength(1);
    const body = comments[0]!.body;
    expect(body).toContain(`Pushed \`${branch}\``);
    expect(body).toContain('Read the notes and wrote MORE.md.');
    expect(body).toContain(`| \`${second.sessionId}\` |`);
    const n = (v: number) => v.toLocaleString('en-US');
    const [a, b] = [first.session.usage, second.usage];
    const input = a.inputTokens + b.inputTokens;
    const output = a.outputTokens + b.outputTokens;
    const tokens = input + output + a.cacheReadInputTokens + b.cacheReadInputTokens + a.cacheCreationInputTokens + b.cacheCreationInputTokens;
    expect(body).toContain(`| conversation so far (2 tasks) | ${n(tokens)} (input ${n(input)}, output ${n(output)}`);
    expect(body).toContain(`| ${first.session.numTurns + second.numTurns} | $${(first.session.totalCostUsd + second.totalCostUsd).toFixed(6)} |`);
    const view = await milestoneOf(first.milestoneId);
    expect(view.tasks.map((t) => t.sessionId)).toEqual([first.session.sessionId, second.sessionId]);
  });

  it('a comment while the pull request\'s task runs starts no second run: its session ends at once, nothing spent, and the thread gets a one-line "busy"', async () => {
    // Prepare: the pull request's first task stalls, holding the milestone
    const first = await issueWithPullRequest('BUSY.md', 'busy\n');
    anthropic.respondWith({ kind: 'stall' });
    const running = await deliver(pullCommentEvent(first.pull, '/claude take your time'));
    await waitFor(async () => (await milestoneOf(first.milestoneId)).leaseSessionId === running.body.sessionId, 'the running task\'s lease');
    const callsBefore = anthropic.messageRequests.length;

    // Act
    const answer = await deliver(pullCommentEvent(first.pull, '/claude and this too'));
    const refused = await closed(answer.body.sessionId!);
    const comments = await reported(first.pull.number, refused.sessionId);
    const callsDuring = anthropic.messageRequests.length;
    await fetch(`${url}/sessions/${running.body.sessionId}/abort`, { method: 'POST' });
    const aborted = await closed(running.body.sessionId!);

    // Assess: refused by the lease, never run, and said so in one line
    expect(refused).toMatchObject({ status: 'FAILED', error: 'MilestoneUnavailable', milestoneId: first.milestoneId, numTurns: 0, totalCostUsd: 0 });
    expect(callsDuring).toBe(callsBefore);
    const line = comments.find((c) => c.body.includes(`claude-sessions:session=${refused.sessionId}`))!.body;
    expect(line.split('\n').filter((l) => l.trim() && !l.startsWith('<!--'))).toEqual([expect.stringMatching(/^Busy: another task of this conversation was running/)]);
    expect(aborted.status).toBe('ABORTED');
    expect((await milestoneOf(first.milestoneId)).leaseSessionId).toBeNull();
  });

  it('the reporter records the pull request it opened on the issue\'s milestone; a later task of the issue finds it and records nothing new', async () => {
    // Prepare: the issue's first task opens the pull request
    const first = await issueWithPullRequest('BIND.md', 'bound\n');
    const recorded = (await milestoneOf(first.milestoneId)).pullRequest;
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'BIND2.md', content: 'again\n' } },
      { kind: 'text', text: 'Wrote BIND2.md.' },
    );

    // Act: another /claude comment on the issue, whose task pushes to the same branch
    const again = await deliver({ ...commentEvent('/claude and BIND2.md'), issue: first.event.issue });
    const second = await closed(again.body.sessionId!);
    await reported(first.event.issue.number, second.sessionId);

    // Assess
    expect(recorded).toEqual({ number: first.pull.number, url: first.pull.html_url });
    expect(second).toMatchObject({ status: 'COMPLETED', milestoneId: first.milestoneId, workspace: { branch: first.session.workspace!.branch } });
    expect(pullsOf(first.session.workspace!.branch)).toHaveLength(1);
    expect((await milestoneOf(first.milestoneId)).pullRequest).toEqual(recorded);
  });

  it('a pull request whose body copies an issue\'s marker is not that issue\'s: a trusted /claude comment on it starts a fresh session, no task of the milestone, no push to its branch; the real pull request\'s comment still continues it', async () => {
    // Prepare: issue N's pull request, and another pull request of the repository whose author pasted N's marker into its body
    const first = await issueWithPullRequest('REAL.md', 'the real one\n');
    const branch = issueBranch(first.event.issue.number);
    const impostor = {
      number: first.pull.number + 5_000, title: 'Tidy the docs', html_url: `${repoUrl}/pull/${first.pull.number + 5_000}`,
      body: `Small docs fix.\n\n<!-- claude-sessions:issue=${first.event.issue.number} -->`,
    };
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'IMPOSTOR.md', content: 'not issue N\'s\n' } },
      { kind: 'text', text: 'Wrote IMPOSTOR.md.' },
    );

    // Act: a maintainer's /claude on the impostor, then one on the real pull request
    const onImpostor = await deliver(pullCommentEvent(impostor, '/claude tidy this up'));
    const impostorSession = await closed(onImpostor.body.sessionId!);
    await reported(impostor.number, impostorSession.sessionId);
    anthropic.respondWith({ kind: 'text', text: 'Nothing more to do.' });
    const onReal = await deliver(pullCommentEvent(first.pull, '/claude anything left?'));
    const realSession = await closed(onReal.body.sessionId!);

    // Assess: the impostor's session is a fresh one on a branch of its own; issue N's branch and conversation are as its task left them
    expect(onImpostor).toMatchObject({ status: 202, body: { started: true } });
    expect(onImpostor.body.milestoneId).toBeUndefined();
    expect(impostorSession, `${impostorSession.error}: ${impostorSession.cause}`).toMatchObject({ status: 'COMPLETED', taskId: `pr-${impostor.number}`, mode: 'fresh' });
    expect(impostorSession.milestoneId ?? null).toBeNull();
    expect(impostorSession.workspace?.branch).not.toBe(branch);
    expect(git(remote.barePath(`${repoUrl}.git`), 'rev-parse', branch)).toBe(first.session.workspace!.commit);
    // Claude heard the comment in a conversation of its own, never in issue N's
    const heard = anthropic.messageRequests.filter((r) => JSON.stringify(r.body.messages).includes('tidy this up')).map((r) => r.sessionId);
    expect(heard.length).toBeGreaterThan(0);
    expect(new Set(heard)).toEqual(new Set([impostorSession.sessionId]));
    // The real pull request's comment is a task of the milestone, which holds the two tasks only
    expect(onReal).toMatchObject({ status: 202, body: { started: true, milestoneId: first.milestoneId } });
    expect(realSession).toMatchObject({ status: 'COMPLETED', taskId: `pr-${first.pull.number}`, milestoneId: first.milestoneId });
    expect((await milestoneOf(first.milestoneId)).tasks.map((t) => t.sessionId)).toEqual([first.session.sessionId, realSession.sessionId]);
  });

  it('a pull request someone else opens from the issue\'s branch before its first report is not bound: the reporter records only one it opened, so closing that one closes nothing', async () => {
    // Prepare: a new issue whose branch already has an open pull request by someone who may open one there (read access
    // is enough), its body carrying the issue's marker; GitHub allows one open pull request per head and base
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'EARLY.md', content: 'early\n' } },
      { kind: 'text', text: 'Wrote EARLY.md.' },
    );
    const event = commentEvent('/claude write EARLY.md');
    const branch = issueBranch(event.issue.number);
    const outsider = {
      number: 9_000 + event.issue.number, html_url: `${repoUrl}/pull/${9_000 + event.issue.number}`, state: 'open', title: 'Mine now',
      head: branch, base: 'main', body: `<!-- claude-sessions:issue=${event.issue.number} -->`,
    };
    github.pulls.set('acme/widgets', [...(github.pulls.get('acme/widgets') ?? []), outsider]);

    // Act: the issue's session pushes its branch and is reported; then the outsider closes their pull request
    const answer = await deliver(event);
    const session = await closed(answer.body.sessionId!);
    await reported(event.issue.number, session.sessionId);
    const view = await milestoneOf(answer.body.milestoneId!);
    const closing = await deliver(pullClosedEvent(outsider, branch), 'pull_request');

    // Assess: pushed, nothing bound, nothing closed
    expect(session, `${session.error}: ${session.cause}`).toMatchObject({ status: 'COMPLETED', workspace: { branch } });
    expect(pullsOf(branch)).toEqual([outsider]);
    expect(view.pullRequest).toBeNull();
    expect(closing.body.closed).toBeUndefined();
    expect((await milestoneOf(answer.body.milestoneId!)).status).toBe('OPEN');
  });

  it('closing a pull request that copies an issue\'s marker, even from the issue\'s branch name, closes nothing; a comment on it once closed still starts a session as on any pull request', async () => {
    // Prepare
    const first = await issueWithPullRequest('KEEP.md', 'keep\n');
    const branch = first.session.workspace!.branch!;
    const impostor = {
      number: first.pull.number + 6_000, title: 'Unrelated', html_url: `${repoUrl}/pull/${first.pull.number + 6_000}`,
      body: `<!-- claude-sessions:issue=${first.event.issue.number} -->`,
    };
    anthropic.respondWith({ kind: 'text', text: 'Looked at it.' });

    // Act
    const closing = await deliver(pullClosedEvent(impostor, branch), 'pull_request');
    const view = await milestoneOf(first.milestoneId);
    const later = await deliver(pullCommentEvent(impostor, '/claude look again', 'closed'));
    const laterSession = later.body.sessionId ? await closed(later.body.sessionId) : undefined;

    // Assess
    expect(closing).toMatchObject({ status: 200, body: { started: false, reason: expect.stringMatching(/is not the pull request of issue #\d+'s conversation/) } });
    expect(closing.body.closed).toBeUndefined();
    expect(view).toMatchObject({ status: 'OPEN', closedAt: null });
    expect(later).toMatchObject({ status: 202, body: { started: true } });
    expect(laterSession).toMatchObject({ status: 'COMPLETED', taskId: `pr-${impostor.number}`, mode: 'fresh' });
  });

  it('closing or merging the pull request closes its milestone: a later comment starts nothing; a fork\'s pull request carrying the marker closes nothing', async () => {
    // Prepare
    const first = await issueWithPullRequest('CLOSE.md', 'close\n');
    const branch = first.session.workspace!.branch!;

    // Act
    const fork = await deliver(pullClosedEvent(first.pull, branch, 'mallory/widgets'), 'pull_request');
    const stillOpen = (await milestoneOf(first.milestoneId)).status;
    const merged = await deliver(pullClosedEvent(first.pull, branch), 'pull_request');
    const view = await milestoneOf(first.milestoneId);
    const later = await deliver(pullCommentEvent(first.pull, '/claude one more thing', 'closed'));

    // Assess
    expect(fork).toMatchObject({ status: 200, body: { started: false, reason: expect.stringMatching(/comes from another repository \(mallory\/widgets\)/) } });
    expect(stillOpen).toBe('OPEN');
    expect(merged).toMatchObject({ status: 200, body: { closed: first.milestoneId, reason: expect.stringMatching(/merged: milestone .* closed/) } });
    expect(view).toMatchObject({ status: 'CLOSED', closedAt: expect.any(String) });
    expect(later).toMatchObject({ status: 200, body: { started: false, reason: expect.stringMatching(/is closed: its conversation takes no more tasks/) } });
  });
});
