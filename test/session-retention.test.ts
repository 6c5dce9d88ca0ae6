import { GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { PROJECT_REGISTRY_PK } from '../lib/sessions/project-registry.js';
import { totalsPk } from '../lib/sessions/project-totals.js';
import { sessionPk, SESSION_SK } from '../lib/sessions/session-item.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { waitFor } from './support/wait-for.js';

let env: TestRuntime;
useTestRuntime((started) => (env = started), {}, { policy: { sessionRetentionDays: 7 } });

const DAYS_7 = 7 * 86_400;

async function item(pk: string, sk: string): Promise<Record<string, unknown> | undefined> {
  const { Item } = await env.runtime.dynamodb.documentClient.send(new GetCommand({ TableName: env.runtime.dynamodb.tableName, Key: { pk, sk }, ConsistentRead: true }));
  return Item;
}

/** What DynamoDB's TTL would read on a session's item, and when the session started. */
async function expiryOf(sessionId: string): Promise<{ expiresAt: unknown; started: number; status: unknown }> {
  const session = await item(sessionPk(sessionId), SESSION_SK);
  return { expiresAt: session?.expiresAt, started: Math.floor(Date.parse(String(session?.startedAt)) / 1000), status: session?.status };
}

describe('sessionRetentionDays: a closed session item expires by TTL, its project\'s totals never', () => {
  it('every close sets the TTL attribute to the start plus the days: the outcome\'s, the Catch branch\'s and the reaper\'s', async () => {
    // Prepare and Act: a completed run (RecordUsage), a clone that fails before Claude (CloseFailed), an abort (the reaper)
    const completed = await env.runtime.run({ prompt: 'hi', projectId: 'retained' });
    const caught = await env.runtime.run({ prompt: 'hi', projectId: 'retained', workspace: { repo: '/nonexistent/repo.git' } });
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 5, output_tokens: 1 } });
    const abortedId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'long job', projectId: 'retained', sessionId: abortedId }, abortedId);
    await waitFor(async () => env.anthropic.openStreams > 0 || undefined); // this session's Claude, streaming
    execution.abort();
    expect((await execution.outcome).status).toBe('ABORTED');
    // Assess
    for (const [sessionId, status] of [[completed.session!.sessionId, 'COMPLETED'], [caught.session!.sessionId, 'FAILED'], [abortedId, 'ABORTED']] as const) {
      const { expiresAt, started, status: stored } = await expiryOf(sessionId);
      expect(stored).toBe(status);
      expect(expiresAt).toBe(started + DAYS_7);
    }
    expect(caught.session).toMatchObject({ error: 'WorkspaceCloneError' });
  });

  it('a RUNNING session, the project\'s totals and its registry item carry no TTL attribute', async () => {
    // Prepare
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 5, output_tokens: 1 } });
    const sessionId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'long job', projectId: 'retained-running', sessionId }, sessionId);
    await waitFor(async () => (await item(sessionPk(sessionId), SESSION_SK))?.status === 'RUNNING' || undefined);
    // Act
    const running = await expiryOf(sessionId);
    execution.abort();
    await execution.outcome;
    const { Items: totals = [] } = await env.runtime.dynamodb.documentClient.send(new QueryCommand({
      TableName: env.runtime.dynamodb.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': totalsPk('retained-running') }, ConsistentRead: true,
    }));
    const registry = await item(PROJECT_REGISTRY_PK, 'PROJECT#retained-running');
    // Assess
    expect(running).toMatchObject({ status: 'RUNNING', expiresAt: undefined });
    expect(totals.length).toBe(3); // ALL, the day and the project's sessions of no milestone
    for (const t of totals) expect(t).not.toHaveProperty('expiresAt');
    expect(registry).toMatchObject({ projectId: 'retained-running' });
    expect(registry).not.toHaveProperty('expiresAt');
  });
});
