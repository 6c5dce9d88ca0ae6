import { PutEventsCommand, type EventBridgeClient } from '@aws-sdk/client-eventbridge';
import {
  EVENT_SOURCE, METRICS, SESSION_CLOSED, SESSION_USAGE_RECORDED, errorClass, sessionChange, sessionClosedDetail, sessionMetrics,
  type SessionUsageRecordedDetail, type StreamRecord,
} from './session-events.js';

export interface PublisherDeps {
  events: Pick<EventBridgeClient, 'send'>;
  busName: string;
  metric: (name: string, unit: 'Count' | 'Milliseconds' | 'None', value: number, dimensions?: Record<string, string>) => void;
  log?: (message: string, fields: Record<string, unknown>) => void;
}

/**
 * Turns stream records into "Session Closed" events (and "Session Usage Recorded" for a stopped
 * run's spend written after its close) and metrics. Returns the sequence
 * numbers of records whose event could not be put, for the stream to retry from there
 * (at least once: a consumer may see an event twice, and dedupes on detail.sessionId).
 */
export async function publishSessionChanges(
  records: (StreamRecord & { dynamodb?: { SequenceNumber?: string } })[],
  deps: PublisherDeps,
): Promise<{ published: number; failed: string[] }> {
  const entries: { sequence: string; entry: NonNullable<ConstructorParameters<typeof PutEventsCommand>[0]['Entries']>[number] }[] = [];
  for (const record of records) {
    const change = sessionChange(record);
    if (!change) continue;
    for (const m of sessionMetrics(change)) deps.metric(m.name, m.unit, m.value);
    if (change.kind === 'started') continue;
    const s = change.session;
    const sequence = record.dynamodb?.SequenceNumber ?? s.sessionId;
    if (change.kind === 'spendRecorded') {
      deps.metric(METRICS.costUsd, 'None', change.added.totalCostUsd, { projectId: s.projectId });
      deps.log?.('session spend recorded after its close', { sessionId: s.sessionId, projectId: s.projectId, status: s.status, addedCostUsd: change.added.totalCostUsd });
      const detail: SessionUsageRecordedDetail = { ...sessionClosedDetail(s), added: change.added };
      entries.push({ sequence, entry: { Source: EVENT_SOURCE, DetailType: SESSION_USAGE_RECORDED, Detail: JSON.stringify(detail), EventBusName: deps.busName } });
      continue;
    }
    deps.metric(METRICS.costUsd, 'None', s.totalCostUsd, { projectId: s.projectId });
    const failure = errorClass(s);
    if (failure) deps.metric(METRICS.failuresByErrorClass, 'Count', 1, { errorClass: failure });
    deps.log?.('session closed', { sessionId: s.sessionId, projectId: s.projectId, status: s.status, totalCostUsd: s.totalCostUsd });
    entries.push({
      sequence,
      entry: { Source: EVENT_SOURCE, DetailType: SESSION_CLOSED, Detail: JSON.stringify(sessionClosedDetail(s)), EventBusName: deps.busName },
    });
  }
  const failed: string[] = [];
  // PutEvents takes 10 entries at a time; a failed entry fails its record and every later one (stream order).
  for (let i = 0; i < entries.length; i += 10) {
    const chunk = entries.slice(i, i + 10);
    try {
      const out = await deps.events.send(new PutEventsCommand({ Entries: chunk.map((c) => c.entry) }));
      const firstFailed = (out.Entries ?? []).findIndex((e) => e.ErrorCode);
      if (firstFailed >= 0) {
        failed.push(...entries.slice(i + firstFailed).map((c) => c.sequence));
        break;
      }
    } catch {
      failed.push(...entries.slice(i).map((c) => c.sequence));
      break;
    }
  }
  return { published: entries.length - failed.length, failed: failed.slice(0, 1) };
}
