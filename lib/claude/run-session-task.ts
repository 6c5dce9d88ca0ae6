import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { promptSha256, type SessionStart } from '../sessions/execution-input.js';
import { RUNNER_CONTRACT, type RunOutcome } from '../sessions/session-item.js';
import type { AttemptSpend } from '../sessions/project-totals.js';
import { PromptMismatchError } from './errors.js';
import { AttemptAlreadyStartedError, ExecutionEndedError, type ExecutionWatch } from './execution-watch.js';
import type { ClaudeEndpoint, RunnerClaudeSettings, StandbyClaude } from './claude-process.js';
import type { TranscriptStorage } from './transcript-store.js';
import { budgetLeftUsd, earnsAnotherAttempt, nextAttempt, spendOf, withEarlierAttempts, type RetryState } from './attempt-retry.js';
import { milestoneLease, releaseMilestone } from './milestone-task.js';
import { runAttempt } from './run-attempt.js';
import type { ClaudeRun } from './run-claude.js';
import { outcomeOf } from './run-outcome.js';
import { sessionWorkspace } from './session-workspace.js';
import { recordOf, type TaskResult } from './task-record.js';

export type { NextAttempt, RetryState, Spent } from './attempt-retry.js';
export type { MarshalledTotalsDelta, TaskResult } from './task-record.js';

/**
 * How the CLI starts (RunnerClaudeSettings: binary, limits, tools), and the rest the runner needs.
 * Claude's endpoint is either one for every session (`endpoint`: the local runtime) or each
 * session's own (`sessionEndpoint`: a deployed runner, for its model and credentials).
 */
export interface RunnerConfig extends Omit<RunnerClaudeSettings, 'endpoint'> {
  endpoint?: ClaudeEndpoint;
  now?: () => Date;
  /**
   * Stops the run. Without `watch`, Claude is killed and the run throws (ClaudeAbortedError); with
   * it, the watch looks at once (a Fargate heartbeat that nobody answers any more).
   */
  signal?: AbortSignal;
  /** How the runner learns that its execution ended under it, and records what it spent (execution-watch.ts). */
  watch?: ExecutionWatch;
  /** Where milestone transcripts are kept; required for milestone tasks only. */
  transcripts?: TranscriptStorage;
  /**
   * The git token for an https workspace, read when a session needs it, for its clone and again
   * for its push: the deployment's secret, or a GitHub App's token scoped to that repository.
   */
  gitToken?: (repo: string) => Promise<string | undefined>;
  /** The URL prefixes the git token may go to (GIT_TOKEN_SCOPES); none: it goes nowhere. */
  gitTokenScopes?: readonly string[];
  /** Workspace repositories whose own Claude Code settings the CLI reads (TRUSTED_SETTINGS_REPOSITORIES); none by default. */
  trustedSettingsRepositories?: readonly string[];
  /** What a workspace's clone may hold on disk (CLAUDE_MAX_CLONE_MIB). @default DEFAULT_MAX_CLONE_MIB */
  maxCloneMiB?: number;
  /** The runner's own AWS credentials (its role), to sign git's password for a CodeCommit workspace. */
  codeCommitCredentials?: AwsCredentialIdentityProvider;
  /** Where git reaches CodeCommit instead of its public endpoint: a local stand-in, set by tests only (GitAccess.codeCommitEndpoint). */
  codeCommitEndpoint?: string;
  /** Where the change of a workspace that could not be pushed is kept; returns where it is. */
  savePatch?: (sessionId: string, patch: Buffer) => Promise<string>;
  /** Claude's endpoint for this session (a deployed runner: its model, its credentials); wins over `endpoint`. */
  sessionEndpoint?: (session: SessionStart) => Promise<ClaudeEndpoint>;
}

/** A runner with one endpoint for every session (the local runtime's). */
export type FixedEndpointRunnerConfig = RunnerConfig & { endpoint: ClaudeEndpoint };

/** What the workflow hands the runner: the session, and for a milestone task the milestone as AcquireMilestone left it. */
export interface RunnerInput {
  session: SessionStart;
  /** What Claude is asked: checked against the session's promptSha256 before Claude runs. */
  prompt: string;
  /** The milestone's item for a milestone task; no item for a fresh session. */
  milestone: { item: Record<string, AttributeValue> | null } | null;
  /** Which attempt this is, and what the attempts before it spent (absent: the first). */
  retry?: RetryState | null;
  /** The definition's write contract (RUNNER_CONTRACT); absent: this runner's own. */
  contract?: number;
}

/** What only the runtime at the edge hands a run: the local runtime's speed tricks. Lambda and Fargate hand nothing. */
export interface RunnerEdge {
  /**
   * A CLI booted ahead for this session (the local engine's next-run standby, standbyForSession):
   * used by a first attempt without a workspace (it has its own empty working directory), if it
   * was started as this run would start one; else left for its owner to discard.
   */
  standby?: StandbyClaude;
}

/**
 * The runner's one job: run Claude for a created session and say how it went, in the steps of the
 * session's life. A Claude-level failure is an outcome (its usage was spent and is recorded); an
 * infrastructure failure throws, and the workflow's Catch closes the session.
 */
export async function runSessionTask(input: RunnerInput, config: RunnerConfig, edge: RunnerEdge = {}): Promise<TaskResult> {
  const { session: start, prompt, retry, contract = RUNNER_CONTRACT } = input;
  const attempt = retry?.attempt ?? 1;
  const now = config.now ?? (() => new Date());
  checkPrompt(start, prompt);
  const lease = await milestoneLease(start, input.milestone, config.transcripts);
  const budgetLeft = budgetLeftUsd(start, retry);
  const retried = (run: ClaudeRun) => earnsAnotherAttempt(run, { attempt, runAttempts: start.runAttempts, budgetLeftUsd: budgetLeft, milestone: lease !== null });
  const workspace = sessionWorkspace(start, lease, prompt, config, retried);
  const endpoint = await endpointOf(start, config);
  await claimAttempt(start, attempt, config.watch);

  const claudeSessionId = lease?.claudeSessionId ?? start.sessionId;
  const ran = await runAttempt(start, prompt, {
    claudeSessionId,
    conversation: !lease ? 'fresh' : lease.restored ? 'resume' : 'start',
    budgetLeftUsd: budgetLeft,
    restoreTranscript: lease?.restored,
    workspace,
    standby: attempt === 1 && !workspace ? edge.standby : undefined,
  }, endpoint, config);
  const own = outcomeOf(ran.run, endpoint, { claudeSessionId, maxBudgetUsd: start.maxBudgetUsd, endedAt: now(), executionEnded: ran.executionEnded });
  let outcome = withEarlierAttempts(own, retry);
  // The execution is gone and will write nothing: the runner records the spend itself, then fails.
  if (ran.run.kind === 'stopped') {
    await recordStopped(start, outcome, spendOf(own), config.watch!, `the execution ended ${ran.executionEnded ?? 'ABORTED'} while Claude ran: Claude was stopped and what it spent was recorded on session ${start.sessionId}`);
  }
  if (workspace) outcome = await workspace.applyTo(outcome);
  // The execution ended while Claude finished or its push ran: nobody will take this result, so the runner records it.
  if (ran.executionEnded) {
    await recordStopped(start, outcome, spendOf(own), config.watch!, `the execution ended ${ran.executionEnded} as Claude finished: what it spent was recorded on session ${start.sessionId}`);
  }

  // A transient API failure runs again, from the start, on fresh sessions only.
  const next = retried(ran.run) ? nextAttempt(start, attempt, spendOf(outcome), spendOf(own)) : undefined;
  const released = lease ? await releaseMilestone(start, lease, ran.run, outcome, config.transcripts!, now) : undefined;
  return recordOf(start, released?.outcome ?? outcome, spendOf(own), contract, { milestoneValues: released?.milestoneValues, next });
}

/** The prompt came apart from its session (the Fargate task reads it from the execution): it must be the one the session recorded. */
function checkPrompt(start: SessionStart, prompt: unknown): void {
  if (typeof prompt !== 'string' || promptSha256(prompt) !== start.promptSha256) {
    throw new PromptMismatchError(start.sessionId);
  }
}

/** Claude's endpoint for this session: the deployed runner's own per session, else the one for every session. */
async function endpointOf(start: SessionStart, config: RunnerConfig): Promise<ClaudeEndpoint> {
  const endpoint = config.sessionEndpoint ? await config.sessionEndpoint(start) : config.endpoint;
  if (!endpoint) throw new Error('the runner has no Claude endpoint: its RunnerConfig sets neither endpoint nor sessionEndpoint');
  return endpoint;
}

/** One Claude per attempt: a second invocation of this attempt (a retried invoke) starts none. */
async function claimAttempt(start: SessionStart, attempt: number, watch: ExecutionWatch | undefined): Promise<void> {
  if (watch?.claimAttempt && !(await watch.claimAttempt(start, attempt))) {
    throw new AttemptAlreadyStartedError(`attempt ${attempt} of session ${start.sessionId} is run by another invocation: this one starts no Claude`);
  }
}

/** A run whose execution ended under it: nobody takes its result, so the runner writes its spend on the session (no close), and fails. */
async function recordStopped(start: SessionStart, outcome: RunOutcome, own: AttemptSpend, watch: ExecutionWatch, message: string): Promise<never> {
  await watch.recordStopped(start, outcome, own);
  throw new ExecutionEndedError(message);
}
