import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WebhookDefinition } from '@octokit/webhooks-examples';
import { v4 as uuidv4 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueBranch } from '../lib/api/github-webhook.js';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import type { MilestoneView } from '../lib/sessions/milestone-repository.js';
import type { SessionRecord } from '../lib/sessions/session-item.js';
import { cliEnvironment, startServe, stopServe } from './support/cli-process.js';
import { GitHubStandIn } from './support/github-stand-in.js';
import { HttpsGitRemote } from './support/https-git-remote.js';
import { waitFor } from './support/wait-for.js';

// Issue 26 item 7: GitHub's own webhook payloads, as @octokit/webhooks-examples records them from
// GitHub (read from the package, never copied here), signed and delivered to POST /webhooks/github
// of `serve` as GitHub delivers them. Each is changed only where a test must: which repository it
// names, what its comment says, when it happened. The rest (hundreds of fields the webhook never
// reads, nulls where our own tests put strings) is GitHub's.

// GitHub's documented test vector ("Validating webhook deliveries"): this secret, this payload, this signature.
const GITHUB_DOC_SECRET = 'It\'s a Secret to Everybody';
const GITHUB_DOC_PAYLOAD = 'Hello, World!';
const GITHUB_DOC_SIGNATURE = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';

type Payload = Record<string, any>;

const require = createRequire(import.meta.url);
/** The package's payloads: github.com's, then each GitHub Enterprise Server release's. */
const EXAMPLE_SETS: Record<string, WebhookDefinition[]> = Object.fromEntries(['api.github.com', 'ghes-31', 'ghes-32', 'ghes-33', 'ghes-34', 'ghes-35']
  .map((set) => [set, require(`@octokit/webhooks-examples/${set}/index.json`) as WebhookDefinition[]]));

/** A fresh copy of github.com's first example of `event` whose action (and, when given, shape) matches. */
function example(event: string, action: string | undefined, matches: (p: Payload) => boolean = () => true): Payload {
  const found = (EXAMPLE_SETS['api.github.com']!.find((d) => d.name === event)?.examples as Payload[] | undefined)
    ?.find((p) => p.action === action && matches(p));
  if (!found) throw new Error(`@octokit/webhooks-examples has no ${event} ${action ?? ''} example`);
  return structuredClone(found);
}

const LABEL = example('issues', 'labeled').label.name as string;

let anthropic: AnthropicStandIn;
let github: GitHubStandIn;
let remote: HttpsGitRemote;
let home: string;
let child: ChildProcess;
let url: string;
const repoUrl = (name: string) => `https://127.0.0.1:${remote.port}/acme/${name}`; // a repository's html_url: no .git

beforeAll(async () => {
  anthropic = await new AnthropicStandIn().start();
  github = await new GitHubStandIn().start();
  remote = await new HttpsGitRemote().start();
  remote.repository('acme', 'widgets');
  remote.repository('acme', 'gadgets');
  home = await mkdtemp(join(tmpdir(), 'claude-sessions-github-payloads-'));
  ({ child, url } = await startServe(cliEnvironment(home, {
    ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: anthropic.url, CLAUDE_SESSIONS_STANDBY: '0',
    // GitHub's documented secret: the test vector and the payloads go through the one route.
    CLAUDE_SESSIONS_GITHUB_WEBHOOK_SECRET: GITHUB_DOC_SECRET,
    // The recorded label is the configured one, so the labelling payload needs no change there.
    CLAUDE_SESSIONS_GITHUB_TRIGGERS: JSON.stringify({ repositories: { 'acme/widgets': 'widgets', 'acme/gadgets': 'gadgets' }, label: LABEL }),
    CLAUDE_SESSIONS_GIT_TOKEN: 'ghs_payload_tests', CLAUDE_SESSIONS_GIT_TOKEN_SCOPES: `https://127.0.0.1:${remote.port}/acme/`,
    CLAUDE_SESSIONS_GITHUB_API_URL: github.url, GIT_SSL_CAINFO: remote.caFile,
  })));
});

afterAll(async () => {
  await stopServe(child, home);
  await Promise.all([anthropic?.close(), github?.close(), remote?.close()]);
});

interface Answer { status: number; body: { started?: boolean; sessionId?: string; milestoneId?: string; reason?: string; closed?: string; message?: string } }

/** One delivery of `body` as GitHub sends it, signed with `signature` (by default GitHub's, with the documented secret). */
async function deliverRaw(event: string, body: string, signature = `sha256=${createHmac('sha256', GITHUB_DOC_SECRET).update(body).digest('hex')}`): Promise<Answer> {
  const response = await fetch(`${url}/webhooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'GitHub-Hookshot/044aadd', 'x-github-event': event, 'x-github-delivery': uuidv4(), 'x-hub-signature-256': signature },
    body,
  });
  return { status: response.status, body: await response.json() as Answer['body'] };
}

const deliver = (event: string, payload: Payload) => deliverRaw(event, JSON.stringify(payload));

/**
 * The recorded payload moved to a mapped repository (the webhook starts nothing for
 * Codertocat/Hello-World, rightly): wherever it names the recorded one, in its full_name, its head's
 * and its URLs, it names acme/<name> served by the test's git remote. The comment's URL moves with
 * it, and that matters: it is the event's identity, its session's id.
 */
function inRepository(payload: Payload, name: string): Payload {
  const moved = JSON.stringify(payload)
    .replaceAll('https://github.com/Codertocat/Hello-World', repoUrl(name))
    .replaceAll('Codertocat/Hello-World', `acme/${name}`);
  return JSON.parse(moved) as Payload;
}

const closed = (projectId: string, sessionId: string) => waitFor(async () => {
  const response = await fetch(`${url}/projects/${projectId}/sessions/${sessionId}`);
  const session = response.ok ? (await response.json()) as SessionRecord : undefined;
  return session && session.status !== 'RUNNING' ? session : undefined;
}, `session ${sessionId} to close`, 90_000);

/** The pull request the reporter opened from `branch` of acme/<name>, once it has. */
const pullRequestOf = (name: string, branch: string) => waitFor(async () => (github.pulls.get(`acme/${name}`) ?? []).find((p) => p.head === branch), `the pull request of ${branch}`, 60_000);

/** Once the reporter has recorded `number` on the milestone (it does so after opening it): only then is it the milestone's pull request. */
const recorded = (name: string, milestoneId: string, number: number) => waitFor(async () => {
  const response = await fetch(`${url}/projects/${name}/milestones/${milestoneId}`);
  return response.ok && ((await response.json()) as MilestoneView).pullRequest?.number === number ? true : undefined;
}, `the milestone to record pull request #${number}`, 60_000);

async function milestoneOf(projectId: string, milestoneId: string): Promise<MilestoneView> {
  const response = await fetch(`${url}/projects/${projectId}/milestones/${milestoneId}`);
  expect(response.status).toBe(200);
  return (await response.json()) as MilestoneView;
}

describe('X-Hub-Signature-256 against GitHub\'s documented test vector', () => {
  it('accepts GitHub\'s signature of "Hello, World!" with "It\'s a Secret to Everybody", and refuses it one digit off', async () => {
    // Act: the vector's payload as a ping (a ping's body is not read past the signature)
    const accepted = await deliverRaw('ping', GITHUB_DOC_PAYLOAD, GITHUB_DOC_SIGNATURE);
    const offByOne = await deliverRaw('ping', GITHUB_DOC_PAYLOAD, GITHUB_DOC_SIGNATURE.replace(/7$/, '8'));
    const asComment = await deliverRaw('issue_comment', GITHUB_DOC_PAYLOAD, GITHUB_DOC_SIGNATURE);
    // Assess: signed rightly, then judged on what it is
    expect(accepted).toMatchObject({ status: 200, body: { started: false, reason: expect.stringMatching(/^pong/) } });
    expect(offByOne).toMatchObject({ status: 401, body: { message: expect.stringMatching(/does not match/) } });
    expect(asComment).toMatchObject({ status: 400, body: { message: expect.stringMatching(/not JSON/) } });
  });
});

describe('GitHub\'s recorded payloads, unchanged, are read by the webhook', () => {
  it('every recorded issue_comment, issues, pull_request and ping payload (github.com and GitHub Enterprise Server 3.1-3.5) is answered 200 as it stands: none is refused as malformed', async () => {
    // Act: each as GitHub sent it; its repository is not mapped, so each is read and then declined
    const answers: string[] = [];
    for (const [set, definitions] of Object.entries(EXAMPLE_SETS)) {
      for (const definition of definitions.filter((d) => ['issue_comment', 'issues', 'pull_request', 'ping'].includes(d.name))) {
        for (const [index, payload] of (definition.examples as Payload[]).entries()) {
          const answer = await deliver(definition.name, payload);
          answers.push(`${set} ${definition.name} ${payload.action ?? ''} #${index}: ${answer.status} ${answer.body.reason ?? JSON.stringify(answer.body)}`);
        }
      }
    }
    // Assess
    expect(answers.length).toBeGreaterThan(100);
    expect(answers.filter((a) => !/: 200 /.test(a))).toEqual([]);
    expect(answers.filter((a) => / (issue_comment created|issues labeled|pull_request closed) /.test(a)).filter((a) => !/is not mapped to a project/.test(a))).toEqual([]);
  }, 120_000);
});

describe('GitHub\'s recorded payloads start, continue and close sessions', () => {
  it('an issue comment starts the issue\'s session, which pushes its branch and opens a pull request; closing that pull request (not merged) closes its conversation', async () => {
    // Prepare: GitHub's issue_comment created, on issue #1
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'SPELLING.md', content: 'commit, not committ\n' } },
      { kind: 'text', text: 'Fixed the spelling.' },
    );
    const comment = inRepository(example('issue_comment', 'created', (p) => p.issue.pull_request === undefined), 'widgets');
    comment.comment.body = '/claude fix the spelling'; // the command: the recorded comment is prose
    comment.comment.created_at = new Date().toISOString(); // a comment of 2019 is stale, and refused as a replay
    const issue = comment.issue.number as number;

    // Act
    const started = await deliver('issue_comment', comment);
    const session = await closed('widgets', started.body.sessionId!);
    const pull = await pullRequestOf('widgets', issueBranch(issue));
    await recorded('widgets', started.body.milestoneId!, pull.number);
    // GitHub's pull_request closed (not merged), of that pull request
    const close = inRepository(example('pull_request', 'closed', (p) => p.pull_request.merged === false), 'widgets');
    close.pull_request.number = pull.number; // the pull request the reporter opened and recorded on the milestone
    close.pull_request.body = pull.body; // the body the reporter wrote: its marker says the product opened it
    close.pull_request.head.ref = pull.head; // the branch the reporter opened it from
    close.pull_request.closed_at = new Date().toISOString(); // a closing of 2019 is stale
    const closing = await deliver('pull_request', close);

    // Assess
    expect(started).toMatchObject({ status: 202, body: { started: true, milestoneId: expect.any(String) } });
    expect(session, `${session.error}: ${session.cause}`).toMatchObject({
      status: 'COMPLETED', trigger: 'github', taskId: `issue-${issue}`, milestoneId: started.body.milestoneId, workspace: { branch: issueBranch(issue), filesChanged: 1 },
    });
    expect(pull.body).toContain(`Resolves #${issue}.`);
    expect(closing).toMatchObject({ status: 200, body: { closed: started.body.milestoneId, reason: expect.stringMatching(/ closed: milestone .* closed$/) } });
    expect(await milestoneOf('widgets', started.body.milestoneId!)).toMatchObject({ status: 'CLOSED' });
  }, 180_000);

  it('an issue labelled with the label starts the issue\'s session; a comment on its pull request continues the conversation; merging the pull request closes it', async () => {
    // Prepare: GitHub's issues labeled, on issue #1 of another mapped repository
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'LABEL.md', content: 'labelled\n' } },
      { kind: 'text', text: 'Wrote LABEL.md.' },
    );
    const labelled = inRepository(example('issues', 'labeled'), 'gadgets');
    labelled.issue.updated_at = new Date().toISOString(); // the labelling's time: one of 2019 is stale
    const issue = labelled.issue.number as number;

    // Act: the labelling, then a comment on the pull request it led to, then its merge
    const started = await deliver('issues', labelled);
    const first = await closed('gadgets', started.body.sessionId!);
    const pull = await pullRequestOf('gadgets', issueBranch(issue));
    await recorded('gadgets', started.body.milestoneId!, pull.number);
    anthropic.respondWith({ kind: 'text', text: 'Looked again: nothing more to change.' });
    // GitHub has no recorded issue_comment on a pull request: its recorded comment, on an issue that
    // is a pull request (the issue object GitHub sends for one, recorded with issues milestoned).
    const pullComment = inRepository(example('issue_comment', 'created'), 'gadgets');
    pullComment.issue = inRepository(example('issues', 'milestoned', (p) => p.issue.pull_request !== undefined), 'gadgets').issue;
    pullComment.issue.number = pull.number; // the pull request the reporter opened ...
    pullComment.issue.body = pull.body; // ... whose body carries the issue's marker
    pullComment.comment.body = '/claude look again'; // the command
    pullComment.comment.created_at = new Date().toISOString(); // not stale
    const continued = await deliver('issue_comment', pullComment);
    const second = await closed('gadgets', continued.body.sessionId!);
    const merge = inRepository(example('pull_request', 'closed'), 'gadgets');
    merge.pull_request.number = pull.number; // the pull request the reporter recorded
    merge.pull_request.body = pull.body; // the marker
    merge.pull_request.head.ref = pull.head; // the issue's branch
    merge.pull_request.closed_at = new Date().toISOString(); // not stale
    // GitHub recorded no merged closing: a merge is the same closed event, merged, with its time
    merge.pull_request.merged = true;
    merge.pull_request.merged_at = merge.pull_request.closed_at;
    const merging = await deliver('pull_request', merge);

    // Assess
    expect(started).toMatchObject({ status: 202, body: { started: true, projectId: 'gadgets' } });
    expect(first, `${first.error}: ${first.cause}`).toMatchObject({ status: 'COMPLETED', taskId: `issue-${issue}`, workspace: { branch: issueBranch(issue) } });
    expect(continued).toMatchObject({ status: 202, body: { started: true, milestoneId: started.body.milestoneId } });
    expect(second, `${second.error}: ${second.cause}`).toMatchObject({ status: 'COMPLETED', taskId: `pr-${pull.number}`, milestoneId: started.body.milestoneId });
    expect(merging).toMatchObject({ status: 200, body: { closed: started.body.milestoneId, reason: expect.stringMatching(/ merged: milestone .* closed$/) } });
    const view = await milestoneOf('gadgets', started.body.milestoneId!);
    expect(view).toMatchObject({ status: 'CLOSED' });
    expect(view.tasks.map((t) => t.sessionId)).toEqual([first.sessionId, second.sessionId]);
  }, 240_000);
});
