import { Match, Template } from 'aws-cdk-lib/assertions';
import { spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertValidAsl, fromTemplate, type WorkflowDefinition } from '../lib/local/workflow-definition.js';
import { synthesizedTemplate } from './support/synthesized.js';

let template: Template;
let states: WorkflowDefinition['asl']['States'];

beforeAll(() => {
  template = synthesizedTemplate();
  states = fromTemplate(template.toJSON() as never, {}).asl.States;
});

describe('the rendered session workflow', () => {
  it('is valid ASL (checked once at synthesis, so the local runtime need not check it per process)', () => {
    const asl = fromTemplate(template.toJSON() as never, {}).asl;
    expect(() => assertValidAsl(asl)).not.toThrow();
    const broken = { ...asl, States: { ...asl.States, CreateSession: { ...asl.States.CreateSession, Next: 'NoSuchState' } } };
    expect(asl.StartAt).toBe('CreateSession');
    expect(() => assertValidAsl(broken)).toThrow(/NoSuchState/);
  });

  it('creates the session in its first state, and a duplicate id ends without touching it', () => {
    expect(states.CreateSession).toMatchObject({
      Type: 'Task',
      Resource: expect.stringMatching(/:function:SessionCreator/), // payloadResponseOnly: the function ARN itself
      Parameters: {
        'input.$': '$', 'executionArn.$': '$$.Execution.Id', 'executionName.$': '$$.Execution.Name', 'executionStartTime.$': '$$.Execution.StartTime',
      },
      Catch: [{ ErrorEquals: ['SessionAlreadyExists'], Next: 'SessionAlreadyExists' }],
      Next: 'ChooseFirstStep',
    });
    expect(states.CreateSession!.Catch).toHaveLength(1); // no finally-branch: the session is not ours to close
  });

  it('catches States.ALL into CloseFailed on every Task state after CreateSession', () => {
    for (const name of ['RunClaude', 'RunClaudeOnFargate', 'RecordUsage', 'RecordFailedRun', 'RecordUsageBeforeRelease', 'RecordLimitedUsage', 'ReleaseMilestone', 'ReleaseSlot', 'ReleaseSlotAndEnd']) {
      expect(states[name]!.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'CloseFailed' }]);
    }
    // A repeated RecordAttempt (its answer lost) is refused by its condition: the attempt is recorded, the run goes on.
    expect(states.RecordAttempt!.Catch).toEqual([
      { ErrorEquals: ['DynamoDb.TransactionCanceledException', 'DynamoDB.TransactionCanceledException'], ResultPath: '$.failure', Next: 'AttemptRecorded' },
      { ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'CloseFailed' },
    ]);
    expect(states.AttemptRecorded).toEqual({
      Type: 'Choice', Choices: [{ Variable: '$.failure.Cause', StringMatches: '*ConditionalCheckFailed*', Next: 'RetryWait' }], Default: 'CloseFailed',
    });
    // A refused lease is named for users, then closes the session like any failure.
    expect(states.AcquireMilestone!.Catch).toEqual([
      { ErrorEquals: ['DynamoDB.ConditionalCheckFailedException'], ResultPath: '$.acquireFailure', Next: 'MilestoneUnavailable' },
      { ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'CloseFailed' },
    ]);
    expect(states.MilestoneUnavailable).toMatchObject({ Type: 'Pass', ResultPath: '$.failure', Next: 'CloseFailed' });
    expect(states.AcquireSlot!.Catch).toEqual([
      { ErrorEquals: ['DynamoDB.ConditionalCheckFailedException'], ResultPath: '$.acquireFailure', Next: 'ProjectAtCapacity' },
      { ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'CloseFailed' },
    ]);
    const tasks = Object.entries(states).filter(([, s]) => s.Type === 'Task').map(([n]) => n);
    expect(tasks.sort()).toEqual([
      'AcquireMilestone', 'AcquireSlot', 'CloseFailed', 'CreateSession', 'MarkMilestoneBroken', 'RecordAttempt', 'RecordFailedRun', 'RecordLimitedUsage', 'RecordUsage',
      'RecordUsageBeforeRelease', 'ReleaseMilestone', 'ReleaseMilestoneAfterFailure', 'ReleaseSlot', 'ReleaseSlotAfterFailure', 'ReleaseSlotAndEnd', 'RunClaude',
      'RunClaudeOnFargate',
    ]);
  });

  it('closes only a RUNNING session, on both close paths, and counts the close in the project\'s and its milestone\'s totals in the same transaction', () => {
    const totalsKeys = [
      { pk: { 'S.$': '$.totals.pk' }, sk: { S: 'ALL' } },
      { pk: { 'S.$': '$.totals.pk' }, sk: { 'S.$': '$.totals.day' } },
      // The milestone's totals item, or the project's sessions of no milestone: one shape for every session
      { pk: { 'S.$': '$.totals.pk' }, sk: { 'S.$': '$.totals.milestone' } },
    ];
    for (const name of ['RecordUsage', 'RecordFailedRun', 'RecordUsageBeforeRelease', 'RecordAttempt', 'CloseFailed']) {
      const items = (states[name]!.Parameters as any).TransactItems as any[];
      expect(states[name]!.Resource).toBe('arn:aws:states:::aws-sdk:dynamodb:transactWriteItems');
      expect(items).toHaveLength(4);
      expect(items[0].Update).toMatchObject({ ConditionExpression: expect.stringMatching(/^#status = :running( AND |$)/), ExpressionAttributeNames: { '#status': 'status' } });
      expect(items.slice(1).map((i) => i.Update.Key)).toEqual(totalsKeys);
      // The totals are only added to, never set: a write refused by the session's condition counts nothing.
      for (const item of items.slice(1)) expect(item.Update.ConditionExpression).toBeUndefined();
      // The same ADD on each totals item
      for (const item of items.slice(2)) expect({ ...item.Update, Key: null }).toEqual({ ...items[1].Update, Key: null });
    }
    expect((states.RecordUsage!.Parameters as any).TransactItems[0].Update).toMatchObject({
      ConditionExpression: '#status = :running AND attribute_not_exists(spendRecordedAfterStop)', 'ExpressionAttributeValues.$': '$.run.values',
    });
    expect((states.RecordUsage!.Parameters as any).TransactItems[1].Update).toMatchObject({
      'UpdateExpression.$': '$.run.totals.update', 'ExpressionAttributeNames.$': '$.run.totals.names', 'ExpressionAttributeValues.$': '$.run.totals.values',
    });
    const closeFailed = (states.CloseFailed!.Parameters as any).TransactItems;
    expect(closeFailed[0].Update).toMatchObject({
      ConditionExpression: '#status = :running',
      ExpressionAttributeValues: {
        ':running': { S: 'RUNNING' },
        ':status': { S: 'FAILED' },
        ':error': { 'S.$': '$.failure.Error' },
        ':cause': { 'S.$': '$.failure.Cause' },
        ':endedAt': { 'S.$': '$$.State.EnteredTime' },
        // The TTL value CreateSession chose (a number with sessionRetentionDays, NULL without), whatever the deployment's setting
        ':expiresAt.$': '$.expiresAt',
      },
    });
    expect(closeFailed[0].Update.UpdateExpression).toMatch(/, expiresAt = :expiresAt REMOVE runningProjectId$/);
    // Every close takes the session out of the running index in the write that closes it.
    for (const name of ['RecordUsage', 'RecordFailedRun', 'RecordUsageBeforeRelease', 'RecordLimitedUsage', 'CloseFailed']) {
      expect((states[name]!.Parameters as any).TransactItems[0].Update.UpdateExpression).toMatch(/ REMOVE runningProjectId$/);
    }
    // The Catch branch moves the status only: the spend was counted as each attempt recorded it.
    expect(closeFailed[1].Update).toMatchObject({
      UpdateExpression: 'ADD #t0 :t0, #t1 :t1', ExpressionAttributeNames: { '#t0': 'RUNNING', '#t1': 'FAILED' }, ExpressionAttributeValues: { ':t0': { N: '-1' }, ':t1': { N: '1' } },
    });
  });

  it('keeps the original error as the execution error, even when the close itself fails', () => {
    expect(states.CloseFailed).toMatchObject({
      Next: 'MilestoneHeld',
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.closeFailure', Next: 'MilestoneHeld' }],
    });
    expect(states.MilestoneHeld).toMatchObject({ Type: 'Choice', Default: 'SlotHeld' });
    for (const name of ['ReleaseMilestoneAfterFailure', 'MarkMilestoneBroken']) {
      expect(states[name]).toMatchObject({ Next: 'SlotHeld', Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.releaseFailure', Next: 'SlotHeld' }] });
    }
    expect(states.SlotHeld).toMatchObject({ Type: 'Choice', Default: 'RunFailed' });
    expect(states.ReleaseSlotAfterFailure).toMatchObject({ Next: 'RunFailed', Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.releaseFailure', Next: 'RunFailed' }] });
    expect(states.RunFailed).toEqual({ Type: 'Fail', ErrorPath: '$.failure.Error', CausePath: '$.failure.Cause' });
  });

  it('frees a milestone\'s lease only where this execution holds it, on every path', () => {
    for (const name of ['ReleaseMilestone', 'ReleaseMilestoneAfterFailure', 'MarkMilestoneBroken']) {
      expect(states[name]!.Parameters).toMatchObject({ ConditionExpression: 'leaseExecutionArn = :executionArn' });
      expect((states[name]!.Parameters as any).UpdateExpression).toMatch(/REMOVE leaseSessionId, leaseExecutionArn/);
    }
    expect(states.ReleaseMilestone!.Parameters).toMatchObject({ 'ExpressionAttributeValues.$': '$.run.milestoneValues' });
    expect((states.ReleaseMilestoneAfterFailure!.Parameters as any).ExpressionAttributeValues).toMatchObject({ ':executionArn': { 'S.$': '$$.Execution.Id' } });
    expect(states.AcquireMilestone!.Parameters).toMatchObject({
      ConditionExpression: expect.stringContaining('attribute_not_exists(leaseExecutionArn) OR leaseExecutionArn = :executionArn'),
      ReturnValues: 'ALL_NEW',
    });
  });

  it('records usage on both outcomes, and ends a Claude-level failure failed after its usage is recorded', () => {
    expect(states.RunClaude!.Next).toBe('ClaudeSucceeded');
    expect(states.ClaudeSucceeded).toMatchObject({
      Type: 'Choice',
      Choices: [
        { Variable: '$.run.next', IsPresent: true, Next: 'RecordAttempt' },
        { Variable: '$.session.milestoneId', IsPresent: true, Next: 'RecordUsageBeforeRelease' },
        {
          And: [{ Variable: '$.run.record.status', StringEquals: 'COMPLETED' }, { Variable: '$.session.concurrencyLimit', IsPresent: true }],
          Next: 'RecordLimitedUsage',
        },
        { Variable: '$.session.concurrencyLimit', IsPresent: true, Next: 'RecordUsageBeforeRelease' },
        { Variable: '$.run.record.status', StringEquals: 'COMPLETED', Next: 'RecordUsage' },
      ],
      Default: 'RecordFailedRun',
    });
    expect(states.RecordUsageBeforeRelease!.Parameters).toEqual(states.RecordUsage!.Parameters);
    expect(states.RecordUsageBeforeRelease!.Next).toBe('HoldsMilestone');
    expect(states.RecordLimitedUsage!.Parameters).toEqual(states.RecordUsage!.Parameters);
    // A retry: the spend so far SET on the running session, a back-off, the next attempt with that spend carried.
    expect(states.RecordAttempt!.Next).toBe('RetryWait');
    const recordAttempt = (states.RecordAttempt!.Parameters as any).TransactItems;
    expect(recordAttempt[0].Update).toMatchObject({
      ConditionExpression: expect.stringContaining('attempts < :attempts'), 'ExpressionAttributeValues.$': '$.run.next.values', UpdateExpression: expect.stringMatching(/^SET /),
    });
    expect(recordAttempt[1].Update).toMatchObject({ 'UpdateExpression.$': '$.run.next.totals.update' });
    expect(states.RetryWait).toMatchObject({ Type: 'Wait', SecondsPath: '$.run.next.waitSeconds', Next: 'NextAttempt' });
    expect(states.NextAttempt).toMatchObject({ Type: 'Pass', ResultPath: '$.retry', Next: 'ChooseRuntime' });
    expect(states.RecordLimitedUsage!.Next).toBe('ReleaseSlotAndEnd');
    expect(states.ReleaseSlotAndEnd).toMatchObject({ End: true, OutputPath: '$.run.record' });
    expect(states.ReleaseMilestone!.Next).toBe('HoldsSlot');
    expect(states.ReleaseSlot!.Next).toBe('ClaudeSucceededAfterRelease');
    expect(states.RecordUsage).toMatchObject({ End: true, OutputPath: '$.run.record' });
    expect(states.RecordFailedRun!.Next).toBe('ClaudeFailed');
    expect(states.RecordFailedRun!.Parameters).toEqual(states.RecordUsage!.Parameters);
  });

  it('is a Standard, JSONPath state machine that logs events but never execution data (prompts)', () => {
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: Match.objectLike({ IncludeExecutionData: false, Level: 'ALL' }),
    });
  });

  it('lets the state machine update the table items only: no put (CreateSession\'s Lambda does), no index, no read, no delete', () => {
    const policies = template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: Match.stringLikeRegexp('WorkflowStateMachineRole') }] },
    });
    const statements = Object.values(policies).flatMap((p) => (p as any).Properties.PolicyDocument.Statement);
    const dynamo = statements.filter((s: any) => JSON.stringify(s.Action).includes('dynamodb'));
    expect(dynamo).toEqual([
      expect.objectContaining({
        Action: 'dynamodb:UpdateItem',
        Resource: { 'Fn::GetAtt': [expect.stringMatching(/^SessionsTable/), 'Arn'] },
      }),
    ]);
  });

  it('gives the runner the key through a secret it reads, never as a plain environment value', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      PackageType: 'Image',
      Timeout: 900,
      Environment: { Variables: Match.objectLike({ API_KEY_SECRET_ARN: { Ref: Match.stringLikeRegexp('AnthropicApiKey') } }) },
    });
    // The secret the stack makes holds a generated placeholder, never a value written into the template.
    const [secret] = Object.values(template.findResources('AWS::SecretsManager::Secret')) as any[];
    expect(secret.Properties.SecretString).toBeUndefined();
    expect(JSON.parse(secret.Properties.GenerateSecretString.SecretStringTemplate)).toEqual({ ANTHROPIC_API_KEY: 'REPLACE_ME' });
  });

  it('keeps sessions in an on-demand table with point-in-time recovery, a by-project index of what list shows (no reply), a sparse index of the running sessions and a by-milestone index', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      GlobalSecondaryIndexes: [
        Match.objectLike({
          IndexName: 'byProjectSummary',
          KeySchema: [
            { AttributeName: 'projectId', KeyType: 'HASH' },
            { AttributeName: 'startedAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: Match.arrayWith(['status', 'usage', 'totalCostUsd', 'executionArn']) },
        }),
        // Sparse: only a RUNNING session item carries runningProjectId (every close removes it).
        Match.objectLike({
          IndexName: 'byProjectRunning',
          KeySchema: [
            { AttributeName: 'runningProjectId', KeyType: 'HASH' },
            { AttributeName: 'startedAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: Match.arrayWith(['projectId', 'status', 'executionArn']) },
        }),
        // What a task row shows, not the reply: the view's totals are a totals item.
        Match.objectLike({
          IndexName: 'byMilestoneSummary',
          KeySchema: [
            { AttributeName: 'milestoneId', KeyType: 'HASH' },
            { AttributeName: 'startedAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: Match.arrayWith(['projectId', 'status', 'usage', 'totalCostUsd']) },
        }),
      ],
    });
    const [table] = Object.values(template.findResources('AWS::DynamoDB::Table')) as any[];
    // Closed sessions expire by TTL once a retention is set; the attribute is on whether or not one is.
    expect(table.Properties.TimeToLiveSpecification).toEqual({ AttributeName: 'expiresAt', Enabled: true });
    const byProject = table.Properties.GlobalSecondaryIndexes.find((i: any) => i.IndexName === 'byProjectSummary');
    expect(byProject.Projection.NonKeyAttributes).not.toContain('result');
    expect(byProject.Projection.NonKeyAttributes).not.toContain('cause');
  });
});

describe('npx cdk synth', () => {
  it('passes offline without Docker, with no unacknowledged cdk-nag finding', () => {
    const synth = spawnSync('npx', ['cdk', 'synth', '--quiet', '--output', 'cdk.out.test'], {
      encoding: 'utf8',
      env: { ...process.env, CI: 'true' },
      timeout: 180_000,
    });
    expect(synth.stderr + synth.stdout).not.toMatch(/AwsSolutions-/);
    expect(synth.status).toBe(0);
  });
});
