import type { SessionStart } from '../sessions/execution-input.js';
import { claudeProcessOptions, type ClaudeEndpoint, type StandbyClaude } from './claude-process.js';
import { watchExecution, type StoppedStatus } from './execution-watch.js';
import { runClaude, type ClaudeRun, type WorkspaceHooks } from './run-claude.js';
import type { RunnerConfig } from './run-session-task.js';

// The run step of a session's run: the CLI, once, for one attempt, watched for its execution
// ending under it. It returns the facts of the run (how it ended, what the gateway metered,
// whether the execution ended) and judges none of them: outcomeOf (run-outcome.ts) does.

/** What one attempt runs: which conversation, with what it may spend, in which workspace. */
export interface AttemptPlan {
  /** The conversation's id: the session's, or its milestone's. */
  claudeSessionId: string;
  /** A fresh session's conversation; a milestone's first task starts one, a later task resumes it. */
  conversation: 'fresh' | 'start' | 'resume';
  /** What the attempts before left of the session's budget; none: no budget. */
  budgetLeftUsd?: number;
  /** The milestone's transcript this task resumes. */
  restoreTranscript?: Buffer;
  workspace?: { hooks: WorkspaceHooks; repositorySettings: boolean };
  /** A CLI booted ahead for this session (the local runtime's next-run standby), used if it was started as this run would start one. */
  standby?: StandbyClaude;
}

/** The facts of one attempt's run. */
export interface AttemptRun {
  run: ClaudeRun;
  /** Whom Claude was served by. */
  endpoint: ClaudeEndpoint;
  /** How the execution ended while the run went on (a watch that asked in time); undefined while it runs. */
  readonly executionEnded: StoppedStatus | undefined;
}

/**
 * Runs the CLI for one attempt. With a watch (config.watch), the run stops when its execution
 * ends (asked every few seconds, and at once on config.signal, a Fargate heartbeat nobody answers
 * any more); without, config.signal kills Claude and the run throws (ClaudeAbortedError).
 */
export async function runAttempt(start: SessionStart, prompt: string, plan: AttemptPlan, endpoint: ClaudeEndpoint, config: RunnerConfig): Promise<AttemptRun> {
  const watched = config.watch ? watchExecution(config.watch) : undefined;
  const lookNow = () => watched?.check();
  if (watched) config.signal?.addEventListener('abort', lookNow, { once: true });
  const run = await runClaude({
    ...claudeProcessOptions(start, { ...config, endpoint, remainingMs: remainingWithin(config, endpoint) }, plan.claudeSessionId, plan.conversation),
    ...(plan.budgetLeftUsd !== undefined ? { maxBudgetUsd: plan.budgetLeftUsd } : {}),
    // A repository is data (REPOSITORY_IS_DATA) unless the deployment trusts its settings.
    repositorySettings: plan.workspace?.repositorySettings ?? false,
    prompt,
    restoreTranscript: plan.restoreTranscript,
    signal: watched ? undefined : config.signal,
    executionEnded: watched?.signal,
    standby: plan.standby,
    workspace: plan.workspace?.hooks,
  }).finally(() => {
    watched?.stop();
    config.signal?.removeEventListener('abort', lookNow);
  });
  return {
    run,
    endpoint,
    // Read when asked: a look in flight as the run ended may still tell that the execution ended.
    get executionEnded() {
      return watched?.ended;
    },
  };
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
