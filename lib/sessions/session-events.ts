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

const STATUS_METRIC: Record<FinalStatus, string> = {
  COMPLETED: 'SessionsCompleted',
  FAILED: 'SessionsFailed',
  TIMED_OUT: 'SessionsTimedOut',
  ABORTED: 'SessionsAborted',
};

/** The CloudWatch figures of a change (namespace ClaudeSessions; cdk/session-monitoring.ts graphs them). */
export function sessionMetrics(change: SessionChange): SessionMetric[] {
  if (change.kind === 'started') return [{ name: 'SessionsStarted', unit: 'Count', value: 1 }];
  const s = change.session;
  return [
    { name: STATUS_METRIC[s.status], unit: 'Count', value: 1 },
    { name: 'InputTokens', unit: 'Count', value: s.usage.inputTokens },
    { name: 'OutputTokens', unit: 'Count', value: s.usage.outputTokens },
    { name: 'CacheReadTokens', unit: 'Count', value: s.usage.cacheReadInputTokens },
    { name: 'CacheWriteTokens', unit: 'Count', value: s.usage.cacheCreationInputTokens },
    { name: 'CostUsd', unit: 'None', value: s.totalCostUsd },
    { name: 'DurationMs', unit: 'Milliseconds', value: s.durationMs },
  ];
}

/** Names a failure for the "failures by error class" graph: the error's name, bounded in length. */
export function errorClass(session: SessionRecord): string | undefined {
  if (session.status === 'COMPLETED') return undefined;
  return (session.error ?? session.status).slice(0, 64);
}
