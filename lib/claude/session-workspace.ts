import type { SessionStart, WorkspaceSpec } from '../sessions/execution-input.js';
import { RESULT_MAX_CHARS, type RunOutcome } from '../sessions/session-item.js';
import type { MilestoneWorkspace } from '../sessions/milestone-item.js';
import { isCodeCommitUrl } from '../sessions/codecommit-url.js';
import { isListedRepository, tokenScopeOf } from './repository-scopes.js';
import type { ClaudeRun, WorkspaceHooks } from './run-claude.js';
import type { RunnerConfig } from './run-session-task.js';
import { WorkspacePushError, cloneWorkspace, commitAndPush, defaultBranch, redactRepo, type ClonedWorkspace, type GitAccess } from './workspace.js';

// The workspace step of a session's run: which repository and branch a run clones and pushes,
// the hooks runClaude calls around the CLI, and what they add to the outcome. Apart from the run
// itself, since a session without a workspace has none of it.

/** A session's workspace for one run: the hooks around the CLI, and what they add to its outcome. */
export interface SessionWorkspace {
  hooks: WorkspaceHooks;
  /** Whether the CLI reads the repository's own Claude Code settings: only one the deployment trusts (else REPOSITORY_IS_DATA). */
  repositorySettings: boolean;
  /** The record's workspace; a push that failed makes the session FAILED, its usage kept and its change saved as a patch. */
  applyTo(outcome: RunOutcome): Promise<RunOutcome>;
}

/** What a run clones and pushes. */
interface WorkspaceTarget {
  spec: WorkspaceSpec;
  branch: string;
  /** A milestone's branch: cloned when the remote has it, so the task starts from the last task's commit. */
  continues: boolean;
}

/**
 * The workspace of this run: a fresh session's own branch, or its milestone's branch, continued
 * where the remote has it; none for a session without one. `retried`: a run that will be retried
 * pushes nothing, since the next attempt starts again from the base commit.
 */
export function sessionWorkspace(
  start: SessionStart,
  milestone: { workspace: MilestoneWorkspace | null } | null,
  prompt: string,
  config: RunnerConfig,
  retried: (run: ClaudeRun) => boolean,
): SessionWorkspace | undefined {
  const target = workspaceTarget(start, milestone);
  if (!target) return undefined;
  return {
    ...workspaceHooks(start, target, prompt, config, retried),
    repositorySettings: isListedRepository(target.spec.repo, config.trustedSettingsRepositories),
  };
}

function workspaceTarget(start: SessionStart, milestone: { workspace: MilestoneWorkspace | null } | null): WorkspaceTarget | undefined {
  if (milestone) {
    const fixed = milestone.workspace;
    return fixed ? { spec: { repo: fixed.repo, ...(fixed.ref ? { ref: fixed.ref } : {}) }, branch: fixed.branch, continues: true } : undefined;
  }
  // A branch named without a ref is continued where the remote has it: a later session naming the
  // same branch adds to it instead of failing its push (docs/WORKSPACES.md).
  return start.workspace && { spec: start.workspace, branch: start.workspace.branch ?? defaultBranch(start.sessionId), continues: !!start.workspace.branch && !start.workspace.ref };
}

/** The clone before the run, the commit and push after it, and what they add to the outcome. */
function workspaceHooks(start: SessionStart, { spec, branch, continues }: WorkspaceTarget, prompt: string, config: RunnerConfig, retried: (run: ClaudeRun) => boolean) {
  let cloned: ClonedWorkspace | undefined;
  let pushed: Awaited<ReturnType<typeof commitAndPush>> | undefined;
  let access: GitAccess = {};
  const hooks: WorkspaceHooks = {
    async prepare(workDir, home, timeLeftMs) {
      access = await gitAccess(spec.repo, config);
      cloned = await cloneWorkspace(spec, workDir, home, access, continues ? branch : undefined, timeLeftMs, config.maxCloneMiB);
    },
    async finish(workDir, home, run) {
      // A stopped run pushes nothing: its execution is over, and a milestone's lease may be another task's by now.
      if (!cloned || retried(run) || run.kind === 'stopped') return;
      const promptFirstLine = prompt.split('\n', 1)[0]!.trim().slice(0, 100);
      // Asked again: an App's token lasts an hour, a session may run for more.
      // One that cannot be had keeps the clone's: the push then fails, if it must, as a push does (the change kept as a patch).
      const pushAccess = () => gitAccess(spec.repo, config).then((fresh) => (access = fresh), () => access);
      pushed = await pushAccess().then(() => commitAndPush(spec, { sessionId: start.sessionId, promptFirstLine, branch }, workDir, home, cloned!, access)).catch((err: Error) => ({
        record: { repo: redactRepo(spec.repo), ref: spec.ref ?? null, baseCommit: cloned!.baseCommit, branch: null, commit: null, filesChanged: 0, insertions: 0, deletions: 0 },
        error: new WorkspacePushError(`could not commit the change: ${err.message}`),
        patch: undefined,
      }));
    },
  };
  return {
    hooks,
    async applyTo(outcome: RunOutcome): Promise<RunOutcome> {
      if (!pushed) return outcome;
      if (!pushed.error) return { ...outcome, workspace: pushed.record };
      const savedAt = pushed.patch && config.savePatch ? await config.savePatch(start.sessionId, pushed.patch).catch(() => undefined) : undefined;
      const cause = `${pushed.error.message}${savedAt ? `; the change is kept as a patch at ${savedAt}` : ''}`;
      return { ...outcome, status: 'FAILED', error: pushed.error.name, cause: cause.slice(0, RESULT_MAX_CHARS), workspace: pushed.record };
    },
  };
}

/** How git reaches a repository: CodeCommit with the runner's own role (never the token), another https host with the deployment's token. */
async function gitAccess(repo: string, config: RunnerConfig): Promise<GitAccess> {
  if (isCodeCommitUrl(repo)) return { codeCommitCredentials: config.codeCommitCredentials, codeCommitEndpoint: config.codeCommitEndpoint };
  const token = tokenScopeOf(repo, config.gitTokenScopes) ? await config.gitToken?.(repo) : undefined;
  return { token, tokenScopes: config.gitTokenScopes };
}
