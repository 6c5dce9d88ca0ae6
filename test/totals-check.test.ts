import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { loadWorkflowDefinition, type WorkflowDefinition } from '../lib/local/workflow-definition.js';
import { isAlive } from '../lib/local/state-lock.js';
import { prepareSessionStart, type SessionStart } from '../lib/sessions/execution-input.js';
import { milestoneTotalsSk, totalsDaySk, totalsPk, TOTALS_ALL_SK } from '../lib/sessions/project-totals.js';
import { MilestoneRepository } from '../lib/sessions/milestone-repository.js';
import { PROJECT_REGISTRY_PK, projectRegistrySk } from '../lib/sessions/project-registry.js';
import { RUNNING_PROJECT, SESSION_SK, sessionPk, type RunOutcome } from '../lib/sessions/session-item.js';
import { backfillTotals } from '../lib/sessions/totals-backfill.js';
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

/** A table as it was before the totals and the registry: the session items only, a running one without its running-index key. */
async function forgetTotals(db: LocalDynamoDb, projectIds: string[], running: string[]): Promise<void> {
  for (const projectId of projectIds) {
    for (const pk of [totalsPk(projectId)]) {
      const { Items = [] } = await db.documentClient.send(new QueryCommand({ TableName: db.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': pk } }));
      for (const item of Items) await db.documentClient.send(new DeleteCommand({ TableName: db.tableName, Key: { pk: item.pk, sk: item.sk } }));
    }
    await db.documentClient.send(new DeleteCommand({ TableName: db.tableName, Key: { pk: PROJECT_REGISTRY_PK, sk: projectRegistrySk(projectId) } }));
  }
  for (const sessionId of running) {
    await db.documentClient.send(new UpdateCommand({ TableName: db.tableName, Key: { pk: sessionPk(sessionId), sk: SESSION_SK }, UpdateExpression: `REMOVE ${RUNNING_PROJECT}` }));
  }
}

describe('claude-sessions totals backfill', () => {
  it('makes the totals and registry of a table from before them hold what its sessions give, and a second run writes nothing', async () => {
    // Prepare: two projects' sessions (completed, failed, aborted with spend recorded after, one running), then the totals and registry gone
    const db = await LocalDynamoDb.start({ table: definition.table, tableName: 'ClaudeSessions-SessionsTable-BACKFILL' });
    const aws = {
      AWS_ENDPOINT_URL_DYNAMODB: db.endpoint, AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: db.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: db.credentials.secretAccessKey, AWS_SESSION_TOKEN: db.credentials.sessionToken!,
    };
    try {
      const repository = new SessionRepository(db.documentClient, db.tableName);
      const started = async (projectId: string) => {
        const { session } = prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4() }, { executionArn: `arn:test:${uuidv4()}` });
        await repository.create(session);
        return session;
      };
      const a1 = await started('tb-a');
      await repository.close(a1.sessionId, outcome(0.25));
      const a2 = await started('tb-a');
      await repository.close(a2.sessionId, { ...outcome(0.5), status: 'FAILED', error: 'Boom' });
      const a3 = await started('tb-a');
      await repository.closeWithError(a3.sessionId, 'ABORTED', 'ExecutionAborted', 'aborted');
      await repository.recordStoppedRun(a3, { ...outcome(0.125), status: 'ABORTED' });
      const running = await started('tb-b');
      await forgetTotals(db, ['tb-a', 'tb-b'], [running.sessionId]);
      expect((await repository.totalsDrift('tb-a')).length).toBeGreaterThan(0);
      expect(await repository.listRunning('tb-b')).toEqual([]);
      // Act
      const first = await runCli(['totals', 'backfill', '--table', db.tableName, '--json'], cliEnvironment(home, aws));
      const second = await runCli(['totals', 'backfill', '--table', db.tableName], cliEnvironment(home, aws));
      const check = await runCli(['totals', 'check', '--table', db.tableName], cliEnvironment(home, aws));
      // Assess
      expect(first.stderr).toBe('');
      const day = a1.startedAt.slice(0, 10);
      expect(JSON.parse(first.stdout)).toEqual([
        { projectId: 'tb-a', sessions: 3, rewritten: ['ALL', day, 'no milestone'].sort(), runningMarked: 0, passes: 1 },
        { projectId: 'tb-b', sessions: 1, rewritten: ['ALL', running.startedAt.slice(0, 10), 'no milestone'].sort(), runningMarked: 1, passes: 1 },
      ]);
      expect(second).toMatchObject({ code: 0, stdout: 'tb-a: the totals already held its 3 session(s)\ntb-b: the totals already held its 1 session(s)\n' });
      expect(check).toMatchObject({ code: 0, stdout: 'tb-a: the totals match its 3 session(s)\ntb-b: the totals match its 1 session(s)\n' });
      expect(await repository.projectIds()).toEqual(['tb-a', 'tb-b']);
      expect(await repository.usageTotals('tb-a')).toMatchObject({ sessions: 3, byStatus: { COMPLETED: 1, FAILED: 1, ABORTED: 1 }, totalCostUsd: 0.875 });
      expect((await repository.listRunning('tb-b')).map((s) => s.sessionId)).toEqual([running.sessionId]);
      // The running session closes after the backfill: its close counts on the backfilled totals, once
      await repository.close(running.sessionId, outcome(0.25));
      expect(await repository.totalsDrift('tb-b')).toEqual([]);
      expect(await repository.runningExecutions('tb-b')).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('loses no close that lands while it runs: its write is refused, and the project derived again', async () => {
    // Prepare: a project with totals gone and two running sessions; one closes between the backfill's reads and its writes
    const db = await LocalDynamoDb.start({ table: definition.table });
    try {
      const repository = new SessionRepository(db.documentClient, db.tableName);
      const sessions: SessionStart[] = [];
      for (let i = 0; i < 2; i++) {
        const { session } = prepareSessionStart({ prompt: 'p', projectId: 'tb-live', sessionId: uuidv4() }, { executionArn: `arn:test:${uuidv4()}` });
        await repository.create(session);
        sessions.push(session);
      }
      await forgetTotals(db, ['tb-live'], []);
      const backfillClient = DynamoDBDocumentClient.from(new DynamoDBClient({ endpoint: db.endpoint, region: 'us-east-1', credentials: db.credentials }));
      let closedMeanwhile = false;
      backfillClient.middlewareStack.add((next) => async (args) => {
        const input = args.input as { UpdateExpression?: string; Key?: { pk?: string | { S?: string } } };
        const pk = input.Key?.pk;
        if (!closedMeanwhile && (typeof pk === 'string' ? pk : pk?.S) === totalsPk('tb-live') && input.UpdateExpression?.startsWith('SET ')) {
          closedMeanwhile = true;
          expect(await repository.close(sessions[0]!.sessionId, outcome(0.25))).toBe(true);
        }
        return next(args);
      }, { step: 'initialize', name: 'closeMeanwhile' });
      // Act
      let done;
      try {
        done = await backfillTotals(backfillClient, db.tableName, 'tb-live');
      } finally {
        backfillClient.destroy();
      }
      // Assess
      expect(closedMeanwhile).toBe(true);
      expect(done).toEqual([expect.objectContaining({ projectId: 'tb-live', sessions: 2 })]);
      expect(done[0]!.passes).toBeGreaterThan(1);
      expect(await repository.totalsDrift('tb-live')).toEqual([]);
      expect(await repository.usageTotals('tb-live')).toMatchObject({ sessions: 2, byStatus: { COMPLETED: 1, RUNNING: 1 }, totalCostUsd: 0.25 });
    } finally {
      await db.close();
    }
  });

  it('never lowers what the totals counted for sessions whose items expired (sessionRetentionDays), unless told exact', async () => {
    // Prepare: two closed sessions, then one's item gone as TTL takes it; the totals still count both
    const db = await LocalDynamoDb.start({ table: definition.table });
    try {
      const repository = new SessionRepository(db.documentClient, db.tableName);
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const { session } = prepareSessionStart({ prompt: 'p', projectId: 'tb-ttl', sessionId: uuidv4() }, { executionArn: `arn:test:${uuidv4()}` });
        await repository.create(session);
        await repository.close(session.sessionId, outcome(0.5));
        ids.push(session.sessionId);
      }
      await db.documentClient.send(new DeleteCommand({ TableName: db.tableName, Key: { pk: sessionPk(ids[0]!), sk: SESSION_SK } }));
      // Act
      const [kept] = await backfillTotals(db.documentClient, db.tableName, 'tb-ttl');
      const afterDefault = await repository.usageTotals('tb-ttl');
      const [exact] = await backfillTotals(db.documentClient, db.tableName, 'tb-ttl', { exact: true });
      // Assess: the spend stays counted by default; exact makes the totals what the one item left gives
      expect(kept).toMatchObject({ sessions: 1, rewritten: [] });
      expect(afterDefault).toMatchObject({ sessions: 2, totalCostUsd: 1 });
      expect(exact!.rewritten).toContain('ALL');
      expect(await repository.usageTotals('tb-ttl')).toMatchObject({ sessions: 1, totalCostUsd: 0.5 });
    } finally {
      await db.close();
    }
  });

  it('rewrites a totals item whose summed cost has more digits than a JS number keeps (its condition matches what DynamoDB holds)', async () => {
    // Prepare: two closes of a float cost (0.0001 * 3 is 0.00030000000000000003): DynamoDB sums them
    // exactly to 0.00060000000000000006, which reads back as 0.0006000000000000001; then one session too many on ALL
    const db = await LocalDynamoDb.start({ table: definition.table });
    try {
      const repository = new SessionRepository(db.documentClient, db.tableName);
      for (let i = 0; i < 2; i++) {
        const { session } = prepareSessionStart({ prompt: 'p', projectId: 'tb-digits', sessionId: uuidv4() }, { executionArn: `arn:test:${uuidv4()}` });
        await repository.create(session);
        await repository.close(session.sessionId, outcome(0.0001 * 3));
      }
      await countOneMore(db, 'tb-digits', TOTALS_ALL_SK);
      // Act
      const [done] = await backfillTotals(db.documentClient, db.tableName, 'tb-digits', { exact: true });
      // Assess
      expect(done).toMatchObject({ projectId: 'tb-digits', sessions: 2, rewritten: ['ALL'], passes: 1 });
      expect(await repository.totalsDrift('tb-digits')).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('covers a milestone\'s totals: check names its item when it differs from its tasks, backfill makes it again from them', async () => {
    // Prepare: a milestone of two closed tasks beside a session of no milestone, then one task too many on the milestone's item
    const db = await LocalDynamoDb.start({ table: definition.table });
    try {
      const repository = new SessionRepository(db.documentClient, db.tableName);
      const milestones = new MilestoneRepository(db.documentClient, db.tableName);
      const milestone = await milestones.open('tb-milestone');
      for (const milestoneId of [milestone.milestoneId, milestone.milestoneId, undefined]) {
        const input = milestoneId ? { mode: 'milestone' as const, milestoneId } : {};
        const { session } = prepareSessionStart({ prompt: 'p', projectId: 'tb-milestone', sessionId: uuidv4(), ...input }, { executionArn: `arn:test:${uuidv4()}` });
        await repository.create(session);
        await repository.close(session.sessionId, outcome(0.25));
      }
      await countOneMore(db, 'tb-milestone', milestoneTotalsSk(milestone.milestoneId));
      // Act
      const drift = await repository.totalsDrift('tb-milestone');
      const [fixed] = await backfillTotals(db.documentClient, db.tableName, 'tb-milestone', { exact: true });
      await forgetTotals(db, ['tb-milestone'], []);
      const [remade] = await backfillTotals(db.documentClient, db.tableName, 'tb-milestone');
      // Assess
      expect(drift).toEqual([`milestone ${milestone.milestoneId} sessions: kept 3, derived 2`]);
      expect(fixed).toMatchObject({ sessions: 3, rewritten: [`milestone ${milestone.milestoneId}`] });
      expect(remade!.rewritten).toEqual(expect.arrayContaining([`milestone ${milestone.milestoneId}`, 'no milestone']));
      expect(await repository.totalsDrift('tb-milestone')).toEqual([]);
      expect(await milestones.totals('tb-milestone', milestone.milestoneId)).toMatchObject({ sessions: 2, byStatus: { COMPLETED: 2 }, totalCostUsd: 0.5 });
    } finally {
      await db.close();
    }
  });
});
