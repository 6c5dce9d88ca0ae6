import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseGitHubTriggers } from '../lib/api/github-webhook.js';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import type { SessionRecord } from '../lib/sessions/session-item.js';
import { cliEnvironment, startServe, stopServe } from './support/cli-process.js';

// POST /webhooks/github on the local engine, as `serve` runs it: signed deliveries in, sessions
// of the real CLI (talking to the stand-in this file steers) out, read back through the API.

const SECRET = 'a webhook secret only these tests know';
const TRIGGERS = { repositories: { 'acme/widgets': 'widgets', 'Acme/Labels': 'labels', 'acme/refusals': 'refusals' } };

let anthropic: AnthropicStandIn;
let home: string;
let child: ChildProcess;
let url: string;
let issueNumber = 100;

beforeAll(async () => {
  anthropic = await new AnthropicStandIn().start();
  home = await mkdtemp(join(tmpdir(), 'claude-sessions-github-'));
  ({ child, url } = await startServe(cliEnvironment(home, {
    ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: anthropic.url, CLAUDE_SESSIONS_STANDBY: '0',
    CLAUDE_SESSIONS_GITHUB_WEBHOOK_SECRET: SECRET, CLAUDE_SESSIONS_GITHUB_TRIGGERS: JSON.stringify(TRIGGERS),
  })));
});

afterAll(async () => {
  await stopServe(child, home);
  await anthropic?.close();
});

/** A GitHub issue_comment (created) payload, with the fields GitHub sends that the webhook reads and some it does not. */
function commentEvent(options: { repo?: string; body?: string; association?: string; createdAt?: Date; pullRequest?: boolean } = {}) {
  const repo = options.repo ?? 'acme/widgets';
  const number = ++issueNumber;
  const issueUrl = `https://github.com/${repo}/${options.pullRequest ? 'pull' : 'issues'}/${number}`;
  return {
    action: 'created',
    issue: {
      number, title: `Widgets crash on empty input (${number})`, body: 'Steps: run `widgets ""`. It throws.', html_url: issueUrl,
      updated_at: new Date().toISOString(), state: 'open', user: { login: 'reporter', type: 'User' }, author_association: 'NONE',
      ...(options.pullRequest ? { pull_request: { url: `https://api.github.com/repos/${repo}/pulls/${number}` } } : {}),
    },
    comment: {
      id: 2_000_000 + number, html_url: `${issueUrl}#issuecomment-${2_000_000 + number}`, body: options.body ?? '/claude add a guard for the empty string',
      user: { login: 'maintainer', type: 'User' }, author_association: options.association ?? 'COLLABORATOR',
      created_at: (options.createdAt ?? new Date()).toISOString(), updated_at: new Date().toISOString(),
    },
    repository: { id: 42, full_name: repo, html_url: `https://github.com/${repo}`, private: false },
    sender: { login: 'maintainer', type: 'User' },
  };
}

function labelEvent(label: string, repo = 'Acme/Labels') {
  const number = ++issueNumber;
  return {
    action: 'labeled',
    issue: {
      number, title: `Document the gadgets flag (${number})`, body: 'The README says nothing of --gadgets.', html_url: `https://github.com/${repo}/issues/${number}`,
      updated_at: new Date().toISOString(), user: { login: 'outsider', type: 'User' }, author_association: 'NONE', labels: [{ name: label }],
    },
    label: { id: 7, name: label, color: 'ededed' },
    repository: { id: 43, full_name: repo, html_url: `https://github.com/${repo}`, private: false },
    sender: { login: 'triager', type: 'User' },
  };
}

const sign = (body: string, secret = SECRET) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** One delivery as GitHub sends it; `signature: null` sends none. */
async function deliver(event: string, payload: unknown, options: { signature?: string | null; delivery?: string; raw?: string } = {}) {
  const body = options.raw ?? JSON.stringify(payload);
  const signature = options.signature === undefined ? sign(body) : options.signature;
  const response = await fetch(`${url}/webhooks/github`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', 'user-agent': 'GitHub-Hookshot/test', 'x-github-event': event,
      'x-github-delivery': options.delivery ?? uuidv4(), ...(signature === null ? {} : { 'x-hub-signature-256': signature }),
    },
    body,
  });
  return { status: response.status, body: await response.json() as { started?: boolean; sessionId?: string; projectId?: string; milestoneId?: string; reason?: string; message?: string } };
}

async function projectSessions(projectId: string): Promise<SessionRecord[]> {
  const response = await fetch(`${url}/projects/${projectId}/sessions`);
  return ((await response.json()) as { items: SessionRecord[] }).items;
}

async function closedSession(projectId: string, sessionId: string): Promise<SessionRecord> {
  for (const end = Date.now() + 60_000; Date.now() < end; await new Promise((r) => setTimeout(r, 200))) {
    const response = await fetch(`${url}/projects/${projectId}/sessions/${sessionId}`);
    if (response.ok) {
      const session = (await response.json()) as SessionRecord;
      if (session.status !== 'RUNNING') return session;
    }
  }
  throw new Error(`session ${sessionId} did not close in 60 s`);
}

/**
 * The user's message of the session's first model call: its prompt as Claude got it. A milestone
 * task (an issue's) speaks in its milestone's conversation, so its calls carry the milestone's id.
 */
function promptSeen(session: SessionRecord): string {
  const first = anthropic.messageRequests.find((r) => r.sessionId === (session.claudeSessionId ?? session.sessionId));
  const messages = (first?.body.messages ?? []) as { role: string; content: unknown }[];
  return JSON.stringify(messages.find((m) => m.role === 'user')?.content ?? null);
}

describe('POST /webhooks/github: a signed delivery starts one session', () => {
  it('a /claude comment by a collaborator starts one session in the mapped project, with the comment and the issue as its prompt; a redelivery starts none', async () => {
    // Prepare
    const event = commentEvent();
    const delivery = uuidv4();

    // Act: the delivery, GitHub's redelivery of it (same id), and a replay under another delivery id
    const first = await deliver('issue_comment', event, { delivery });
    const session = await closedSession('widgets', first.body.sessionId!);
    const redelivery = await deliver('issue_comment', event, { delivery });
    const replay = await deliver('issue_comment', event);

    // Assess
    expect(first).toMatchObject({ status: 202, body: { started: true, projectId: 'widgets' } });
    expect(session).toMatchObject({ status: 'COMPLETED', projectId: 'widgets', trigger: 'github', taskId: `issue-${event.issue.number}` });
    expect(session).toMatchObject({ mode: 'milestone', milestoneId: first.body.milestoneId, claudeSessionId: first.body.milestoneId });
    expect(promptSeen(session)).toContain('add a guard for the empty string');
    expect(promptSeen(session)).toContain(`GitHub issue acme/widgets#${event.issue.number}: ${event.issue.title}`);
    expect(promptSeen(session)).not.toContain('/claude');
    for (const again of [redelivery, replay]) expect(again).toMatchObject({ status: 202, body: { started: false, sessionId: session.sessionId } });
    expect((await projectSessions('widgets')).filter((s) => s.taskId === `issue-${event.issue.number}`)).toHaveLength(1);
    expect(anthropic.messageRequests.filter((r) => r.sessionId === session.claudeSessionId).length).toBeGreaterThan(0);
  });

  it('a comment on a pull request starts its session as pr-<n>', async () => {
    const event = commentEvent({ pullRequest: true, body: '/claude\n\nexplain the diff' });
    const answer = await deliver('issue_comment', event);
    const session = await closedSession('widgets', answer.body.sessionId!);
    expect(session).toMatchObject({ status: 'COMPLETED', taskId: `pr-${event.issue.number}` });
    expect(promptSeen(session)).toContain(`GitHub pull request acme/widgets#${event.issue.number}`);
  });

  it('an issue labelled with the configured label starts one session; another label starts none', async () => {
    // Act
    const labelled = await deliver('issues', labelEvent('claude'));
    const other = await deliver('issues', labelEvent('bug'));
    const session = await closedSession('labels', labelled.body.sessionId!);
    // Assess
    expect(labelled).toMatchObject({ status: 202, body: { started: true, projectId: 'labels' } });
    expect(session, `${session.error}: ${session.cause}`).toMatchObject({ status: 'COMPLETED', trigger: 'github' });
    expect(promptSeen(session)).toContain('The README says nothing of --gadgets.');
    expect(other).toMatchObject({ status: 200, body: { started: false, reason: expect.stringMatching(/label "bug" is not "claude"/) } });
    expect(await projectSessions('labels')).toHaveLength(1);
  });
});

describe('POST /webhooks/github: what starts nothing', () => {
  it('answers 401 to an unsigned delivery and to one signed with another secret, and starts no session', async () => {
    // Prepare: a delivery that, signed, would start a session
    const event = commentEvent({ repo: 'acme/refusals', association: 'OWNER' });
    const body = JSON.stringify(event);
    // Act
    const unsigned = await deliver('issue_comment', event, { signature: null });
    const wrong = await deliver('issue_comment', event, { signature: sign(body, 'another secret') });
    const malformed = await deliver('issue_comment', event, { signature: 'sha256=zz' });
    const tampered = await deliver('issue_comment', event, { signature: sign(body), raw: body.replace('OWNER', 'MEMBER') });
    // Assess
    expect(unsigned).toMatchObject({ status: 401, body: { message: expect.stringMatching(/not signed/) } });
    for (const refused of [wrong, malformed, tampered]) expect(refused).toMatchObject({ status: 401, body: { message: expect.stringMatching(/does not match/) } });
    expect(await projectSessions('refusals')).toEqual([]);
  });

  it('answers 2xx with the reason, and starts nothing, for an untrusted commenter, an unmapped repository, a comment that is no command, a stale comment, an edit, a ping', async () => {
    // Act
    const answers = {
      untrusted: await deliver('issue_comment', commentEvent({ repo: 'acme/refusals', association: 'CONTRIBUTOR' })),
      unmapped: await deliver('issue_comment', commentEvent({ repo: 'evil/refusals' })),
      noCommand: await deliver('issue_comment', commentEvent({ repo: 'acme/refusals', body: 'Thanks! /claude could look at this' })),
      longerWord: await deliver('issue_comment', commentEvent({ repo: 'acme/refusals', body: '/claudex do it' })),
      stale: await deliver('issue_comment', commentEvent({ repo: 'acme/refusals', createdAt: new Date(Date.now() - 61 * 60_000) })),
      edited: await deliver('issue_comment', { ...commentEvent({ repo: 'acme/refusals' }), action: 'edited' }),
      push: await deliver('push', { ref: 'refs/heads/main', repository: { full_name: 'acme/refusals' } }),
      ping: await deliver('ping', { zen: 'Keep it logically awesome.', hook_id: 1 }),
    };
    // Assess
    const reasons = Object.fromEntries(Object.entries(answers).map(([name, a]) => [name, `${a.status} ${a.body.started} ${a.body.reason}`]));
    expect(reasons).toEqual({
      untrusted: expect.stringMatching(/^200 false @maintainer \(CONTRIBUTOR\) is not trusted/),
      unmapped: expect.stringMatching(/^200 false repository evil\/refusals is not mapped to a project/),
      noCommand: expect.stringMatching(/^200 false the comment does not start with \/claude/),
      longerWord: expect.stringMatching(/^200 false the comment does not start with \/claude/),
      stale: expect.stringMatching(/^200 false the event .* is older than 60 minutes/),
      edited: expect.stringMatching(/^200 false issue_comment edited starts nothing/),
      push: expect.stringMatching(/^200 false event "push" starts nothing/),
      ping: expect.stringMatching(/^200 false pong/),
    });
    expect(await projectSessions('refusals')).toEqual([]);
  });

  it('answers 400 to a signed body that is not the event it says, naming the field', async () => {
    const answer = await deliver('issue_comment', { action: 'created', repository: { full_name: 'acme/refusals' } });
    expect(answer.status).toBe(400);
    expect(JSON.stringify(answer.body)).toMatch(/"field":"issue"/);
  });
});

describe('the githubTriggers setting', () => {
  it('fills in the defaults, keys repositories without case, and names a bad field', () => {
    expect(parseGitHubTriggers('{"repositories":{"Acme/Widgets":"widgets"}}', 'githubTriggers')).toEqual({
      repositories: { 'acme/widgets': 'widgets' }, command: '/claude', label: 'claude', trustedAssociations: ['OWNER', 'MEMBER', 'COLLABORATOR'], maxEventAgeMinutes: 60,
    });
    expect(() => parseGitHubTriggers({ repositories: { 'acme/widgets': 'bad project!' } }, 'githubTriggers')).toThrow(/githubTriggers: repositories\.acme\/widgets must be 1-64 characters/);
    expect(() => parseGitHubTriggers({ repositories: { widgets: 'w' } }, 'githubTriggers')).toThrow(/repositories\.widgets is not owner\/repo/);
    expect(() => parseGitHubTriggers({ repositories: { 'a/b': 'b' }, trustedAssociations: ['ADMIN'] }, 'githubTriggers')).toThrow(/trustedAssociations\.0 must be of OWNER/);
    expect(() => parseGitHubTriggers({ repositories: {} }, 'githubTriggers')).toThrow(/must map at least one owner\/repo/);
    expect(() => parseGitHubTriggers('{', 'CLAUDE_SESSIONS_GITHUB_TRIGGERS')).toThrow(/CLAUDE_SESSIONS_GITHUB_TRIGGERS must be a JSON object/);
  });
});
