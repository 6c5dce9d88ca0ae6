import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';

function synth(schedules: unknown = []) {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  return Template.fromStack(new ClaudeSessionsStack(app, 'Test', { schedules: parseSchedules(schedules) }));
}

describe('the REST API', () => {
  const template = synth();

  it('authorises every method with AWS_IAM', () => {
    const methods = Object.values(template.findResources('AWS::ApiGateway::Method'));
    expect(methods.length).toBeGreaterThan(0);
    for (const method of methods) expect((method as any).Properties.AuthorizationType).toBe('AWS_IAM');
  });

  it('throttles the stage and writes access logs without request bodies', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
      MethodSettings: [Match.objectLike({ ThrottlingRateLimit: 10, ThrottlingBurstLimit: 20, DataTraceEnabled: false })],
    });
  });

  it('lets the API function start only this state machine, read the table, and write milestone items only', () => {
    const policies = Object.values(template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^Http.*FunctionServiceRole') }] },
    }));
    const statements = policies.flatMap((p: any) => p.Properties.PolicyDocument.Statement);
    const start = statements.filter((s: any) => [s.Action].flat().includes('states:StartExecution'));
    expect(start).toEqual([expect.objectContaining({ Resource: { Ref: expect.stringMatching(/^WorkflowStateMachine/) } })]);
    const writes = statements.filter((s: any) => [s.Action].flat().some((a: string) => a.startsWith('dynamodb:') && /Put|Update|Delete|Write/.test(a)));
    // Opening and closing milestones: PutItem/UpdateItem on MILESTONE# keys, never on a session.
    expect(writes).toEqual([
      expect.objectContaining({
        Action: ['dynamodb:PutItem', 'dynamodb:UpdateItem'],
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['MILESTONE#*'] } },
      }),
    ]);
    const s3 = statements.filter((s: any) => [s.Action].flat().some((a: string) => a.startsWith('s3:')));
    expect(s3.map((s: any) => s.Action)).toEqual(['s3:PutObjectTagging']);
    // Lists by query only: the project list from its registry partition, no scan of the table or an index.
    expect(statements.flatMap((s: any) => [s.Action].flat())).not.toContain('dynamodb:Scan');
    expect(statements).toContainEqual(expect.objectContaining({ Action: 'dynamodb:Query', Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['PROJECTS'] } } }));
  });
});

describe('scheduled sessions', () => {
  it('render each entry from context with its expression and an input marked trigger: schedule', () => {
    const template = synth(
      JSON.stringify([{ name: 'nightly', expression: 'cron(0 3 * * ? *)', timezone: 'Europe/Paris', projectId: 'demo', prompt: 'summarise', maxTurns: 5 }]),
    );
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      State: 'ENABLED',
      Target: Match.objectLike({
        Arn: { Ref: Match.stringLikeRegexp('^WorkflowStateMachine') },
        RetryPolicy: { MaximumEventAgeInSeconds: 3600, MaximumRetryAttempts: 3 },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^SchedulesDeadLetters'), 'Arn'] } },
      }),
    });
    const schedule = Object.values(template.findResources('AWS::Scheduler::Schedule'))[0] as any;
    // No sessionId: each run gets its own UUID inside the workflow.
    expect(JSON.parse(schedule.Properties.Target.Input)).toEqual({
      prompt: 'summarise', projectId: 'demo', maxTurns: 5, mode: 'fresh', runtime: 'lambda', trigger: 'schedule',
    });
  });

  it('has none by default', () => {
    synth().resourceCountIs('AWS::Scheduler::Schedule', 0);
  });

  it('fails the synth naming the entry and the field for a bad entry', () => {
    expect(() => synth([{ name: 'nightly', expression: 'daily', projectId: 'demo' }])).toThrow(
      'schedules[0] (nightly): expression must be cron(...), rate(...) or at(...); prompt is required',
    );
    expect(() => synth([{ name: 'a', expression: 'rate(1 day)', projectId: 'x', prompt: 'p', maxTurns: 500 }])).toThrow(/schedules\[0\] \(a\): maxTurns/);
    expect(() => synth('not json')).toThrow('context schedules is not valid JSON');
  });
});
