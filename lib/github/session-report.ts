import type { MilestoneView } from '../sessions/milestone-repository.js';
import type { SessionRecord } from '../sessions/session-item.js';
import { subtractSession, type UsageSums } from '../sessions/usage-totals.js';
import { repositoryName, type GitHubClient, type PullRequest, type RepositoryName } from './github-client.js';
import { pullRequestMarker } from './pull-request-marker.js';

// What a GitHub-started session leaves on GitHub once it has closed (docs/GITHUB.md#what-comes-back):
// a pull request of its branch (an issue's session that changed something) and one comment on the
// issue or pull request. Made from the "Session Closed" event, outside the run: it reads the
// session and writes only to GitHub, so a GitHub outage can delay a report but never change a record.
// A report may run again (EventBridge delivers at least once, failures are retried): each step looks
// for what an earlier try made first, so a retry opens no second pull request and comments once.
// A GitHub issue's sessions are tasks of one milestone (lib/api/github-webhook.ts): their comments
// also show the milestone's running total, and a task refused because another ran says so in a line.

/** The hidden line that marks a session's comment, found again by a retried report. */
export function reportMarker(sessionId: string): string {
  return `<!-- claude-sessions:session=${sessionId} -->`;
}

export interface ReportDeps {
  github: GitHubClient;
  /** The closed session, with Claude's reply (the event leaves it out). */
  session: (sessionId: string) => Promise<SessionRecord | undefined>;
  /**
   * A milestone task's milestone, with its totals and every task that started after `tasksAfter`
   * (MilestoneRepository.view): the running total as of this task, and why a task was refused.
   */
  milestone?: (milestoneId: string, tasksAfter: string) => Promise<MilestoneView | undefined>;
  /**
   * Binds the pull request of an issue's branch to the issue's milestone (MilestoneRepository.recordPullRequest):
   * false when the milestone is another project's or has another pull request already.
   */
  recordPullRequest: (milestoneId: string, projectId: string, pull: { number: number; url: string }) => Promise<boolean>;
}

export type ReportOutcome =
  | { reported: false; reason: string }
  | { reported: true; comment: string; pullRequest: string | null; boundPullRequest?: number | null };

/** What the session started from: `issue-<n>` or `pr-<n>` (lib/api/github-webhook.ts). */
function taskOf(taskId: string | null): { kind: 'issue' | 'pr'; number: number } | undefined {
  const match = /^(issue|pr)-(\d+)$/.exec(taskId ?? '');
  return match ? { kind: match[1] as 'issue' | 'pr', number: Number(match[2]) } : undefined;
}

/** Reports one closed session on GitHub; a session GitHub did not start, or one it cannot be told about, is left alone. */
export async function reportSession(closed: { sessionId: string; trigger: string }, deps: ReportDeps): Promise<ReportOutcome> {
  if (closed.trigger !== 'github') return { reported: false, reason: `trigger ${closed.trigger}: only sessions GitHub started are reported there` };
  const session = await deps.session(closed.sessionId);
  if (!session) return { reported: false, reason: `session ${closed.sessionId} is not in the table` };
  if (session.status === 'RUNNING') throw new Error(`session ${session.sessionId} is still RUNNING: a close event came before its close was readable`);
  const task = taskOf(session.taskId);
  if (!task) return { reported: false, reason: `task ${JSON.stringify(session.taskId)} names no issue or pull request` };
  const milestone = session.milestoneId ? await deps.milestone?.(session.milestoneId, session.startedAt) : undefined;
  // The repository is known only as a workspace, which the webhook gives only where the deployment's token goes: the
  // session's, else its milestone's (a task refused the lease, or one that failed before it cloned, has none of its own).
  const repo = session.workspace?.repo ?? milestone?.workspace?.repo;
  const repository = repo ? repositoryName(repo) : undefined;
  if (!repository) return { reported: false, reason: 'the session had no repository of the deployment\'s token to report to' };

  const comments = await deps.github.issueComments(repository, task.number);
  const marker = reportMarker(session.sessionId);
  const earlier = comments.find((c) => c.body?.includes(marker));
  const branch = session.status === 'COMPLETED' ? session.workspace?.branch ?? null : null;
  // A pull request of an issue's change; a pull request's own session pushed to its branch, which is reported only.
  const opened = task.kind === 'issue' && branch ? await openPullRequest(deps.github, repository, task.number, branch, session) : undefined;
  const pull = opened?.pull;
  // Bound before anyone is told of it, and only a pull request the reporter opened itself: the marker in a body is
  // text anyone can copy (lib/api/github-webhook.ts), and one found open from the branch is anyone's who opened it.
  const bound = opened?.created && session.milestoneId
    ? await deps.recordPullRequest(session.milestoneId, session.projectId, { number: opened.pull.number, url: opened.pull.html_url })
    : undefined;
  const boundPullRequest = bound === undefined ? {} : { boundPullRequest: bound ? opened!.pull.number : null };
  if (earlier) return { reported: true, comment: earlier.html_url, pullRequest: pull?.html_url ?? null, ...boundPullRequest };
  const body = session.error === MILESTONE_UNAVAILABLE ? refusedBody(session, milestone) : commentBody(session, task.kind, pull, milestone);
  const comment = await deps.github.createIssueComment(repository, task.number, body);
  return { reported: true, comment: comment.html_url, pullRequest: pull?.html_url ?? null, ...boundPullRequest };
}

/** The error the workflow gives a milestone task refused the lease (cdk/workflow/milestone-lease.ts). */
const MILESTONE_UNAVAILABLE = 'MilestoneUnavailable';

/**
 * A task that never ran because its milestone would not take it: one line, and nothing spent. Read
 * after the refusal, the milestone still OPEN means it was running another task then.
 */
export function refusedBody(session: SessionRecord, milestone: MilestoneView | undefined): string {
  let line: string;
  if (milestone && milestone.projectId !== session.projectId) {
    // Said on GitHub, where the deployment's projects are nobody's business: not named.
    line = 'This comment started nothing: its conversation is in another project of this deployment (the repository was mapped anew).';
  } else if (milestone?.status === 'OPEN') {
    line = 'Busy: another task of this conversation was running, and one runs at a time. This comment started nothing; send it again once that task has reported.';
  } else if (milestone?.status === 'CLOSED') {
    line = 'This conversation is closed (its pull request was closed), so this comment started nothing.';
  } else if (milestone?.status === 'BROKEN') {
    line = `This conversation cannot go on (${milestone.brokenReason ?? 'its transcript cannot be resumed'}), so this comment started nothing.`;
  } else {
    line = 'This comment started nothing: its conversation does not exist in this project.';
  }
  return [line, '', reportMarker(session.sessionId)].join('\n');
}

/**
 * The branch's pull request: the one a previous try (or an earlier task of the milestone, on the same
 * branch) opened, else a new one into the session's base.
 */
async function openPullRequest(github: GitHubClient, repository: RepositoryName, issue: number, branch: string, session: SessionRecord): Promise<{ pull: PullRequest; created: boolean }> {
  // Open only: an issue's later session continues its branch, and the pull request a merge closed is done with.
  const existing = (await github.pullRequestsFrom(repository, branch)).find((p) => p.state === 'open');
  if (existing) return { pull: existing, created: false };
  const base = session.workspace?.ref ?? (await github.repository(repository)).default_branch;
  const { title } = await github.issue(repository, issue);
  return { pull: await github.createPullRequest(repository, { title: title.slice(0, 250), head: branch, base, body: pullRequestBody(session, issue) }), created: true };
}

// GitHub refuses a body over 65,536 characters: Claude's reply is cut to leave room for the rest.
const REPLY_MAX_CHARS = 60_000;

function reply(session: SessionRecord): string {
  const text = session.result?.trim() ?? '';
  if (!text) return '_Claude gave no reply._';
  return text.length > REPLY_MAX_CHARS ? `${text.slice(0, REPLY_MAX_CHARS)}\n\n[… the rest of the reply is cut]` : text;
}

export function pullRequestBody(session: SessionRecord, issue: number): string {
  // A milestone's pull request carries its issue, read back by the webhook; its comments continue that
  // conversation once the milestone records this pull request's number too (lib/api/github-webhook.ts).
  const markers = [reportMarker(session.sessionId), ...(session.milestoneId ? [pullRequestMarker(issue)] : [])];
  return [`Resolves #${issue}.`, '', '### Claude\'s summary', '', reply(session), '', usageLines(session), '', ...markers].join('\n');
}

export function commentBody(session: SessionRecord, kind: 'issue' | 'pr', pull: PullRequest | undefined, milestone?: MilestoneView): string {
  const w = session.workspace;
  const change = w?.branch ? `${w.filesChanged} file(s) changed, +${w.insertions} −${w.deletions}` : '';
  // This session opened the pull request (its body holds this session's reply), or an earlier one did.
  const openedHere = pull !== undefined && pull.body?.includes(reportMarker(session.sessionId)) !== false;
  let outcome: string;
  if (session.status !== 'COMPLETED') {
    const why = [session.error, session.cause].filter(Boolean).join(': ').slice(0, 1_000) || 'no error was recorded';
    const kept = w?.branch && session.error !== 'WorkspacePushError' ? `; what it changed is on \`${w.branch}\`` : '';
    outcome = `The session ${session.status === 'FAILED' ? 'failed' : `ended ${session.status}`}: ${why}. No pull request was opened${kept}.`;
  } else if (openedHere) {
    outcome = `Opened ${pull.html_url} from \`${w!.branch}\` (${change}).`;
  } else if (pull) {
    // An earlier session or task of the issue opened it: this one added to its branch.
    outcome = `Pushed \`${w!.branch}\` (${change}), which ${pull.html_url} proposes.`;
  } else if (kind === 'pr' && w?.branch) {
    outcome = `Pushed \`${w.branch}\` (${change}).`;
  } else {
    outcome = 'Claude changed nothing, so no pull request was opened.';
  }
  const parts = [outcome, ''];
  // The pull request's body holds the reply of the session that opened it; any later one's goes here.
  if (session.status === 'COMPLETED' && !openedHere) parts.push(reply(session), '');
  parts.push(usageLines(session, milestone && runningTotal(session, milestone)), '', reportMarker(session.sessionId));
  return parts.join('\n');
}

/**
 * The milestone's totals as of this task: its totals item (every task) less the tasks that started
 * after this one, which the view lists (`tasksAfter`; none, when the report follows the close). So a
 * report made late or retried after a later task still shows the total as of this task, and what it
 * reads does not grow with the tasks before it (docs/ARCHITECTURE.md#project-totals).
 */
export function runningTotal(session: SessionRecord, milestone: MilestoneView): UsageSums {
  if (milestone.nextToken) throw new Error(`the running total of milestone ${milestone.milestoneId} needs every task after ${session.sessionId}: view it with tasksAfter`);
  const total: UsageSums = structuredClone(milestone.totals);
  // A session of another project may name the milestone (its lease refuses it): it was counted in that project's totals, not these.
  for (const later of milestone.tasks) {
    if (later.startedAt > session.startedAt && later.sessionId !== session.sessionId && later.projectId === milestone.projectId) subtractSession(total, later);
  }
  return total;
}

/** What the session spent, as its record has it, and the milestone's total with it. */
function usageLines(session: SessionRecord, total?: UsageSums): string {
  const n = (value: number) => value.toLocaleString('en-US');
  const row = (label: string, u: SessionRecord['usage'], turns: number, cost: number) => {
    const tokens = u.inputTokens + u.outputTokens + u.cacheReadInputTokens + u.cacheCreationInputTokens;
    return `| ${label} | ${n(tokens)} (input ${n(u.inputTokens)}, output ${n(u.outputTokens)}, cache read ${n(u.cacheReadInputTokens)}, cache write ${n(u.cacheCreationInputTokens)}) | ${turns} | $${cost.toFixed(6)} |`;
  };
  return [
    '| session | tokens | turns | cost |',
    '|---|---|---|---|',
    row(`\`${session.sessionId}\``, session.usage, session.numTurns, session.totalCostUsd),
    ...(total ? [row(`conversation so far (${total.sessions} task${total.sessions === 1 ? '' : 's'})`, total.usage, total.numTurns, total.totalCostUsd)] : []),
  ].join('\n');
}

/**
 * The local engine's retry of a report (on AWS, the Lambda's asynchronous retries and its
 * dead-letter queue): `attempts` tries, waiting `delayMs`, then twice that, between them.
 */
export async function reportWithRetry(report: () => Promise<ReportOutcome>, options: { attempts: number; delayMs: number; onFailure?: (attempt: number, error: unknown) => void }): Promise<ReportOutcome> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await report();
    } catch (err) {
      options.onFailure?.(attempt, err);
      if (attempt >= options.attempts) throw err;
      await new Promise((resolve) => setTimeout(resolve, options.delayMs * 2 ** (attempt - 1)).unref());
    }
  }
}
