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
    for (const name of ['RunClaude', 'RunClaudeOnFargate', 'RecordUsage', 'RecordFailedRun', 'RecordUsageBeforeRelease', 'RecordLimitedUsage', 'ReleaseMilestone', 'ReleaseSlot', 'ReleaseSlotAndEnd', 'RecordAttempt']) {
      expect(states[name]!.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'CloseFailed' }]);
    }
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

  it('closes only a RUNNING session, on both close paths', () => {
    for (const name of ['RecordUsage', 'RecordFailedRun', 'CloseFailed']) {
      expect(states[name]).toMatchObject({
        Resource: 'arn:aws:states:::dynamodb:updateItem',
        Parameters: { ConditionExpression: '#status = :running', ExpressionAttributeNames: { '#status': 'status' } },
      });
    }
    expect(states.RecordUsage!.Parameters).toMatchObject({ 'ExpressionAttributeValues.$': '$.run.values' });
    expect(states.CloseFailed!.Parameters).toMatchObject({
      ExpressionAttributeValues: {
        ':running': { S: 'RUNNING' },
        ':status': { S: 'FAILED' },
        ':error': { 'S.$': '$.failure.Error' },
        ':cause': { 'S.$': '$.failure.Cause' },
        ':endedAt': { 'S.$': '$$.State.EnteredTime' },
      },
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
    expect(states.RecordAttempt).toMatchObject({
      Parameters: { ConditionExpression: '#status = :running', 'ExpressionAttributeValues.$': '$.run.next.values' },
      Next: 'RetryWait',
    });
    expect((states.RecordAttempt!.Parameters as any).UpdateExpression).toMatch(/^SET /);
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

  it('keeps sessions in an on-demand table with point-in-time recovery, a by-project and a by-milestone index', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      GlobalSecondaryIndexes: [
        Match.objectLike({
          IndexName: 'byProject',
          KeySchema: [
            { AttributeName: 'projectId', KeyType: 'HASH' },
            { AttributeName: 'startedAt', KeyType: 'RANGE' },
          ],
        }),
        Match.objectLike({
          IndexName: 'byMilestone',
          KeySchema: [
            { AttributeName: 'milestoneId', KeyType: 'HASH' },
            { AttributeName: 'startedAt', KeyType: 'RANGE' },
          ],
        }),
      ],
    });
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
