import { GetItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import type { PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { v4 as uuidv4 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { publishSessionChanges } from '../lib/sessions/session-publisher.js';
import { EVENT_SOURCE, SESSION_CLOSED, SESSION_USAGE_RECORDED } from '../lib/sessions/session-events.js';
import { RECORD_STOPPED_UPDATE } from '../lib/sessions/session-item.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { waitFor } from './support/wait-for.js';

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

/**
 * Holds the runner's record of a stopped run (RECORD_STOPPED_UPDATE) at the SDK boundary until
 * released, so the reaper's close is written first, as on AWS when the reaper's event comes before
 * the runner notices.
 */
function holdStoppedRunRecords() {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const held = { waiting: 0, release, remove: () => void env.runtime.dynamodb.client.middlewareStack.remove('holdStoppedRuns') };
  env.runtime.dynamodb.client.middlewareStack.add(
    (next) => async (args) => {
      const items = (args.input as { TransactItems?: { Update?: { UpdateExpression?: string } }[] }).TransactItems ?? [];
      if (items.some((item) => item.Update?.UpdateExpression === RECORD_STOPPED_UPDATE)) {
        held.waiting += 1;
        await gate;
      }
      return next(args);
    },
    { step: 'initialize', name: 'holdStoppedRuns' },
  );
  return held;
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

  it('emits "Session Usage Recorded" with what a stopped run spent when it is written after the reaper\'s close', async () => {
    // Prepare: a session aborted while the stand-in streams; its runner's record of the spend held until the reaper has closed it
    env.anthropic.respondWith({ kind: 'stall', usage: { input_tokens: 1_187, output_tokens: 0 } });
    const held = holdStoppedRunRecords();
    try {
      const sessionId = uuidv4();
      const execution = env.runtime.startExecution({ projectId: 'ev', prompt: 'stopped', sessionId }, sessionId);
      await waitFor(async () => (await rawItem(sessionId)) !== undefined && env.anthropic.messageRequests.length > 0, 'Claude called');
      const running = (await rawItem(sessionId))!;
      execution.abort();
      await execution.outcome; // the reaper's close (no usage) is written by now
      await waitFor(async () => held.waiting > 0, 'the runner recording its spend'); // it has stopped Claude
      const closed = (await rawItem(sessionId))!;
      held.release();
      await waitFor(async () => (await rawItem(sessionId))?.spendRecordedAfterStop?.BOOL === true, 'the spend recorded');
      const recorded = (await rawItem(sessionId))!;
      const records = [
        { eventName: 'INSERT', dynamodb: { NewImage: running, SequenceNumber: '1' } },
        { eventName: 'MODIFY', dynamodb: { OldImage: running, NewImage: closed, SequenceNumber: '2' } },
        { eventName: 'MODIFY', dynamodb: { OldImage: closed, NewImage: recorded, SequenceNumber: '3' } },
      ];
      const events = recordingEventBridge();
      const metrics: [string, number, Record<string, string>?][] = [];
      // Act
      const out = await publishSessionChanges(records, { events: events as never, busName: 'b', metric: (n, _u, v, d) => metrics.push([n, v, d]) });
      // Assess: the close said ABORTED with nothing spent; the second event carries the spend, and the token metrics add up to it
      expect(out).toEqual({ published: 2, failed: [] });
      const [close, usage] = events.sent.flatMap((c) => c.Entries ?? []);
      expect(close).toMatchObject({ DetailType: SESSION_CLOSED });
      expect(JSON.parse(close!.Detail!)).toMatchObject({ sessionId, status: 'ABORTED', usage: { inputTokens: 0 } });
      expect(usage).toMatchObject({ Source: EVENT_SOURCE, DetailType: SESSION_USAGE_RECORDED, EventBusName: 'b' });
      const detail = JSON.parse(usage!.Detail!);
      expect(detail).toMatchObject({ sessionId, projectId: 'ev', status: 'ABORTED', usage: { inputTokens: 1_187 }, added: { usage: { inputTokens: 1_187 } } });
      expect(detail.added.totalCostUsd).toBe(detail.totalCostUsd);
      expect(detail).not.toHaveProperty('result');
      const summed = (name: string) => metrics.filter(([n, , d]) => n === name && !d).reduce((sum, [, v]) => sum + v, 0);
      expect(summed('InputTokens')).toBe(1_187);
      expect(metrics.filter(([n]) => n === 'SessionsAborted')).toHaveLength(1);
      // A repeat of that record (the stream retrying its batch) is the same event, deduped on sessionId; a later write emits nothing.
      const later = { eventName: 'MODIFY', dynamodb: { OldImage: recorded, NewImage: recorded, SequenceNumber: '4' } };
      expect(await publishSessionChanges([later], { events: recordingEventBridge() as never, busName: 'b', metric: () => {} })).toEqual({ published: 0, failed: [] });
    } finally {
      held.remove();
    }
  }, 60_000);

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
