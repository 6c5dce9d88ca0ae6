import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { SESSION_SK, toSessionRecord, type FinalStatus, type SessionRecord } from './session-item.js';
import { roundUsd, type Usage } from './usage.js';

/** EventBridge source and detail type of the event every closed session emits. */
export const EVENT_SOURCE = 'claude-sessions';
export const SESSION_CLOSED = 'Session Closed';
/**
 * The detail type of the event a stopped run's spend emits when it is written after the close
 * (the reaper closed the session first, with no usage): without it that spend reaches no consumer.
 */
export const SESSION_USAGE_RECORDED = 'Session Usage Recorded';

/** The event's detail: the session record without Claude's reply (it can be long, and it is the user's data). */
export type SessionClosedDetail = Omit<SessionRecord, 'result'>;

export function sessionClosedDetail(record: SessionRecord): SessionClosedDetail {
  const { result: _result, ...detail } = record;
  return detail;
}

/** What one write added to a session's spend: the new totals less the old (a SET replaces the sum of the attempts). */
export interface SpendAdded {
  usage: Usage;
  totalCostUsd: number;
}

/** The detail of "Session Usage Recorded": the record, its spend now complete, and what this write added to it. */
export type SessionUsageRecordedDetail = SessionClosedDetail & { added: SpendAdded };

/**
 * What a change to the table means for the outside: a session started, one closed, or a closed
 * session given the spend of a run its execution ended under (`spendRecorded`).
 */
export type SessionChange =
  | { kind: 'started'; session: SessionRecord }
  | { kind: 'closed'; session: SessionRecord & { status: FinalStatus } }
  | { kind: 'spendRecorded'; session: SessionRecord & { status: FinalStatus }; added: SpendAdded };

/** The fields of a DynamoDB Streams record this reads (NEW_AND_OLD_IMAGES). */
export interface StreamRecord {
  eventName?: string;
  dynamodb?: { OldImage?: Record<string, unknown>; NewImage?: Record<string, unknown> };
}

/**
 * Reads a stream record of the session table. Only the write out of RUNNING is a close, so a
 * close repeated by the reaper (a conditional write that changes nothing) emits nothing, and
 * every path that closes a session (RecordUsage, CloseFailed, the reaper) emits exactly once.
 * A stopped run's spend (`recordStoppedRun`, once per session) written on a session already
 * closed is the one other change: the close carried none of it.
 */
export function sessionChange(record: StreamRecord): SessionChange | undefined {
  const image = (raw: Record<string, unknown> | undefined) => (raw ? unmarshall(raw as Record<string, AttributeValue>) : undefined);
  const before = image(record.dynamodb?.OldImage);
  const after = image(record.dynamodb?.NewImage);
  if (!after || after.sk !== SESSION_SK) return undefined;
  if (record.eventName === 'INSERT' && after.status === 'RUNNING') return { kind: 'started', session: toSessionRecord(after) };
  if (record.eventName === 'MODIFY' && before?.status === 'RUNNING' && after.status !== 'RUNNING') {
    return { kind: 'closed', session: toSessionRecord(after) as SessionRecord & { status: FinalStatus } };
  }
  if (record.eventName === 'MODIFY' && before && before.status !== 'RUNNING' && after.status !== 'RUNNING'
    && after.spendRecordedAfterStop === true && before.spendRecordedAfterStop !== true) {
    const [old, now] = [toSessionRecord(before), toSessionRecord(after) as SessionRecord & { status: FinalStatus }];
    return { kind: 'spendRecorded', session: now, added: spendAdded(old, now) };
  }
  return undefined;
}

function spendAdded(before: SessionRecord, after: SessionRecord): SpendAdded {
  const usage = Object.fromEntries(
    (Object.keys(after.usage) as (keyof Usage)[]).map((k) => [k, after.usage[k] - before.usage[k]]),
  ) as unknown as Usage;
  return { usage, totalCostUsd: roundUsd(after.totalCostUsd - before.totalCostUsd) };
}

export interface SessionMetric {
  name: string;
  unit: 'Count' | 'Milliseconds' | 'None';
  value: number;
}

/**
 * The metrics' namespace and names: the stream consumer (functions/events) puts them, the
 * dashboard and alarms (cdk/session-monitoring.ts) read them, so both take them from here.
 */
export const METRIC_NAMESPACE = 'ClaudeSessions';
/** The dimension Powertools Metrics adds to every figure the stream consumer puts. */
export const METRIC_SERVICE = 'claude-sessions-events';
export const METRICS = {
  started: 'SessionsStarted',
  completed: 'SessionsCompleted',
  failed: 'SessionsFailed',
  timedOut: 'SessionsTimedOut',
  aborted: 'SessionsAborted',
  inputTokens: 'InputTokens',
  outputTokens: 'OutputTokens',
  cacheReadTokens: 'CacheReadTokens',
  cacheWriteTokens: 'CacheWriteTokens',
  costUsd: 'CostUsd',
  durationMs: 'DurationMs',
  /** Per error class (dimension errorClass), in an EMF blob of its own. */
  failuresByErrorClass: 'SessionFailures',
} as const;

const STATUS_METRIC: Record<FinalStatus, string> = {
  COMPLETED: METRICS.completed,
  FAILED: METRICS.failed,
  TIMED_OUT: METRICS.timedOut,
  ABORTED: METRICS.aborted,
};

/** The CloudWatch figures of a change (cdk/session-monitoring.ts graphs them). */
export function sessionMetrics(change: SessionChange): SessionMetric[] {
  if (change.kind === 'started') return [{ name: METRICS.started, unit: 'Count', value: 1 }];
  // Spend recorded after the close: only what it added, so the sums over closes and these are the spend.
  if (change.kind === 'spendRecorded') return spendMetrics(change.added.usage, change.added.totalCostUsd);
  const s = change.session;
  return [
    { name: STATUS_METRIC[s.status], unit: 'Count', value: 1 },
    ...spendMetrics(s.usage, s.totalCostUsd),
    { name: METRICS.durationMs, unit: 'Milliseconds', value: s.durationMs },
  ];
}

function spendMetrics(usage: Usage, costUsd: number): SessionMetric[] {
  return [
    { name: METRICS.inputTokens, unit: 'Count', value: usage.inputTokens },
    { name: METRICS.outputTokens, unit: 'Count', value: usage.outputTokens },
    { name: METRICS.cacheReadTokens, unit: 'Count', value: usage.cacheReadInputTokens },
    { name: METRICS.cacheWriteTokens, unit: 'Count', value: usage.cacheCreationInputTokens },
    { name: METRICS.costUsd, unit: 'None', value: costUsd },
  ];
}

/** Names a failure for the "failures by error class" graph: the error's name, bounded in length. */
export function errorClass(session: SessionRecord): string | undefined {
  if (session.status === 'COMPLETED') return undefined;
  return (session.error ?? session.status).slice(0, 64);
}
