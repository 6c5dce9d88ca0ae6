import { GetItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import type { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { v4 as uuidv4 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { publishSessionChanges } from '../lib/sessions/session-publisher.js';
import { EVENT_SOURCE, SESSION_CLOSED } from '../lib/sessions/session-events.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
useTestRuntime((started) => (env = started));

/** The raw item, as a stream record's image holds it. */
async function rawItem(sessionId: string): Promise<Record<string, AttributeValue> | undefined> {
  const { Item } = await env.runtime.dynamodb.client.send(
    new GetItemCommand({ TableName: env.runtime.dynamodb.tableName, Key: { pk: { S: `SESSION#${sessionId}` }, sk: { S: 'SESSION' } }, ConsistentRead: true }),
  );
  return Item;
}

/** Runs a session and returns the stream records its two writes make: the insert, and the close. */
async function streamOf(input: Record<string, unknown>, during?: (sessionId: string) => void) {
  const sessionId = uuidv4();
  const execution = env.runtime.startExecution({ projectId: 'ev', ...input, sessionId }, sessionId);
  let running: Record<string, AttributeValue> | undefined;
  for (let i = 0; i < 400 && !running; i++) {
    running = await rawItem(sessionId);
    if (!running) await new Promise((r) => setTimeout(r, 10));
  }
  during?.(sessionId);
  await execution.outcome;
  const closed = (await rawItem(sessionId))!;
  return {
    sessionId,
    records: [
      { eventName: 'INSERT', dynamodb: { NewImage: running, SequenceNumber: '1' } },
      { eventName: 'MODIFY', dynamodb: { OldImage: running, NewImage: closed, SequenceNumber: '2' } },
    ],
  };
}

/** EventBridge at its boundary (no emulator here): records what PutEvents was sent. */
function recordingEventBridge(failWith?: string) {
  const sent: PutEventsCommand['input'][] = [];
  return {
    sent,
    send: async (command: PutEventsCommand) => {
      sent.push(command.input);
      return { Entries: (command.input.Entries ?? []).map(() => (failWith ? { ErrorCode: failWith } : { EventId: uuidv4() })) };
    },
  };
}

describe('"Session Closed" events and metrics from the table stream', () => {
  it('emits one event per close with the record but not the reply, and the session metrics', async () => {
    // Prepare
    env.anthropic.respondWith({ kind: 'text', text: 'secret reply text', usage: { input_tokens: 50, output_tokens: 5 } });
    const { sessionId, records } = await streamOf({ prompt: 'hello' });
    const events = recordingEventBridge();
    const metrics: [string, number, Record<string, string>?][] = [];
    // Act
    const out = await publishSessionChanges(records, { events: events as never, busName: 'default', metric: (n, _u, v, d) => metrics.push([n, v, d]) });
    // Assess
    expect(out).toEqual({ published: 1, failed: [] });
    const entry = events.sent[0]!.Entries![0]!;
    expect(entry).toMatchObject({ Source: EVENT_SOURCE, DetailType: SESSION_CLOSED, EventBusName: 'default' });
    const detail = JSON.parse(entry.Detail!);
    expect(detail).toMatchObject({ sessionId, projectId: 'ev', status: 'COMPLETED', usage: { inputTokens: 50, outputTokens: 5 } });
    expect(detail).not.toHaveProperty('result');
    expect(entry.Detail).not.toContain('secret reply text');
    expect(metrics).toEqual(expect.arrayContaining([
      ['SessionsStarted', 1, undefined], ['SessionsCompleted', 1, undefined], ['InputTokens', 50, undefined], ['OutputTokens', 5, undefined],
      ['CostUsd', detail.totalCostUsd, { projectId: 'ev' }],
    ]));
  });

  it('emits the close the reaper writes (an aborted session), with its failure class', async () => {
    env.anthropic.respondWith({ kind: 'stall' });
    const { records } = await streamOf({ prompt: 'stuck' }, (id) => {
      void (async () => {
        for (let i = 0; i < 400 && env.anthropic.messageRequests.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
        env.runtime.startExecution({}, id).abort(); // the same running execution, by name
      })();
    });
    const events = recordingEventBridge();
    const metrics: [string, number, Record<string, string>?][] = [];
    await publishSessionChanges(records, { events: events as never, busName: 'b', metric: (n, _u, v, d) => metrics.push([n, v, d]) });
    expect(JSON.parse(events.sent[0]!.Entries![0]!.Detail!)).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted' });
    expect(metrics).toEqual(expect.arrayContaining([['SessionsAborted', 1, undefined], ['SessionFailures', 1, { errorClass: 'ExecutionAborted' }]]));
  });

  it('ignores writes that are not a close, and reports a failed put so the stream retries it', async () => {
    const { records } = await streamOf({ prompt: 'again' });
    const [insert, close] = records;
    const finalAgain = { eventName: 'MODIFY', dynamodb: { OldImage: close!.dynamodb.NewImage, NewImage: close!.dynamodb.NewImage, SequenceNumber: '3' } };
    const milestone = { eventName: 'INSERT', dynamodb: { NewImage: { pk: { S: 'MILESTONE#x' }, sk: { S: 'MILESTONE' } }, SequenceNumber: '4' } };
    const ok = recordingEventBridge();
    expect(await publishSessionChanges([insert!, finalAgain, milestone], { events: ok as never, busName: 'b', metric: () => {} })).toEqual({ published: 0, failed: [] });
    expect(ok.sent).toEqual([]);
    const failing = recordingEventBridge('ThrottlingException');
    expect(await publishSessionChanges(records, { events: failing as never, busName: 'b', metric: () => {} })).toEqual({ published: 0, failed: ['2'] });
  });
});
