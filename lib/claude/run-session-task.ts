import { marshall, unmarshall, type NativeAttributeValue } from '@aws-sdk/util-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { promptSha256, type SessionStart, type WorkspaceSpec } from '../sessions/execution-input.js';
import {
  RESULT_MAX_CHARS,
  RUNNER_CONTRACT,
  closeValues,
  forContract,
  toClosedRecord,
  type RunOutcome,
  type SessionRecord,
} from '../sessions/session-item.js';
import { claudeFailure, isTransientFailure } from './claude-result.js';
import type { MeteredUsage } from './usage-meter.js';
import { addUsage, addUsageByModel, addUsd, roundUsd, type Usage, type UsageByModel } from '../sessions/usage.js';
import { PromptMismatchError, SessionIdMismatchError } from './errors.js';
import { runClaude, type ClaudeRun, type WorkspaceHooks } from './run-claude.js';
import { AttemptAlreadyStartedError, ExecutionEndedError, stoppedFailure, watchExecution, type ExecutionWatch } from './execution-watch.js';
import { WorkspacePushError, cloneWorkspace, commitAndPush, defaultBranch, redactRepo, type ClonedWorkspace, type GitAccess } from './workspace.js';
import { isCodeCommitUrl } from '../sessions/codecommit-url.js';
import { isListedRepository, tokenScopeOf } from './repository-scopes.js';
import { claudeProcessOptions, type BedrockEndpoint, type ClaudeEndpoint, type RunnerClaudeSettings, type StandbyClaude } from './claude-process.js';
import { releaseAfterRunValues, toMilestoneRecord, type MilestoneRecord, type MilestoneWorkspace, type TranscriptPointer } from '../sessions/milestone-item.js';
import { milestoneTaskWorkspace } from '../sessions/milestone-workspace.js';
import type { TranscriptStorage } from './transcript-store.js';
import { totalsDelta, type AttemptSpend, type TotalsDelta } from '../sessions/project-totals.js';


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
  /** The CLI started ahead for this execution's session (standbyForSession), if one was; taken once. */
  takeStandby?: () => StandbyClaude | undefined;
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


/** What earlier attempts of one session spent, carried in the execution's state, never added in the table. */
export interface Spent {
  usage: Usage;
  modelUsage: UsageByModel;
  numTurns: number;
  totalCostUsd: number;
  durationMs: number;
}

export interface RetryState {
  attempt: number;
  prior: Spent | null;
}

/** Returned when a transient failure earns another attempt: the workflow waits, records the spend so far, and runs again. */
export interface NextAttempt extends RetryState {
  prior: Spent;
  waitSeconds: number;
  /** RECORD_ATTEMPT_UPDATE's values: the spend so far, on the RUNNING session. */
  values: Record<string, AttributeValue>;
  /** This attempt's spend, for the project's totals in the same write. */
  totals: MarshalledTotalsDelta;
}

/** A TotalsDelta as the workflow's transaction takes it. */
export interface MarshalledTotalsDelta {
  update: string;
  names: Record<string, string>;
  values: Record<string, AttributeValue>;
}

function marshalledDelta(delta: TotalsDelta): MarshalledTotalsDelta {
  return { update: delta.update, names: delta.names, values: marshall(delta.values) };
}

function spendOf(outcome: RunOutcome): AttemptSpend {
  const { usage, modelUsage, numTurns, totalCostUsd, durationMs } = outcome;
  return { usage, modelUsage, numTurns, totalCostUsd, durationMs };
}

/** What RunClaude returns: the closed record, and the values RecordUsage (and ReleaseMilestone) write. */
export interface TaskResult {
  record: SessionRecord;
  values: Record<string, AttributeValue>;
  /** The close's change to the project's totals: the status move and this attempt's spend (absent from a runner before them). */
  totals?: MarshalledTotalsDelta;
  /** Milestone tasks: the transcript pointer and lease release for ReleaseMilestone. */
  milestoneValues?: Record<string, AttributeValue>;
  /** Present when the workflow should run Claude again (a transient API failure, attempts left). */
  next?: NextAttempt;
}

/**
 * The runner's one job: run Claude for a created session and say how it went.
 * A Claude-level failure is an outcome (its usage was spent and is recorded);
 * an infrastructure failure throws, and the workflow's Catch closes the session.
 */
export async function runSessionTask({ session: start, prompt, milestone: lease, retry, contract = RUNNER_CONTRACT }: RunnerInput, config: RunnerConfig): Promise<TaskResult> {
  const attempt = retry?.attempt ?? 1;
  const now = config.now ?? (() => new Date());
  // The prompt came apart from its session (the Fargate task reads it from the execution): it must be the one the session recorded.
  if (typeof prompt !== 'string' || promptSha256(prompt) !== start.promptSha256) {
    throw new PromptMismatchError(start.sessionId);
  }

  const milestone = lease?.item ? toMilestoneRecord(unmarshall(lease.item)) : null;
  if (start.mode === 'milestone' && !milestone) throw new Error(`milestone task ${start.sessionId} reached the runner without its milestone`);
  if (milestone && !config.transcripts) throw new Error('milestone tasks need the transcript bucket (TRANSCRIPT_BUCKET is not set)');
  // A milestone's tasks all speak in one Claude conversation: the milestone's UUID.
  const claudeSessionId = milestone?.claudeSessionId ?? start.sessionId;
  // ...and continue one branch: a task naming another repository is refused here, before Claude runs.
  const milestoneWorkspace = milestone ? milestoneTaskWorkspace(milestone, start.workspace) : null;
  // Resume only what the last task recorded; a missing or altered transcript throws here, before Claude runs.
  const restored = milestone?.transcript ? await config.transcripts!.load(milestone.milestoneId, milestone.transcript) : undefined;

  // The session's budget is for all its attempts: this one has what the ones before left.
  const priorCostUsd = retry?.prior?.totalCostUsd ?? 0;
  const budgetLeft = start.maxBudgetUsd === undefined ? undefined : roundUsd(Math.max(0, start.maxBudgetUsd - priorCostUsd));
  // A run that will be retried pushes nothing: the next attempt starts again from the base commit.
  // Retried only for a failure the model itself answered (a result line can be printed by a
  // command, claiming one), and while the budget has something left.
  const retried = (r: ClaudeRun) => r.kind === 'result' && !milestone && isTransientFailure(r.result)
    && (r.metered.upstreamStatuses ?? []).includes(Number(r.result.api_error_status))
    && (budgetLeft === undefined || r.metered.totalCostUsd < budgetLeft)
    && attempt < (start.runAttempts ?? 1);
  const target = workspaceTarget(start, milestone, milestoneWorkspace);
  const workspace = target ? workspaceHooks(start, target, prompt, config, retried) : undefined;
  const endpoint = config.sessionEndpoint ? await config.sessionEndpoint(start) : config.endpoint;
  if (!endpoint) throw new Error('the runner has no Claude endpoint: its RunnerConfig sets neither endpoint nor sessionEndpoint');
  // One Claude per attempt: a second invocation of this attempt (a retried invoke) starts none.
  if (config.watch?.claimAttempt && !(await config.watch.claimAttempt(start, attempt))) {
    throw new AttemptAlreadyStartedError(`attempt ${attempt} of session ${start.sessionId} is run by another invocation: this one starts no Claude`);
  }
  const watched = config.watch ? watchExecution(config.watch) : undefined;
  const lookNow = () => watched?.check();
  if (watched) config.signal?.addEventListener('abort', lookNow, { once: true });
  const run = await runClaude({
    ...claudeProcessOptions(start, { ...config, endpoint, remainingMs: remainingWithin(config, endpoint) }, claudeSessionId, !milestone ? 'fresh' : restored ? 'resume' : 'start'),
    ...(budgetLeft !== undefined ? { maxBudgetUsd: budgetLeft } : {}),
    // A repository is data (REPOSITORY_IS_DATA) unless the deployment trusts its settings.
    repositorySettings: target ? isListedRepository(target.spec.repo, config.trustedSettingsRepositories) : false,
    prompt,
    restoreTranscript: restored,
    signal: watched ? undefined : config.signal,
    executionEnded: watched?.signal,
    // A CLI started ahead has its own empty working directory: a workspace session starts its own.
    standby: attempt === 1 && !workspace ? config.takeStandby?.() : undefined,
    workspace: workspace?.hooks,
  }).finally(() => {
    watched?.stop();
    config.signal?.removeEventListener('abort', lookNow);
  });

  const served = { provider: endpoint.provider ?? 'anthropic', model: endpoint.model ?? null };
  // What the session spent is what its gateway metered, not what the CLI printed (a Bash command
  // can print a result line of its own). On Bedrock the model that answered names itself, not the
  // profile id or ARN asked for: its usage is put under the ids the deployment configured.
  const metered = endpoint.provider === 'bedrock' ? { ...run.metered, modelUsage: underConfiguredModels(run.metered.modelUsage, endpoint) } : run.metered;
  let outcome: RunOutcome;
  if (run.kind === 'stopped') {
    // The execution is gone and will write nothing: the runner records the spend itself, then fails.
    const status = watched?.ended ?? 'ABORTED';
    const { error, cause } = stoppedFailure(status, Math.round(run.wallMs / 1000));
    const stopped = unfinishedOutcome(claudeSessionId, run, metered, served, now(), status, error, cause);
    await config.watch!.recordStopped(start, { ...stopped, ...addSpent(retry?.prior ?? null, stopped), attempts: attempt }, spendOf(stopped));
    throw new ExecutionEndedError(`the execution ended ${status} while Claude ran: Claude was stopped and what it spent was recorded on session ${start.sessionId}`);
  } else if (run.kind === 'crashed') {
    // Tokens streamed before a crash were spent: record them on a FAILED session.
    outcome = unfinishedOutcome(claudeSessionId, run, metered, served, now(), 'FAILED', run.error.name, run.error.message.slice(0, RESULT_MAX_CHARS));
  } else if (run.kind === 'timeout') {
    const seconds = Math.round(run.limitMs / 1000);
    const cause = run.reason === 'wall-clock'
      ? `the Claude CLI ran past its ${seconds} s limit and was stopped`
      : `the Claude CLI printed nothing for ${seconds} s and was stopped`;
    outcome = unfinishedOutcome(claudeSessionId, run, metered, served, now(), 'TIMED_OUT', 'ClaudeTimeoutError', cause);
  } else {
    const { result } = run;
    // The one invariant: the conversation Claude ran is the session we track.
    if (result.session_id !== claudeSessionId) throw new SessionIdMismatchError(claudeSessionId, result.session_id);
    const failure = overBudget(claudeFailure(result), run.metered, start.maxBudgetUsd);
    outcome = {
      status: failure ? 'FAILED' : 'COMPLETED',
      endedAt: now().toISOString(),
      claudeSessionId: result.session_id,
      usage: metered.usage,
      numTurns: result.num_turns,
      totalCostUsd: metered.totalCostUsd,
      durationMs: result.duration_ms || run.wallMs,
      modelUsage: metered.modelUsage,
      ...served,
      stopReason: result.stop_reason ?? null,
      result: result.result?.slice(0, RESULT_MAX_CHARS) ?? null,
      error: failure?.error ?? null,
      cause: failure?.cause.slice(0, RESULT_MAX_CHARS) ?? null,
      attempts: 1,
    };
  }
  // Every attempt's spend is kept: this one's plus what the state carried from the ones before.
  // The project's totals count this one's alone: the earlier ones were counted as they were recorded.
  const own = spendOf(outcome);
  const spent = addSpent(retry?.prior ?? null, outcome);
  outcome = { ...outcome, ...spent, attempts: attempt };
  if (workspace) outcome = await workspace.applyTo(outcome);
  // The execution ended while Claude finished or its push ran: nobody will take this result, so the runner records it.
  if (watched?.ended) {
    await config.watch!.recordStopped(start, outcome, own);
    throw new ExecutionEndedError(`the execution ended ${watched.ended} as Claude finished: what it spent was recorded on session ${start.sessionId}`);
  }
  // A transient API failure runs again, from the start, on fresh sessions only: a milestone's
  // conversation has moved on (its transcript) and is not replayed.
  const again = retried(run);
  let next: NextAttempt | undefined;
  if (again) {
    next = {
      attempt: attempt + 1,
      prior: spent,
      waitSeconds: Math.round((start.retryBaseSeconds ?? 15) * 2 ** (attempt - 1)),
      values: marshall({
        ':running': 'RUNNING', ':usage': spent.usage, ':modelUsage': spent.modelUsage, ':numTurns': spent.numTurns,
        ':totalCostUsd': spent.totalCostUsd, ':durationMs': spent.durationMs, ':attempts': attempt,
      }),
      totals: marshalledDelta(totalsDelta({ spend: own })),
    };
  }
  let milestoneValues: Record<string, AttributeValue> | undefined;
  if (milestone) {
    let pointer: TranscriptPointer | null = milestone.transcript;
    if (run.transcript && !(restored && run.transcript.equals(restored))) {
      try {
        pointer = await config.transcripts!.save(milestone.milestoneId, run.transcript);
      } catch (err) {
        // The tokens were spent whatever S3 said: keep them, and say the next task resumes from the previous turn.
        outcome = transcriptNotSaved(outcome, milestone, err as Error);
      }
    }
    milestoneValues = marshall(releaseAfterRunValues(start.executionArn, start.sessionId, pointer, milestoneWorkspace, now()), { removeUndefinedValues: true });
  }
  return {
    record: toClosedRecord(start, outcome),
    values: marshall(forContract(closeValues(outcome, start.retainUntil ?? null), contract, 'close') as Record<string, NativeAttributeValue>, { removeUndefinedValues: true }),
    totals: marshalledDelta(totalsDelta({ from: 'RUNNING', to: outcome.status, spend: own })),
    ...(milestoneValues ? { milestoneValues } : {}),
    ...(next ? { next } : {}),
  };
}

/** A run whose CLI failed after its gateway refused calls over the budget failed on its budget, whatever the CLI made of the refusal. */
function overBudget(failure: ReturnType<typeof claudeFailure>, metered: MeteredUsage, budgetUsd: number | undefined): ReturnType<typeof claudeFailure> {
  if (!failure || !metered.refusedOverBudget) return failure;
  return { error: 'ClaudeMaxBudget', cause: `the session spent $${metered.totalCostUsd} of its $${budgetUsd} budget; the model gateway refused ${metered.refusedOverBudget} model call(s) after that` };
}

function underConfiguredModels(byModel: UsageByModel, endpoint: BedrockEndpoint): UsageByModel {
  const configured = [endpoint.model, endpoint.smallFastModel].filter((m): m is string => Boolean(m));
  const small = endpoint.smallFastModel;
  return Object.entries(byModel).reduce<UsageByModel>((sum, [model, usage]) => {
    const id = configured.includes(model) ? model : small && /haiku/i.test(model) && !/haiku/i.test(endpoint.model) ? small : endpoint.model;
    return addUsageByModel(sum, { [id]: usage });
  }, {});
}

/**
 * The time the run may take: the platform's (Lambda's remaining time), and no longer than the
 * CLI's credentials work. Credentials the CLI cannot refresh would fail every call after they
 * expire, non-retryably: the run is stopped before, TIMED_OUT, with what it spent kept.
 */
function remainingWithin(config: RunnerConfig, endpoint: ClaudeEndpoint): (() => number) | undefined {
  const expiration = endpoint.provider === 'bedrock' ? endpoint.credentials?.expiration : undefined;
  if (!expiration) return config.remainingMs;
  const untilExpiry = () => new Date(expiration).getTime() - Date.now();
  return () => Math.min(config.remainingMs?.() ?? Number.POSITIVE_INFINITY, untilExpiry());
}

/** What a run clones and pushes. */
interface WorkspaceTarget {
  spec: WorkspaceSpec;
  branch: string;
  /** A milestone's branch: cloned when the remote has it, so the task starts from the last task's commit. */
  continues: boolean;
}

/** A fresh session's own branch (the one it names, continued where the remote has it), or its milestone's branch, continued too. */
function workspaceTarget(start: SessionStart, milestone: MilestoneRecord | null, fixed: MilestoneWorkspace | null): WorkspaceTarget | undefined {
  if (milestone) return fixed ? { spec: { repo: fixed.repo, ...(fixed.ref ? { ref: fixed.ref } : {}) }, branch: fixed.branch, continues: true } : undefined;
  // A branch named without a ref is continued where the remote has it (an issue's later session, lib/api/github-webhook.ts).
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
      const pushAccess = () => gitAccess(spec.repo, config).then((fresh) => (access = fresh));
      pushed = await pushAccess().then(() => commitAndPush(spec, { sessionId: start.sessionId, promptFirstLine, branch }, workDir, home, cloned!, access)).catch((err: Error) => ({
        record: { repo: redactRepo(spec.repo), ref: spec.ref ?? null, baseCommit: cloned!.baseCommit, branch: null, commit: null, filesChanged: 0, insertions: 0, deletions: 0 },
        error: new WorkspacePushError(`could not commit the change: ${err.message}`),
        patch: undefined,
      }));
    },
  };
  return {
    hooks,
    /** The record's workspace; a push that failed makes the session FAILED, its usage kept and its change saved as a patch. */
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

function addSpent(prior: Spent | null, outcome: RunOutcome): Spent {
  const { usage, modelUsage, numTurns, totalCostUsd, durationMs } = outcome;
  if (!prior) return { usage, modelUsage, numTurns, totalCostUsd, durationMs };
  return {
    usage: addUsage(prior.usage, outcome.usage),
    modelUsage: addUsageByModel(prior.modelUsage, outcome.modelUsage),
    numTurns: prior.numTurns + outcome.numTurns,
    totalCostUsd: addUsd(prior.totalCostUsd, outcome.totalCostUsd),
    durationMs: prior.durationMs + outcome.durationMs,
  };
}

function transcriptNotSaved(outcome: RunOutcome, milestone: MilestoneRecord, err: Error): RunOutcome {
  const cause = `the transcript of milestone ${milestone.milestoneId} could not be saved (${err.name}: ${err.message}); the next task resumes from the task before this one`;
  return { ...outcome, status: 'FAILED', error: 'TranscriptNotSavedError', cause: cause.slice(0, RESULT_MAX_CHARS) };
}

/** The outcome of a run that ended without the CLI's result: what the gateway metered until then. */
function unfinishedOutcome(
  claudeSessionId: string,
  run: { numTurns: number; wallMs: number },
  metered: Pick<MeteredUsage, 'usage' | 'modelUsage' | 'totalCostUsd'>,
  served: Pick<RunOutcome, 'provider' | 'model'>,
  endedAt: Date,
  status: 'FAILED' | 'TIMED_OUT' | 'ABORTED',
  error: string,
  cause: string,
): RunOutcome {
  return {
    status,
    endedAt: endedAt.toISOString(),
    claudeSessionId,
    usage: metered.usage,
    numTurns: run.numTurns,
    totalCostUsd: metered.totalCostUsd,
    durationMs: run.wallMs,
    modelUsage: metered.modelUsage,
    ...served,
    stopReason: null,
    result: null,
    error,
    cause,
    attempts: 1,
  };
}
