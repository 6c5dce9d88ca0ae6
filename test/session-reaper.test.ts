import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { synthesizedTemplate } from './support/synthesized.js';
import { v4 as uuidv4 } from 'uuid';
import { prepareSessionStart, sessionIdForExecution } from '../lib/sessions/execution-input.js';
import { reapExecution } from '../lib/sessions/session-reaper.js';
import type { RunOutcome } from '../lib/sessions/session-item.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { waitFor } from './support/wait-for.js';

let env: TestRuntime;
useTestRuntime((started) => (env = started));


const completed: RunOutcome = {
  status: 'COMPLETED', endedAt: new Date().toISOString(), claudeSessionId: null,
  usage: { inputTokens: 9, outputTokens: 9, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
  numTurns: 1, totalCostUsd: 0.01, durationMs: 5, modelUsage: {}, provider: 'anthropic', model: null, stopReason: 'end_turn', result: 'ok', error: null, cause: null, attempts: 1,
};

describe('the reaper: no session outlives its execution', () => {
  it('closes the session ABORTED when a running execution is aborted, and stops the CLI', async () => {
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 5, output_tokens: 1 } });
    const sessionId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'long job', projectId: 'reap-abort', sessionId }, sessionId);
    await waitFor(async () => env.anthropic.messageRequests.length > 0 || undefined);
    execution.abort();
    expect((await execution.outcome).status).toBe('ABORTED');
    expect(await env.runtime.repository.get(sessionId)).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted' });
    expect(await env.runtime.repository.listRunning('reap-abort')).toEqual([]);
    // The CLI was killed: its stalled stream to the API is closed from its side.
    await waitFor(async () => env.anthropic.openStreams === 0 || undefined);
  });

  it('an abort stops Claude within 10 s, as the runner notices it, and the session keeps what Claude spent until then', async () => {
    // Prepare: Claude is streaming a reply (its message_start reported 1,187 input tokens) when the execution is aborted
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 1187, output_tokens: 3 } });
    const sessionId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'long job', projectId: 'reap-spend', sessionId }, sessionId);
    await waitFor(async () => env.anthropic.openStreams > 0 || undefined);
    // Act
    const abortedAt = Date.now();
    execution.abort();
    expect((await execution.outcome).status).toBe('ABORTED');
    // Assess: the abort did not reach the running task (as on AWS); the runner saw it and stopped Claude
    await waitFor(async () => env.anthropic.openStreams === 0 || undefined);
    expect(Date.now() - abortedAt).toBeLessThan(10_000);
    const session = await waitFor(async () => {
      const s = await env.runtime.repository.get(sessionId);
      return s?.usage.inputTokens ? s : undefined;
    });
    const served = env.anthropic.messageRequests[0]!.served!; // what message_start reported before the stall
    expect(session).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted', usage: { inputTokens: 1187, outputTokens: served.output_tokens }, numTurns: 1 });
  });

  it('counts a stopped run\'s spend once, whether the runner writes it before or after the reaper closes, and never reopens or relabels a close', async () => {
    const { repository } = env.runtime;
    const stopped: RunOutcome = { ...completed, status: 'ABORTED', error: 'ExecutionAborted', cause: 'stopped', usage: { ...completed.usage, inputTokens: 1187 } };
    // The runner first: the spend on the RUNNING session, which the reaper then closes, keeping it
    const { session: a } = prepareSessionStart({ prompt: 'p', projectId: 'reap-once', sessionId: uuidv4() }, { executionArn: 'arn:a' });
    await repository.create(a);
    expect(await repository.recordStoppedRun(a, stopped)).toBe(true);
    expect(await repository.get(a.sessionId)).toMatchObject({ status: 'RUNNING', usage: { inputTokens: 1187 } });
    expect(await reapExecution(repository, { executionArn: 'arn:a', name: a.sessionId, status: 'ABORTED' })).toMatchObject({ sessionId: a.sessionId, closed: true });
    expect(await repository.get(a.sessionId)).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted', usage: { inputTokens: 1187 } });
    // The reaper first: its error stays, the spend is added to the record once, however often it is written
    const { session: b } = prepareSessionStart({ prompt: 'p', projectId: 'reap-once', sessionId: uuidv4() }, { executionArn: 'arn:b' });
    await repository.create(b);
    await reapExecution(repository, { executionArn: 'arn:b', name: b.sessionId, status: 'ABORTED', cause: 'by the console' });
    expect(await repository.recordStoppedRun(b, stopped)).toBe(true);
    expect(await repository.recordStoppedRun(b, stopped)).toBe(true);
    expect(await repository.get(b.sessionId)).toMatchObject({ status: 'ABORTED', cause: 'by the console', usage: { inputTokens: 1187 } });
    // A session closed otherwise (completed), or another execution's, is left alone
    const { session: c } = prepareSessionStart({ prompt: 'p', projectId: 'reap-once', sessionId: uuidv4() }, { executionArn: 'arn:c' });
    await repository.create(c);
    await repository.close(c.sessionId, completed);
    expect(await repository.recordStoppedRun(c, stopped)).toBe(false);
    expect(await repository.recordStoppedRun({ ...a, executionArn: 'arn:other' }, stopped)).toBe(false);
    expect(await repository.get(c.sessionId)).toMatchObject({ status: 'COMPLETED', usage: { inputTokens: 9 } });
  });

  it('finds the session of a console execution with a name that is not a UUID', async () => {
    env.anthropic.respondByDefault({ kind: 'stall' });
    const execution = env.runtime.startExecution({ prompt: 'by hand', projectId: 'reap-console' }, 'my-manual-run');
    const sessionId = sessionIdForExecution({ executionName: 'my-manual-run', executionArn: execution.executionArn });
    await waitFor(async () => (await env.runtime.repository.get(sessionId))?.status === 'RUNNING' || undefined);
    execution.abort();
    await execution.outcome;
    expect(await env.runtime.repository.get(sessionId)).toMatchObject({ status: 'ABORTED' });
  });

  it('after a normal close changes nothing, and a close after the reaper changes nothing either', async () => {
    const { repository } = env.runtime;
    const { session: a } = prepareSessionStart({ prompt: 'p', projectId: 'reap-race', sessionId: uuidv4() }, { executionArn: 'arn:a' });
    await repository.create(a);
    await repository.close(a.sessionId, completed);
    const late = await reapExecution(repository, { executionArn: 'arn:a', name: a.sessionId, status: 'FAILED', error: 'X', cause: 'late' });
    expect(late).toEqual({ sessionId: a.sessionId, closed: false });
    expect(await repository.get(a.sessionId)).toMatchObject({ status: 'COMPLETED', usage: { inputTokens: 9 }, error: null });

    const { session: b } = prepareSessionStart({ prompt: 'p', projectId: 'reap-race', sessionId: uuidv4() }, { executionArn: 'arn:b' });
    await repository.create(b);
    expect(await reapExecution(repository, { executionArn: 'arn:b', name: b.sessionId, status: 'TIMED_OUT' })).toEqual({ sessionId: b.sessionId, closed: true });
    expect(await repository.close(b.sessionId, completed)).toBe(false);
    expect(await repository.get(b.sessionId)).toMatchObject({ status: 'TIMED_OUT', error: 'ExecutionTimedOut', usage: { inputTokens: 0 } });
  });
});

describe('the reaper on AWS', () => {
  const template = synthesizedTemplate();

  it('is invoked for this state machine when an execution is aborted, times out or fails', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.states'],
        'detail-type': ['Step Functions Execution Status Change'],
        detail: { status: ['ABORTED', 'TIMED_OUT', 'FAILED'], stateMachineArn: [{ Ref: Match.stringLikeRegexp('^WorkflowStateMachine') }] },
      },
      Targets: [Match.objectLike({ DeadLetterConfig: Match.anyValue(), RetryPolicy: Match.anyValue() })],
    });
  });

  it('may only read and update items of the table (it reads the session to find its slot and lease)', () => {
    const policies = Object.values(template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^Reaper.*FunctionServiceRole') }] },
    }));
    const dynamo = policies.flatMap((p: any) => p.Properties.PolicyDocument.Statement).filter((s: any) => JSON.stringify(s.Action).includes('dynamodb'));
    expect(dynamo).toEqual([expect.objectContaining({ Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], Resource: { 'Fn::GetAtt': [expect.stringMatching(/^SessionsTable/), 'Arn'] } })]);
  });

  it('may describe the executions of this state machine only (the input an event leaves out)', () => {
    expect(statementsOf('Reaper').filter((s: any) => JSON.stringify(s.Action).includes('states:'))).toEqual([executionsOfWorkflow]);
  });

  it('is backed by a sweeper, run every 10 minutes, for the events EventBridge never delivered', () => {
    const [rule] = Object.values(template.findResources('AWS::Events::Rule', { Properties: { ScheduleExpression: 'rate(10 minutes)' } })) as any[];
    expect(rule.Properties).toMatchObject({ State: 'ENABLED', Targets: [{ Arn: { 'Fn::GetAtt': [expect.stringMatching(/^SweeperServiceFunction/), 'Arn'] } }] });
  });

  it('lets the sweeper query the project list and the running index (no scan, no history), close and release as the reaper does, and describe this state machine\'s executions', () => {
    const statements = statementsOf('Sweeper');
    expect(statements.filter((s: any) => JSON.stringify(s.Action).includes('dynamodb'))).toEqual([
      expect.objectContaining({ Action: 'dynamodb:Query', Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^SessionsTable/), 'Arn'] }, '/index/byProjectRunning']] } }),
      expect.objectContaining({
        Action: 'dynamodb:Query', Resource: { 'Fn::GetAtt': [expect.stringMatching(/^SessionsTable/), 'Arn'] },
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['PROJECTS'] } },
      }),
      expect.objectContaining({ Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'], Resource: { 'Fn::GetAtt': [expect.stringMatching(/^SessionsTable/), 'Arn'] } }),
    ]);
    expect(statements.filter((s: any) => JSON.stringify(s.Action).includes('states:'))).toEqual([executionsOfWorkflow]);
  });

  const executionsOfWorkflow = expect.objectContaining({
    Action: 'states:DescribeExecution',
    Resource: { 'Fn::Join': ['', expect.arrayContaining([':execution:', expect.objectContaining({ 'Fn::Select': [6, { 'Fn::Split': [':', { Ref: expect.stringMatching(/^WorkflowStateMachine/) }] }] })])] },
  });

  function statementsOf(role: string): any[] {
    return Object.values(template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: Match.stringLikeRegexp(`^${role}.*FunctionServiceRole`) }] },
    })).flatMap((p: any) => p.Properties.PolicyDocument.Statement);
  }
});
