import { zeroUsage, type Usage, type UsageByModel } from './usage.js';

import type { SessionStart } from './execution-input.js';

/**
 * The session item's layout, shared by SessionRepository and the workflow's direct
 * DynamoDB states (cdk/session-workflow.ts), so the two writers cannot drift apart.
 */
export const SESSION_SK = 'SESSION';
/**
 * A project's sessions, newest first, holding what `list` shows (SESSION_SUMMARY_ATTRIBUTES), not the
 * reply. A new name: DynamoDB cannot change an index's projection, and CloudFormation adds or drops
 * one index per update (LEGACY_PROJECT_INDEX, docs/DEPLOYING.md#upgrading).
 */
export const PROJECT_INDEX = 'byProjectSummary';
/** The index of every attribute, which tables deployed before byProjectSummary have. */
export const LEGACY_PROJECT_INDEX = 'byProject';
/**
 * A project's RUNNING sessions only (listRunning, the sweeper): a sparse index keyed on
 * RUNNING_PROJECT, which a session item carries from its create until the write that closes it,
 * so a read of it costs what is running, never the history.
 */
export const RUNNING_INDEX = 'byProjectRunning';
/** The running index's key: the project id, on a RUNNING session item only (every close REMOVEs it). */
export const RUNNING_PROJECT = 'runningProjectId';
export const RESULT_MAX_CHARS = 2_000;

export const SESSION_STATUSES = ['RUNNING', 'COMPLETED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const;
export type SessionStatus = (typeof SESSION_STATUSES)[number];
export type FinalStatus = Exclude<SessionStatus, 'RUNNING'>;

export function sessionPk(sessionId: string): string {
  return `SESSION#${sessionId}`;
}


/** What a finished Claude run adds to its session; RecordUsage writes exactly this. */
export interface RunOutcome {
  /** ABORTED only for a run stopped because its execution ended (execution-watch.ts). */
  status: 'COMPLETED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';
  endedAt: string;
  claudeSessionId: string | null;
  usage: Usage;
  numTurns: number;
  totalCostUsd: number;
  durationMs: number;
  /** The usage split by model; `usage` is its total. */
  modelUsage: UsageByModel;
  /** Who served the model: `anthropic` or `bedrock`. */
  provider: string;
  /** The model the run was pinned to (a Bedrock model id, inference profile or application inference profile ARN), if pinned. */
  model: string | null;
  stopReason: string | null;
  result: string | null;
  error: string | null;
  cause: string | null;
  /** Runs of the CLI this session took (more than 1 after a transient API failure was retried). */
  attempts: number;
  /** The repository the session worked on, and the branch it pushed (sessions with a workspace). */
  workspace?: WorkspaceRecord | null;
}

/** What the session record keeps of its workspace. */
export interface WorkspaceRecord {
  /** The repository, credentials stripped. */
  repo: string;
  ref: string | null;
  baseCommit: string;
  /** The branch pushed, and its commit; both null when Claude changed nothing. */
  branch: string | null;
  commit: string | null;
  filesChanged: number;
  insertions: number;
  deletions: number;
}

/** The session as users see it: `show --json`, `GET /sessions/{id}`, the workflow's output. */
export interface SessionRecord {
  sessionId: string;
  projectId: string;
  taskId: string | null;
  milestoneId: string | null;
  mode: string;
  trigger: string;
  runtime: string;
  status: SessionStatus;
  startedAt: string;
  endedAt: string | null;
  claudeSessionId: string | null;
  usage: Usage;
  /** The usage split by the model that served it (subagents and side tasks included). */
  modelUsage: UsageByModel;
  /** Known once Claude ran: `anthropic` or `bedrock`. */
  provider: string | null;
  model: string | null;
  numTurns: number;
  totalCostUsd: number;
  durationMs: number;
  stopReason: string | null;
  result: string | null;
  error: string | null;
  cause: string | null;
  attempts: number;
  workspace: WorkspaceRecord | null;
}

/**
 * A session as `list` shows it (the CLI's table, the sessions page, `GET /projects/{id}/sessions`):
 * the record without the reply and the error's cause, which may run to kilobytes. Read one
 * session for them (`get`).
 */
export type SessionSummary = Omit<SessionRecord, 'result' | 'cause'>;

/**
 * What the project index holds besides its keys (`projectId`, `startedAt`) and the table's: the
 * attributes of a SessionSummary, and the execution the sweeper asks about. An item there is a few
 * hundred bytes whatever the reply, so a page of 50 costs a few read units, not 35.
 */
export const SESSION_SUMMARY_ATTRIBUTES = [
  'sessionId', 'taskId', 'milestoneId', 'mode', 'trigger', 'runtime', 'status', 'endedAt', 'claudeSessionId', 'usage', 'modelUsage',
  'provider', 'model', 'numTurns', 'totalCostUsd', 'durationMs', 'stopReason', 'error', 'attempts', 'workspace', 'executionArn',
] as const;

export type SessionItem = Record<string, unknown>;

/** The item CreateSession puts: RUNNING, zero usage, the prompt's hash and length only. */
export function toSessionItem(start: SessionStart): SessionItem {
  const item: SessionItem = {
    pk: sessionPk(start.sessionId),
    sk: SESSION_SK,
    sessionId: start.sessionId,
    projectId: start.projectId,
    mode: start.mode,
    trigger: start.trigger,
    runtime: start.runtime,
    status: 'RUNNING',
    [RUNNING_PROJECT]: start.projectId,
    startedAt: start.startedAt,
    executionArn: start.executionArn,
    promptSha256: start.promptSha256,
    promptChars: start.promptChars,
    usage: zeroUsage(),
    numTurns: 0,
    totalCostUsd: 0,
    durationMs: 0,
    // A milestone task speaks in the milestone's conversation; a fresh one in its own.
    claudeSessionId: start.milestoneId ?? start.sessionId,
  };
  for (const key of ['taskId', 'milestoneId', 'maxTurns', 'maxBudgetUsd', 'timeoutSeconds', 'retainUntil'] as const) {
    if (start[key] !== undefined) item[key] = start[key];
  }
  return item;
}

export const CREATE_CONDITION = 'attribute_not_exists(pk)';

// Every close is conditional on RUNNING: a late or repeated close (runner, Catch, reaper)
// can neither overwrite a final state nor record usage twice.
export const RUNNING_CONDITION = '#status = :running';

/**
 * The attribute DynamoDB's TTL reads (SessionTable's timeToLiveAttribute): set by every close, to the
 * session's `retainUntil` (its start and the deployment's sessionRetentionDays) or null, which never
 * expires. Only a closed session item has it: a RUNNING one, the totals and the registry never do.
 */
export const EXPIRES_AT = 'expiresAt';

/** When a closed session's item expires, in epoch seconds: `days` after it started; null without retention. */
export function sessionRetainUntil(startedAt: string, days: number | undefined): number | null {
  if (!days) return null;
  return Math.floor(Date.parse(startedAt) / 1000) + days * 86_400;
}

export const CLOSE_UPDATE =
  'SET #status = :status, endedAt = :endedAt, claudeSessionId = :claudeSessionId, #usage = :usage, ' +
  'numTurns = :numTurns, totalCostUsd = :totalCostUsd, durationMs = :durationMs, modelUsage = :modelUsage, provider = :provider, model = :model, ' +
  `stopReason = :stopReason, #result = :result, #error = :error, #cause = :cause, attempts = :attempts, workspace = :workspace, ${EXPIRES_AT} = :expiresAt REMOVE ${RUNNING_PROJECT}`;

/** Between two attempts: what the attempts so far spent, set (not added), so a repeat changes nothing. */
export const RECORD_ATTEMPT_UPDATE = 'SET #usage = :usage, modelUsage = :modelUsage, numTurns = :numTurns, totalCostUsd = :totalCostUsd, durationMs = :durationMs, attempts = :attempts';
export const RECORD_ATTEMPT_NAMES = { '#status': 'status', '#usage': 'usage' };
/**
 * Each attempt's spend is recorded once: the write also counts it into the project's totals, so a
 * repeat (a retried write whose answer was lost) is refused by the attempts it already set.
 */
export const RECORD_ATTEMPT_CONDITION = '#status = :running AND attribute_not_exists(spendRecordedAfterStop) AND (attribute_not_exists(attempts) OR attempts < :attempts)';

/**
 * The close with a run's outcome: RUNNING, and no stopped run's spend recorded on it. Each write of
 * spend SETs the sum of the attempts and counts its own attempt into the project's totals, so no two
 * may both write the last attempt: the outcome's close and a stopped run's record exclude each other
 * (RECORD_STOPPED_CONDITION refuses a session the outcome closed: it has a `result`).
 */
export const CLOSE_CONDITION = '#status = :running AND attribute_not_exists(spendRecordedAfterStop)';

export const CLOSE_FAILED_UPDATE = `SET #status = :status, endedAt = :endedAt, #error = :error, #cause = :cause, ${EXPIRES_AT} = :expiresAt REMOVE ${RUNNING_PROJECT}`;

/**
 * A run whose execution ended under it (an abort, an execution timeout: AWS stops no running task):
 * the runner stops Claude and writes what it spent. It closes nothing: the close (and the slot and
 * lease with it) is the reaper's, or the sweeper's when the event is lost, and their close writes no
 * usage. The spend is SET, never added, so whichever comes first it is counted once. Conditional on
 * this execution's session, and never on a COMPLETED one.
 */
export const RECORD_STOPPED_UPDATE =
  'SET #usage = :usage, modelUsage = :modelUsage, numTurns = :numTurns, totalCostUsd = :totalCostUsd, durationMs = :durationMs, ' +
  'claudeSessionId = :claudeSessionId, provider = :provider, model = :model, attempts = :attempts, spendRecordedAfterStop = :true';
/**
 * One Claude per attempt: before it starts Claude, a runner claims its attempt on the session. Step
 * Functions retries RunClaude on Lambda service errors that may arrive while the first invocation
 * still runs; the second invocation then finds the attempt claimed by another and starts nothing.
 * The same invocation may claim again (idempotent); a later attempt supersedes an earlier one.
 */
export const CLAIM_ATTEMPT_UPDATE = 'SET attemptClaim = :claim';
export const CLAIM_ATTEMPT_CONDITION =
  'executionArn = :executionArn AND #status = :running AND (attribute_not_exists(attemptClaim) OR attemptClaim.attempt < :attempt OR attemptClaim.invocation = :invocation)';
export const CLAIM_ATTEMPT_NAMES = { '#status': 'status' };

/** Once per session (a runner whose execution ended stops once): the spend it adds to the project's totals is counted once. */
export const RECORD_STOPPED_CONDITION =
  'executionArn = :executionArn AND #status <> :completed AND attribute_not_exists(spendRecordedAfterStop) AND attribute_not_exists(#result)';
export const RECORD_STOPPED_NAMES = { '#status': 'status', '#usage': 'usage', '#result': 'result' };

export const CLOSE_NAMES = { '#status': 'status', '#usage': 'usage', '#result': 'result', '#error': 'error', '#cause': 'cause' };
export const CLOSE_FAILED_NAMES = { '#status': 'status', '#error': 'error', '#cause': 'cause' };

/**
 * The write contract of the definition: which values its update expressions take from the runner.
 * Kept for executions in flight across a future deploy: an execution keeps the definition it
 * started with while the runner gets new code, and DynamoDB refuses a value its expression does not
 * use, so the definition tells the runner (RunClaude's `contract`, the task's RUNNER_CONTRACT) which
 * values to answer with. The change that alters an expression raises it, and the runner answers the
 * one before (forContract): 3 added the close's TTL (`:expiresAt`, sessionRetentionDays)
 * (docs/ARCHITECTURE.md#the-write-contract).
 */
export const RUNNER_CONTRACT = 3;

type ContractUpdate = 'close' | 'attempt' | 'milestone';

/** Placeholders each contract added to each update, left out for an execution of an earlier one. */
const ADDED_IN_CONTRACT: Record<number, Partial<Record<ContractUpdate, readonly string[]>>> = {
  3: { close: [':expiresAt'] },
};

export function forContract(values: Record<string, unknown>, contract: number, update: ContractUpdate): Record<string, unknown> {
  const dropped = Object.entries(ADDED_IN_CONTRACT).filter(([added]) => Number(added) > contract).flatMap(([, byUpdate]) => byUpdate[update] ?? []);
  if (!dropped.length) return values;
  return Object.fromEntries(Object.entries(values).filter(([key]) => !dropped.includes(key)));
}

/**
 * The values of CLOSE_UPDATE for one outcome, `:running` included for the condition; `retainUntil`
 * the session's (SessionStart.retainUntil), null: it never expires.
 */
export function closeValues(outcome: RunOutcome, retainUntil: number | null = null): Record<string, unknown> {
  return {
    ':expiresAt': retainUntil,
    ':running': 'RUNNING',
    ':status': outcome.status,
    ':endedAt': outcome.endedAt,
    ':claudeSessionId': outcome.claudeSessionId,
    ':usage': outcome.usage,
    ':numTurns': outcome.numTurns,
    ':totalCostUsd': outcome.totalCostUsd,
    ':durationMs': outcome.durationMs,
    ':modelUsage': outcome.modelUsage,
    ':provider': outcome.provider,
    ':model': outcome.model,
    ':stopReason': outcome.stopReason,
    ':result': outcome.result,
    ':error': outcome.error,
    ':cause': outcome.cause,
    ':attempts': outcome.attempts,
    ':workspace': outcome.workspace ?? null,
  };
}

export function toSessionRecord(item: SessionItem): SessionRecord {
  const str = (key: string): string | null => (typeof item[key] === 'string' ? (item[key] as string) : null);
  const num = (key: string): number => (typeof item[key] === 'number' ? (item[key] as number) : 0);
  const usage = (item.usage ?? {}) as Partial<Usage>;
  return {
    sessionId: String(item.sessionId),
    projectId: String(item.projectId),
    taskId: str('taskId'),
    milestoneId: str('milestoneId'),
    mode: String(item.mode),
    trigger: String(item.trigger),
    runtime: String(item.runtime),
    status: item.status as SessionStatus,
    startedAt: String(item.startedAt),
    endedAt: str('endedAt'),
    claudeSessionId: str('claudeSessionId'),
    usage: {
      inputTokens: usage.inputTokens ?? 0,
      outputTokens: usage.outputTokens ?? 0,
      cacheReadInputTokens: usage.cacheReadInputTokens ?? 0,
      cacheCreationInputTokens: usage.cacheCreationInputTokens ?? 0,
    },
    modelUsage: modelUsageOf(item.modelUsage),
    provider: str('provider'),
    model: str('model'),
    numTurns: num('numTurns'),
    totalCostUsd: num('totalCostUsd'),
    durationMs: num('durationMs'),
    stopReason: str('stopReason'),
    result: str('result'),
    error: str('error'),
    cause: readableCause(str('cause')),
    attempts: typeof item.attempts === 'number' ? item.attempts : 1,
    workspace: (item.workspace as WorkspaceRecord | undefined) ?? null,
  };
}

/** The stored split, each model's counts complete (a session closed without an outcome has none). */
function modelUsageOf(raw: unknown): UsageByModel {
  if (!raw || typeof raw !== 'object') return {};
  const n = (v: unknown) => (typeof v === 'number' ? v : 0);
  return Object.fromEntries(Object.entries(raw as Record<string, Record<string, unknown>>).map(([model, u]) => [model, {
    inputTokens: n(u.inputTokens),
    outputTokens: n(u.outputTokens),
    cacheReadInputTokens: n(u.cacheReadInputTokens),
    cacheCreationInputTokens: n(u.cacheCreationInputTokens),
    costUsd: n(u.costUsd),
  }]));
}

/** The summary of an item as the project index returns it (no `result`, no `cause`). */
export function toSessionSummary(item: SessionItem): SessionSummary {
  const { result: _result, cause: _cause, ...summary } = toSessionRecord(item);
  return summary;
}

/**
 * A Lambda error reaches Step Functions' Catch with a JSON Cause (errorType,
 * errorMessage, stack trace). Users get the message; the trace stays in the logs.
 */
export function readableCause(cause: string | null): string | null {
  if (!cause || !cause.startsWith('{')) return cause;
  try {
    const parsed = JSON.parse(cause) as { errorMessage?: unknown };
    return typeof parsed.errorMessage === 'string' ? parsed.errorMessage : cause;
  } catch {
    return cause;
  }
}

/** The record a run produces, from its start and its outcome. */
export function toClosedRecord(start: SessionStart, outcome: RunOutcome): SessionRecord {
  const { endedAt, ...rest } = outcome;
  return toSessionRecord({ ...toSessionItem(start), ...rest, endedAt });
}
