import type { SessionRecord } from '../sessions/session-item.js';
import { repositoryName, type GitHubClient, type PullRequest, type RepositoryName } from './github-client.js';

// What a GitHub-started session leaves on GitHub once it has closed (docs/GITHUB.md#what-comes-back):
// a pull request of its branch (an issue's session that changed something) and one comment on the
// issue or pull request. Made from the "Session Closed" event, outside the run: it reads the
// session and writes only to GitHub, so a GitHub outage can delay a report but never change a record.
// A report may run again (EventBridge delivers at least once, failures are retried): each step looks
// for what an earlier try made first, so a retry opens no second pull request and comments once.

/** The hidden line that marks a session's comment, found again by a retried report. */
export function reportMarker(sessionId: string): string {
  return `<!-- claude-sessions:session=${sessionId} -->`;
}

export interface ReportDeps {
  github: GitHubClient;
  /** The closed session, with Claude's reply (the event leaves it out). */
  session: (sessionId: string) => Promise<SessionRecord | undefined>;
}

export type ReportOutcome =
  | { reported: false; reason: string }
  | { reported: true; comment: string; pullRequest: string | null };

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
  // The repository is known only as the session's workspace, which the webhook gives only where the deployment's token goes.
  const repository = session.workspace ? repositoryName(session.workspace.repo) : undefined;
  if (!repository) return { reported: false, reason: 'the session had no repository of the deployment\'s token to report to' };

  const comments = await deps.github.issueComments(repository, task.number);
  const marker = reportMarker(session.sessionId);
  const earlier = comments.find((c) => c.body?.includes(marker));
  const branch = session.status === 'COMPLETED' ? session.workspace?.branch ?? null : null;
  // A pull request of an issue's change; a pull request's own session pushed to its branch, which is reported only.
  const pull = task.kind === 'issue' && branch ? await openPullRequest(deps.github, repository, task.number, branch, session) : undefined;
  if (earlier) return { reported: true, comment: earlier.html_url, pullRequest: pull?.html_url ?? null };
  const comment = await deps.github.createIssueComment(repository, task.number, commentBody(session, task.kind, pull));
  return { reported: true, comment: comment.html_url, pullRequest: pull?.html_url ?? null };
}

/** The branch's pull request: the one a previous try opened, else a new one into the session's base. */
async function openPullRequest(github: GitHubClient, repository: RepositoryName, issue: number, branch: string, session: SessionRecord): Promise<PullRequest> {
  // Open only: an issue's later session continues its branch, and the pull request a merge closed is done with.
  const existing = (await github.pullRequestsFrom(repository, branch)).find((p) => p.state === 'open');
  if (existing) return existing;
  const base = session.workspace?.ref ?? (await github.repository(repository)).default_branch;
  const { title } = await github.issue(repository, issue);
  return github.createPullRequest(repository, { title: title.slice(0, 250), head: branch, base, body: pullRequestBody(session, issue) });
}

// GitHub refuses a body over 65,536 characters: Claude's reply is cut to leave room for the rest.
const REPLY_MAX_CHARS = 60_000;

function reply(session: SessionRecord): string {
  const text = session.result?.trim() ?? '';
  if (!text) return '_Claude gave no reply._';
  return text.length > REPLY_MAX_CHARS ? `${text.slice(0, REPLY_MAX_CHARS)}\n\n[… the rest of the reply is cut]` : text;
}

export function pullRequestBody(session: SessionRecord, issue: number): string {
  return [`Resolves #${issue}.`, '', '### Claude\'s summary', '', reply(session), '', usageLines(session), '', reportMarker(session.sessionId)].join('\n');
}

export function commentBody(session: SessionRecord, kind: 'issue' | 'pr', pull: PullRequest | undefined): string {
  const w = session.workspace;
  const change = w?.branch ? `${w.filesChanged} file(s) changed, +${w.insertions} −${w.deletions}` : '';
  let outcome: string;
  if (session.status !== 'COMPLETED') {
    const why = [session.error, session.cause].filter(Boolean).join(': ').slice(0, 1_000) || 'no error was recorded';
    const kept = w?.branch && session.error !== 'WorkspacePushError' ? `; what it changed is on \`${w.branch}\`` : '';
    outcome = `The session ${session.status === 'FAILED' ? 'failed' : `ended ${session.status}`}: ${why}. No pull request was opened${kept}.`;
  } else if (pull && pull.body?.includes(reportMarker(session.sessionId)) === false) {
    // An earlier session of the issue opened it: this one added to its branch.
    outcome = `Pushed \`${w!.branch}\` (${change}), which ${pull.html_url} proposes.`;
  } else if (pull) {
    outcome = `Opened ${pull.html_url} from \`${w!.branch}\` (${change}).`;
  } else if (kind === 'pr' && w?.branch) {
    outcome = `Pushed \`${w.branch}\` (${change}).`;
  } else {
    outcome = 'Claude changed nothing, so no pull request was opened.';
  }
  const parts = [outcome, ''];
  if (session.status === 'COMPLETED' && !pull) parts.push(reply(session), '');
  parts.push(usageLines(session), '', reportMarker(session.sessionId));
  return parts.join('\n');
}

/** What the session spent, as its record has it. */
function usageLines(session: SessionRecord): string {
  const u = session.usage;
  const tokens = u.inputTokens + u.outputTokens + u.cacheReadInputTokens + u.cacheCreationInputTokens;
  const n = (value: number) => value.toLocaleString('en-US');
  return [
    '| session | tokens | turns | cost |',
    '|---|---|---|---|',
    `| \`${session.sessionId}\` | ${n(tokens)} (input ${n(u.inputTokens)}, output ${n(u.outputTokens)}, cache read ${n(u.cacheReadInputTokens)}, cache write ${n(u.cacheCreationInputTokens)}) | ${session.numTurns} | $${session.totalCostUsd.toFixed(6)} |`,
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
