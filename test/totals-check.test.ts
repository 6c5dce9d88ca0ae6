import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { loadWorkflowDefinition, type WorkflowDefinition } from '../lib/local/workflow-definition.js';
import { isAlive } from '../lib/local/state-lock.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { totalsDaySk, totalsPk, TOTALS_ALL_SK } from '../lib/sessions/project-totals.js';
import type { RunOutcome } from '../lib/sessions/session-item.js';
import { SessionRepository } from '../lib/sessions/session-repository.js';
import { cliEnvironment, engineFile, runCli, stopEngine } from './support/cli-process.js';
import { waitFor } from './support/wait-for.js';

let home: string;
let definition: WorkflowDefinition;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'claude-sessions-totals-'));
  definition = await loadWorkflowDefinition(join(process.cwd(), '.claude-sessions', 'cache'));
});
afterAll(async () => {
  await stopEngine(home);
});

function outcome(costUsd: number): RunOutcome {
  return {
    status: 'COMPLETED', endedAt: new Date().toISOString(), claudeSessionId: null,
    usage: { inputTokens: 40, outputTokens: 4, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
    numTurns: 1, totalCostUsd: costUsd, durationMs: 10, modelUsage: {}, provider: 'anthropic', model: null, stopReason: 'end_turn',
    result: 'ok', error: null, cause: null, attempts: 1,
  };
}

/** One more session counted on a project's totals item than its sessions hold: what a half-applied write would leave. */
async function countOneMore(db: LocalDynamoDb, projectId: string, sk: string): Promise<void> {
  await db.documentClient.send(new UpdateCommand({
    TableName: db.tableName, Key: { pk: totalsPk(projectId), sk }, UpdateExpression: 'ADD sessions :one', ExpressionAttributeValues: { ':one': 1 },
  }));
}

describe('claude-sessions totals check', () => {
  it('on the local state: exit 0 while the totals match the session items, 1 naming each figure once they differ', async () => {
    // Prepare
    const run = await runCli(['run', 'hello', '--project', 'tc-local'], cliEnvironment(home));
    expect(run.code).toBe(0);
    // Act
    const matching = await runCli(['totals', 'check'], cliEnvironment(home));
    // Assess
    expect(matching.stderr).toBe('');
    expect(matching).toMatchObject({ code: 0, stdout: 'tc-local: the totals match its 1 session(s)\n' });

    // Prepare: the engine gone, its state's totals moved by one session no item holds
    const engine = await engineFile(home);
    await stopEngine(home);
    await waitFor(async () => (engine && isAlive(engine.pid) ? undefined : true));
    const db = await LocalDynamoDb.start({ path: join(home, 'dynamodb'), table: definition.table });
    try {
      await countOneMore(db, 'tc-local', TOTALS_ALL_SK);
    } finally {
      await db.close();
    }
    // Act
    const drifted = await runCli(['totals', 'check', '--project', 'tc-local'], cliEnvironment(home));
    const asJson = await runCli(['totals', 'check', '--json'], cliEnvironment(home));
    // Assess
    expect(drifted.code).toBe(1);
    expect(drifted.stdout).toBe('tc-local: the totals differ from its 1 session(s)\n  ALL sessions: kept 2, derived 1\n');
    expect(asJson.code).toBe(1);
    expect(JSON.parse(asJson.stdout)).toEqual([{ projectId: 'tc-local', sessions: 1, drift: ['ALL sessions: kept 2, derived 1'] }]);
  });

  it('--table reads a deployed table with the AWS credentials of the environment; a bad --project is a usage error naming it', async () => {
    // Prepare: a table as a deployed stack names it, two projects' sessions written by the repository, one project's day item off by one
    const db = await LocalDynamoDb.start({ table: definition.table, tableName: 'ClaudeSessions-SessionsTable-1A2B3C' });
    const aws = {
      AWS_ENDPOINT_URL_DYNAMODB: db.endpoint, AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: db.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: db.credentials.secretAccessKey, AWS_SESSION_TOKEN: db.credentials.sessionToken!,
    };
    try {
      const repository = new SessionRepository(db.documentClient, db.tableName);
      let startedAt = '';
      for (const projectId of ['tc-deployed-a', 'tc-deployed-b']) {
        const { session } = prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4() }, { executionArn: `arn:test:${uuidv4()}` });
        await repository.create(session);
        await repository.close(session.sessionId, outcome(0.25));
        startedAt = session.startedAt;
      }
      await countOneMore(db, 'tc-deployed-b', totalsDaySk(startedAt));
      // Act
      const all = await runCli(['totals', 'check', '--table', db.tableName], cliEnvironment(home, aws));
      const one = await runCli(['totals', 'check', '--table', db.tableName, '--project', 'tc-deployed-a'], cliEnvironment(home, aws));
      const bad = await runCli(['totals', 'check', '--table', db.tableName, '--project', 'no/such'], cliEnvironment(home, aws));
      // Assess
      expect(all.code).toBe(1);
      expect(all.stdout).toBe([
        'tc-deployed-a: the totals match its 1 session(s)',
        'tc-deployed-b: the totals differ from its 1 session(s)',
        `  ${startedAt.slice(0, 10)} sessions: kept 2, derived 1`,
        '',
      ].join('\n'));
      expect(one).toMatchObject({ code: 0, stdout: 'tc-deployed-a: the totals match its 1 session(s)\n' });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--project: must be 1-64 characters/);
    } finally {
      await db.close();
    }
  });
});
