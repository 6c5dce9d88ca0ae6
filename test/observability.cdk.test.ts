import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { describe, expect, it } from 'vitest';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';

const noBundling = { 'aws:cdk:bundling-stacks': [] };

describe('observability on AWS', () => {
  const template = Template.fromStack(new ClaudeSessionsStack(new App({ context: noBundling }), 'Test'));

  it('publishes from the table stream, session items only, with retries and a dead-letter queue', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', { StreamSpecification: { StreamViewType: 'NEW_AND_OLD_IMAGES' } });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FilterCriteria: { Filters: [{ Pattern: JSON.stringify({ dynamodb: { Keys: { sk: { S: ['SESSION'] } } } }) }] },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BisectBatchOnFunctionError: true,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('^EventsDeadLetters'), 'Arn'] } } },
    });
    const policies = Object.values(template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^EventsService') }] } }));
    const actions = policies.flatMap((p: any) => p.Properties.PolicyDocument.Statement.flatMap((s: any) => [s.Action].flat()));
    expect(actions).toContain('events:PutEvents');
    expect(actions.filter((a: string) => a.startsWith('dynamodb:') && /Put|Update|Delete|Write/.test(a))).toEqual([]);
  });

  it('has a dashboard of sessions by status, cost, tokens, duration percentiles, failures by class and executions in flight', () => {
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    const body = JSON.stringify((dashboards[0] as any).Properties.DashboardBody);
    for (const text of ['Sessions by status', 'Cost (USD)', 'Tokens', 'p50', 'p95', 'Failures by error class', 'Executions in flight', 'SessionsTimedOut', 'CostUsd']) {
      expect(body).toContain(text);
    }
  });

  it('alarms on the failure rate, an overdue session, non-empty dead-letter queues and reaper errors', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a: any) => a.Properties.AlarmDescription as string);
    expect(alarms).toEqual(expect.arrayContaining([
      expect.stringMatching(/sessions closed in an hour failed or timed out/),
      expect.stringMatching(/ran past the state machine timeout/),
      expect.stringMatching(/Schedules\/DeadLetters/),
      expect.stringMatching(/Events\/DeadLetters/),
      expect.stringMatching(/reaper failed/),
    ]));
    for (const a of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) expect((a as any).Properties.AlarmActions).toBeUndefined();
  });

  it('sends every alarm to the SNS topic when one is given', () => {
    const app = new App({ context: noBundling });
    const topic = new Topic(new Stack(app, 'Topics'), 'Pager');
    const withTopic = Template.fromStack(new ClaudeSessionsStack(app, 'WithTopic', { alarmTopic: topic }));
    const alarms = Object.values(withTopic.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThanOrEqual(5);
    for (const a of alarms) expect(JSON.stringify((a as any).Properties.AlarmActions)).toMatch(/Pager/);
  });
});
