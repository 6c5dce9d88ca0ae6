import { createHmac, timingSafeEqual } from 'node:crypto';
import { v5 as uuidv5 } from 'uuid';
import { z } from 'zod';
import { tokenScopeOf } from '../claude/repository-scopes.js';
import { markedIssue } from '../github/pull-request-marker.js';
import { idField } from '../sessions/execution-input.js';
import type { MilestoneRecord } from '../sessions/milestone-item.js';
import { MilestoneUnavailableError } from '../sessions/milestone-repository.js';
import { startSession } from './start-session.js';
import { MAX_PROMPT_CHARS } from '../sessions/session-limits.js';
import { HttpError } from './http-errors.js';
import { sessionPath } from './api-operations.js';
import type { SessionStarter } from './session-starter.js';

// POST /webhooks/github (docs/GITHUB.md): a signed issue comment or issue label starts one
// session. Everything here runs before any execution: what it refuses costs nothing.

/** GitHub's author_association values (REST API, "author_association"). */
export const GITHUB_ASSOCIATIONS = [
  'OWNER', 'MEMBER', 'COLLABORATOR', 'CONTRIBUTOR', 'FIRST_TIME_CONTRIBUTOR', 'FIRST_TIMER', 'MANNEQUIN', 'NONE',
] as const;
export type GitHubAssociation = (typeof GITHUB_ASSOCIATIONS)[number];

/** What starts a session from GitHub, and for which project (the setting `githubTriggers`). */
export interface GitHubTriggers {
  /** `owner/repo` (compared without case, as GitHub does) to the project its sessions run in. */
  readonly repositories: Readonly<Record<string, string>>;
  /** A comment whose first word is this starts a session; the rest of it is the instruction. */
  readonly command: string;
  /** An issue given this label starts a session on that issue. */
  readonly label: string;
  /** Whose comments may start one (the comment's author_association). */
  readonly trustedAssociations: readonly GitHubAssociation[];
  /** A delivery whose event (the comment's creation, the labelling) is older than this starts nothing. */
  readonly maxEventAgeMinutes: number;
}

const TriggersSchema = z.strictObject({
  repositories: z.record(z.string(), idField).superRefine((repositories, ctx) => {
    if (!Object.keys(repositories).length) ctx.addIssue({ code: 'custom', message: 'must map at least one owner/repo to a project' });
    for (const key of Object.keys(repositories).filter((k) => !/^[A-Za-z0-9][A-Za-z0-9-]*\/[A-Za-z0-9._-]+$/.test(k))) {
      ctx.addIssue({ code: 'custom', path: [key], message: 'is not owner/repo' });
    }
  }),
  command: z.string().regex(/^\S{1,32}$/, 'must be one word such as /claude').default('/claude'),
  label: z.string().min(1).max(50, 'must be at most 50 characters').default('claude'),
  trustedAssociations: z.array(z.enum(GITHUB_ASSOCIATIONS, { error: `must be of ${GITHUB_ASSOCIATIONS.join(', ')}` }))
    .min(1).default(['OWNER', 'MEMBER', 'COLLABORATOR']),
  maxEventAgeMinutes: z.int('must be a whole number of minutes').min(1).max(7 * 24 * 60).default(60),
}, { error: 'must be an object of repositories, command, label, trustedAssociations, maxEventAgeMinutes' });

/**
 * The triggers from a setting: an object or its JSON text (`-c githubTriggers=…`, an environment
 * variable). A bad one fails naming the setting and the field.
 */
export function parseGitHubTriggers(value: unknown, setting: string): GitHubTriggers | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let raw: unknown = value;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      throw new Error(`${setting} must be a JSON object such as {"repositories": {"acme/widgets": "widgets"}}, not ${JSON.stringify(value)}`);
    }
  }
  const parsed = TriggersSchema.safeParse(raw);
  if (!parsed.success) {
    throw new Error(`${setting}: ${parsed.error.issues.map((i) => (i.code === 'unrecognized_keys'
      ? `${i.keys.join(', ')} is not a setting`
      : `${i.path.length ? `${i.path.join('.')} ` : ''}${i.message}`)).join('; ')}`);
  }
  const repositories = Object.fromEntries(Object.entries(parsed.data.repositories).map(([repo, project]) => [repo.toLowerCase(), project]));
  return { ...parsed.data, repositories };
}

/** Why a signed delivery started nothing, or that it started (or had started) its session, or closed its milestone. */
export type WebhookAnswer =
  | { statusCode: 200; body: { started: false; reason: string; closed?: string } }
  | { statusCode: 202; body: { started: boolean; sessionId: string; projectId: string; milestoneId?: string; links: { self: string } } };

/** What the webhook does with milestones (MilestoneRepository): an issue's is opened, a pull request's closing closes it. */
export interface GitHubMilestones {
  open(projectId: string, now: Date, milestoneId: string): Promise<MilestoneRecord>;
  get(milestoneId: string): Promise<MilestoneRecord | undefined>;
  close(milestoneId: string, projectId: string, now?: Date): Promise<MilestoneRecord>;
}

export interface GitHubWebhookDeps {
  /** The webhook's secret (Secrets Manager on AWS), read when a delivery arrives. */
  secret: () => Promise<string>;
  triggers: GitHubTriggers;
  starter: SessionStarter;
  milestones: GitHubMilestones;
  /** Tags a closed milestone's transcript for expiry; absent where there is no bucket. */
  transcripts?: { markClosed(key: string): Promise<void> };
  /** The deployment's git token scopes: a repository under one becomes the session's workspace. */
  gitTokenScopes?: readonly string[];
  now?: () => Date;
}

// Fixed namespace of the session ids of GitHub events (uuid v5 of the event's signed identity).
const GITHUB_EVENT_NAMESPACE = '3b4f3a2e-7c1d-5e8a-9f60-2d8c1b7e4a95';
// Fixed namespace of the milestone ids of GitHub issues (uuid v5 of `owner/repo#<n>`).
const GITHUB_ISSUE_NAMESPACE = '8e0c6d1a-52b4-5f3e-a7c9-4b1d2e6f9a30';

/**
 * The milestone (one Claude conversation, one branch) of an issue and of the pull request opened
 * from it: the same id for every comment, computed without a read, so two deliveries agree.
 */
export function milestoneIdOfIssue(repositoryFullName: string, issue: number): string {
  return uuidv5(`${repositoryFullName.toLowerCase()}#${issue}`, GITHUB_ISSUE_NAMESPACE);
}

/** The branch an issue's milestone works on. The one place the webhook names it. */
export function issueBranch(issue: number): string {
  return `claude-sessions/issue-${issue}`;
}

const Repository = z.object({ full_name: z.string(), html_url: z.string() });
const Issue = z.object({
  number: z.int(), title: z.string(), body: z.string().nullish(), html_url: z.string(), updated_at: z.string(),
  state: z.string().optional(), pull_request: z.unknown().optional(),
});
const IssueCommentEvent = z.object({
  action: z.string(), repository: Repository, issue: Issue,
  comment: z.object({ html_url: z.string(), body: z.string().nullish(), author_association: z.string(), created_at: z.string(), user: z.object({ login: z.string() }) }),
});
const IssuesEvent = z.object({ action: z.string(), repository: Repository, issue: Issue, label: z.object({ name: z.string() }).optional() });
const PullRequestEvent = z.object({
  action: z.string(), repository: Repository,
  pull_request: z.object({
    number: z.int(), body: z.string().nullish(), html_url: z.string(), closed_at: z.string().nullish(), merged: z.boolean().nullish(),
    head: z.object({ ref: z.string(), repo: z.object({ full_name: z.string() }).nullish() }),
  }),
});

/**
 * One GitHub delivery, checked and turned into at most one session. The session id is a v5
 * UUID of the event's own identity in the signed payload (the comment's URL; the issue, label
 * and time of a labelling), so a redelivery, and a replay under any X-GitHub-Delivery header
 * (which the signature does not cover), starts nothing new: the starter answers `started: false`.
 */
export class GitHubWebhook {
  constructor(private readonly deps: GitHubWebhookDeps) {}

  async receive(headers: Record<string, string | undefined>, body: string | null): Promise<WebhookAnswer> {
    await this.verify(headers['x-hub-signature-256'], body ?? '');
    const event = headers['x-github-event'];
    if (event === 'ping') return skip('pong: the webhook is signed with this deployment\'s secret');
    let payload: unknown;
    try {
      payload = JSON.parse(body ?? '');
    } catch {
      throw new HttpError(400, 'the payload is not JSON (set the webhook\'s content type to application/json)');
    }
    if (event === 'issue_comment') return this.onComment(parse(IssueCommentEvent, payload));
    if (event === 'issues') return this.onIssue(parse(IssuesEvent, payload));
    if (event === 'pull_request') return this.onPullRequest(parse(PullRequestEvent, payload));
    return skip(`event ${JSON.stringify(event ?? null)} starts nothing: only issue_comment and issues start sessions, and pull_request closes them`);
  }

  /** HMAC-SHA256 of the raw body with the secret, compared in constant time; 401 before anything else is read. */
  private async verify(signature: string | undefined, body: string): Promise<void> {
    if (!signature) throw new HttpError(401, 'the delivery is not signed (X-Hub-Signature-256): give the webhook this deployment\'s secret');
    const given = /^sha256=([0-9a-f]{64})$/.exec(signature)?.[1];
    const expected = createHmac('sha256', await this.deps.secret()).update(body, 'utf8').digest();
    if (!given || !timingSafeEqual(Buffer.from(given, 'hex'), expected)) throw new HttpError(401, 'the signature (X-Hub-Signature-256) does not match this deployment\'s secret');
  }

  private async onComment(event: z.output<typeof IssueCommentEvent>): Promise<WebhookAnswer> {
    if (event.action !== 'created') return skip(`issue_comment ${event.action} starts nothing: only a new comment does`);
    const projectId = this.projectOf(event.repository.full_name);
    if (!projectId) return skip(`repository ${event.repository.full_name} is not mapped to a project`);
    const instruction = commandArgument(event.comment.body ?? '', this.deps.triggers.command);
    if (instruction === undefined) return skip(`the comment does not start with ${this.deps.triggers.command}`);
    const association = event.comment.author_association;
    if (!(this.deps.triggers.trustedAssociations as readonly string[]).includes(association)) {
      return skip(`@${event.comment.user.login} (${association}) is not trusted to start sessions on ${event.repository.full_name}`);
    }
    const stale = this.staleness(event.comment.created_at);
    if (stale) return skip(stale);
    const isPull = event.issue.pull_request !== undefined;
    // A pull request is its issue's milestone only when that milestone records it; any other is an ordinary pull request.
    const milestoneId = isPull
      ? (await this.pullRequestMilestone(event.repository.full_name, event.issue.number, event.issue.body))?.milestoneId
      : milestoneIdOfIssue(event.repository.full_name, event.issue.number);
    // Once closed, a milestone's pull request takes no more tasks (any other pull request's comments still start one).
    if (isPull && event.issue.state === 'closed' && milestoneId) {
      return skip(`pull request ${event.repository.full_name}#${event.issue.number} is closed: its conversation takes no more tasks`);
    }
    return this.start({
      projectId, repository: event.repository, issue: event.issue, eventKey: `comment ${event.comment.html_url}`,
      instruction: instruction || 'Work on this.', milestoneId,
    });
  }

  private async onIssue(event: z.output<typeof IssuesEvent>): Promise<WebhookAnswer> {
    if (event.action !== 'labeled') return skip(`issues ${event.action} starts nothing: only labelling an issue does`);
    const projectId = this.projectOf(event.repository.full_name);
    if (!projectId) return skip(`repository ${event.repository.full_name} is not mapped to a project`);
    if (event.label?.name !== this.deps.triggers.label) return skip(`label ${JSON.stringify(event.label?.name ?? null)} is not ${JSON.stringify(this.deps.triggers.label)}`);
    // Only people with triage access or more can label: the label is the trusted act; the issue's text may be anyone's.
    const stale = this.staleness(event.issue.updated_at);
    if (stale) return skip(stale);
    return this.start({
      projectId, repository: event.repository, issue: event.issue,
      eventKey: `label ${event.issue.html_url} ${event.label.name} ${event.issue.updated_at}`, instruction: 'Resolve this issue.',
      milestoneId: milestoneIdOfIssue(event.repository.full_name, event.issue.number),
    });
  }

  /**
   * A milestone's pull request, closed or merged: its milestone is closed, so its conversation takes
   * no more tasks. Only the pull request the milestone records, of this repository, whose head is the
   * milestone's branch closes it: another pull request's copy of the marker (a fork's, anyone's) does not.
   */
  private async onPullRequest(event: z.output<typeof PullRequestEvent>): Promise<WebhookAnswer> {
    const pull = event.pull_request;
    const name = `${event.repository.full_name}#${pull.number}`;
    if (event.action !== 'closed') return skip(`pull_request ${event.action} does nothing: only closing a pull request closes its conversation`);
    const projectId = this.projectOf(event.repository.full_name);
    if (!projectId) return skip(`repository ${event.repository.full_name} is not mapped to a project`);
    const issue = markedIssue(pull.body);
    if (issue === undefined) return skip(`pull request ${name} was not opened by claude-sessions: it has no conversation to close`);
    if (pull.head.repo?.full_name.toLowerCase() !== event.repository.full_name.toLowerCase()) {
      return skip(`pull request ${name} comes from another repository (${pull.head.repo?.full_name ?? 'deleted'}): it has no conversation here`);
    }
    const stale = this.staleness(pull.closed_at ?? '');
    if (stale) return skip(stale);
    const milestone = await this.pullRequestMilestone(event.repository.full_name, pull.number, pull.body);
    if (!milestone) return skip(`pull request ${name} is not the pull request of issue #${issue}'s conversation (its marker is a copy): nothing to close`);
    const { milestoneId } = milestone;
    if (milestone.projectId !== projectId || milestone.workspace?.branch !== pull.head.ref) {
      return skip(`pull request ${name} is not the branch of issue #${issue}'s conversation: nothing to close`);
    }
    let closed: MilestoneRecord;
    try {
      closed = await this.deps.milestones.close(milestoneId, projectId, this.deps.now?.());
    } catch (err) {
      // GitHub does not retry: a failed delivery is shown as such, to be redelivered once the task has reported.
      if (err instanceof MilestoneUnavailableError && err.reason === 'busy') throw new HttpError(409, `${err.message}; redeliver this event then`);
      throw err;
    }
    if (closed.transcript) await this.deps.transcripts?.markClosed(closed.transcript.key);
    return { statusCode: 200, body: { started: false, closed: milestoneId, reason: `pull request ${name} ${pull.merged ? 'merged' : 'closed'}: milestone ${milestoneId} closed` } };
  }

  /**
   * The milestone a pull request continues: the issue its body marks, only when that issue's milestone
   * records this very pull request (the reporter writes the number of the one it opened from the
   * milestone's branch). The marker alone is text: anyone who may open a pull request, or edit one's
   * body, can copy it, and a trusted comment there must not resume that issue's conversation or push its branch.
   */
  private async pullRequestMilestone(fullName: string, pull: number, body: string | null | undefined): Promise<MilestoneRecord | undefined> {
    const issue = markedIssue(body);
    if (issue === undefined) return undefined;
    const milestone = await this.deps.milestones.get(milestoneIdOfIssue(fullName, issue));
    return milestone?.pullRequest?.number === pull ? milestone : undefined;
  }

  private projectOf(fullName: string): string | undefined {
    return Object.hasOwn(this.deps.triggers.repositories, fullName.toLowerCase()) ? this.deps.triggers.repositories[fullName.toLowerCase()] : undefined;
  }

  /** GitHub sends no timestamp header: the event's own time, inside the signed payload, is the one there is. */
  private staleness(at: string): string | undefined {
    const ageMs = (this.deps.now?.() ?? new Date()).getTime() - Date.parse(at);
    const limit = this.deps.triggers.maxEventAgeMinutes;
    if (Number.isNaN(ageMs) || ageMs > limit * 60_000) return `the event (${at}) is older than ${limit} minutes: a late redelivery or a replay starts nothing`;
    return undefined;
  }

  /**
   * The session of an event. An issue's is a task of the issue's milestone (opened here if new), on
   * the issue's branch; a comment on the pull request that milestone records is a task of the same
   * milestone, so it resumes that conversation on that branch, one task at a time (the workflow's
   * lease: a task started while another runs ends FAILED MilestoneUnavailable, reported as busy).
   * A comment on any other pull request (`milestoneId` undefined) starts a fresh session, as before.
   */
  private async start(trigger: {
    projectId: string; repository: z.output<typeof Repository>; issue: z.output<typeof Issue>; eventKey: string; instruction: string;
    /** The issue's milestone, or the milestone that records this pull request; none for any other pull request. */
    milestoneId: string | undefined;
  }): Promise<WebhookAnswer> {
    const { projectId, repository, issue, milestoneId } = trigger;
    const kind = issue.pull_request === undefined ? 'issue' : 'pull request';
    // The repository is the workspace only where the deployment's git token may go: never an anonymous push.
    const scoped = Boolean(tokenScopeOf(repository.html_url, this.deps.gitTokenScopes));
    if (kind === 'issue' && milestoneId) await this.openMilestone(projectId, milestoneId);
    // An issue's sessions share its branch (the milestone keeps it; a later one continues it and its
    // pull request); a comment on that pull request continues the milestone's own; any other pull
    // request's session starts from the repository's default branch.
    const workspace = !scoped || (kind !== 'issue' && milestoneId) ? undefined
      : { repo: repository.html_url, ...(kind === 'issue' ? { branch: issueBranch(issue.number) } : {}) };
    // Started as any session is, checked by the same schema: GitHub's text is untrusted input like an API body.
    const started = await startSession({
      prompt: promptOf(trigger.instruction, `GitHub ${kind} ${repository.full_name}#${issue.number}: ${issue.title}\n${issue.html_url}`, issue.body ?? ''),
      taskId: `${kind === 'issue' ? 'issue' : 'pr'}-${issue.number}`,
      sessionId: uuidv5(trigger.eventKey, GITHUB_EVENT_NAMESPACE),
      ...(milestoneId ? { mode: 'milestone', milestoneId } : {}),
      ...(workspace ? { workspace } : {}),
    }, { trigger: 'github', project: projectId, starter: this.deps.starter });
    return {
      statusCode: 202,
      body: { started: started.started, sessionId: started.sessionId, projectId, ...(milestoneId ? { milestoneId } : {}), links: { self: sessionPath(projectId, started.sessionId) } },
    };
  }

  /** The issue's milestone, opened by its first event; one that exists already (any state) is left as it is. */
  private async openMilestone(projectId: string, milestoneId: string): Promise<void> {
    try {
      await this.deps.milestones.open(projectId, this.deps.now?.() ?? new Date(), milestoneId);
    } catch (err) {
      if ((err as Error).name !== 'ConditionalCheckFailedException') throw err;
    }
  }
}

function skip(reason: string): WebhookAnswer {
  return { statusCode: 200, body: { started: false, reason } };
}

function parse<T extends z.ZodType>(schema: T, payload: unknown): z.output<T> {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  throw new HttpError(400, 'the payload is not a GitHub event of its X-GitHub-Event', parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(payload)', message: i.message })));
}

/** The comment's text after the command, when its first word is the command; undefined otherwise. */
export function commandArgument(comment: string, command: string): string | undefined {
  const text = comment.trimStart();
  if (!text.startsWith(command)) return undefined;
  const rest = text.slice(command.length);
  if (rest !== '' && !/^\s/.test(rest)) return undefined; // `/claudex` is not `/claude`
  return rest.trim();
}

/** The instruction, then the issue as context, its body cut to fit the prompt's limit. */
function promptOf(instruction: string, heading: string, body: string): string {
  const head = `${instruction}\n\n${heading}\n\n`;
  const room = MAX_PROMPT_CHARS - head.length;
  if (room <= 0) return head.slice(0, MAX_PROMPT_CHARS);
  return head + (body.length > room ? `${body.slice(0, room - 40)}\n[… the rest of the description is cut]` : body);
}
