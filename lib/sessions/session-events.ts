import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { SESSION_SK, toSessionRecord, type FinalStatus, type SessionRecord } from './session-item.js';

/** EventBridge source and detail type of the event every closed session emits. */
export const EVENT_SOURCE = 'claude-sessions';
export const SESSION_CLOSED = 'Session Closed';

/** The event's detail: the session record without Claude's reply (it can be long, and it is the user's data). */
export type SessionClosedDetail = Omit<SessionRecord, 'result'>;

export function sessionClosedDetail(record: SessionRecord): SessionClosedDetail {
  const { result: _result, ...detail } = record;
  return detail;
}

/** What a change to the table means for the outside: a session started, or one closed. */
export type SessionChange = { kind: 'started'; session: SessionRecord } | { kind: 'closed'; session: SessionRecord & { status: FinalStatus } };

/** The fields of a DynamoDB Streams record this reads (NEW_AND_OLD_IMAGES). */
export interface StreamRecord {
  eventName?: string;
  dynamodb?: { OldImage?: Record<string, unknown>; NewImage?: Record<string, unknown> };
}

/**
 * Reads a stream record of the session table. Only the write out of RUNNING is a close, so a
 * close repeated by the reaper (a conditional write that changes nothing) emits nothing, and
 * every path that closes a session (RecordUsage, CloseFailed, the reaper) emits exactly once.
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
  return undefined;
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
  const s = change.session;
  return [
    { name: STATUS_METRIC[s.status], unit: 'Count', value: 1 },
    { name: METRICS.inputTokens, unit: 'Count', value: s.usage.inputTokens },
    { name: METRICS.outputTokens, unit: 'Count', value: s.usage.outputTokens },
    { name: METRICS.cacheReadTokens, unit: 'Count', value: s.usage.cacheReadInputTokens },
    { name: METRICS.cacheWriteTokens, unit: 'Count', value: s.usage.cacheCreationInputTokens },
    { name: METRICS.costUsd, unit: 'None', value: s.totalCostUsd },
    { name: METRICS.durationMs, unit: 'Milliseconds', value: s.durationMs },
  ];
}

/** Names a failure for the "failures by error class" graph: the error's name, bounded in length. */
export function errorClass(session: SessionRecord): string | undefined {
  if (session.status === 'COMPLETED') return undefined;
  return (session.error ?? session.status).slice(0, 64);
}
