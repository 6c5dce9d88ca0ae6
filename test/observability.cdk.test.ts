import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { describe, expect, it } from 'vitest';
import { synthesizedTemplate } from './support/synthesized.js';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { METRICS } from '../lib/sessions/session-events.js';
import { templateResolver, type CfnTemplate } from './support/template-resolver.js';

interface Widget {
  type: string;
  properties: { title?: string; metrics: (string | Record<string, unknown>)[][] };
}

const noBundling = { 'aws:cdk:bundling-stacks': [] };

describe('observability on AWS', () => {
  const template = synthesizedTemplate();

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

  it('graphs, by status, cost, tokens, duration and error class, exactly the metrics the stream consumer puts, under its service', () => {
    // Prepare: the dashboard as CloudWatch reads it, and what the consumer's Powertools Metrics is told
    const json = template.toJSON() as CfnTemplate;
    const [dashboard] = Object.values(template.findResources('AWS::CloudWatch::Dashboard')) as any[];
    const widgets = (JSON.parse(String(templateResolver(json).resolve(dashboard.Properties.DashboardBody))) as { widgets: Widget[] }).widgets;
    const [consumer] = Object.values(template.findResources('AWS::Lambda::Function', {
      Properties: { Environment: { Variables: { POWERTOOLS_METRICS_NAMESPACE: Match.anyValue() } } },
    })) as any[];
    const { POWERTOOLS_METRICS_NAMESPACE: namespace, POWERTOOLS_SERVICE_NAME: service } = consumer.Properties.Environment.Variables;
    // Act
    const graphed = (title: string) => widgets.find((w) => w.properties.title === title)?.properties.metrics
      .filter((m) => typeof m[0] === 'string').map((m) => m.slice(0, 4));
    // Assess: the names the consumer publishes (lib/sessions/session-events.ts), in its namespace, with its service dimension
    const own = (...names: string[]) => names.map((name) => [namespace, name, 'service', service]);
    expect(graphed('Sessions by status')).toEqual(own(METRICS.started, METRICS.completed, METRICS.failed, METRICS.timedOut, METRICS.aborted));
    expect(graphed('Cost (USD)')).toEqual(own(METRICS.costUsd));
    expect(graphed('Tokens')).toEqual(own(METRICS.inputTokens, METRICS.outputTokens, METRICS.cacheReadTokens, METRICS.cacheWriteTokens));
    expect(graphed('Session duration p50 / p95 (ms)')).toEqual(own(METRICS.durationMs, METRICS.durationMs));
    const search = widgets.find((w) => w.properties.title === 'Failures by error class')!.properties.metrics[0]![0] as { expression: string };
    expect(search.expression).toBe(`SEARCH('{${namespace},errorClass} MetricName="${METRICS.failuresByErrorClass}"', 'Sum', 300)`);
    expect(graphed('Executions in flight')!.map((m) => m[1])).toEqual(['ExecutionsStarted', 'ExecutionsSucceeded', 'ExecutionsFailed', 'ExecutionsAborted', 'ExecutionsTimedOut']);
  });

  it('alarms on the failure rate, an overdue session, non-empty dead-letter queues, reaper errors and runner throttles', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a: any) => a.Properties.AlarmDescription as string);
    expect(alarms).toEqual(expect.arrayContaining([
      expect.stringMatching(/sessions closed in an hour failed or timed out/),
      expect.stringMatching(/ran past the state machine timeout/),
      expect.stringMatching(/Schedules\/DeadLetters/),
      expect.stringMatching(/Events\/DeadLetters/),
      expect.stringMatching(/reaper failed/),
      expect.stringMatching(/runner Lambda was throttled/),
    ]));
    for (const a of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) expect((a as any).Properties.AlarmActions).toBeUndefined();
  });

  it('alarms on any throttle of the runner Lambda, summed over 5 minutes', () => {
    // Prepare: the runner function, by the image it runs (the one function of that kind)
    const json = template.toJSON() as CfnTemplate;
    const [runnerId] = Object.entries(json.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function' && (r.Properties as any).PackageType === 'Image').map(([id]) => id);
    // Act
    const throttles = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a: any) => a.Properties).filter((p) => p.MetricName === 'Throttles');
    // Assess
    expect(throttles).toEqual([expect.objectContaining({
      Namespace: 'AWS/Lambda', Dimensions: [{ Name: 'FunctionName', Value: { Ref: runnerId } }], Statistic: 'Sum', Period: 300,
      Threshold: 0, ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 1, TreatMissingData: 'notBreaching',
    })]);
  });

  it('sends every alarm to the SNS topic when one is given', () => {
    const app = new App({ context: noBundling });
    const topic = new Topic(new Stack(app, 'Topics'), 'Pager');
    const withTopic = Template.fromStack(new ClaudeSessionsStack(app, 'WithTopic', { alarmTopic: topic }));
    const alarms = Object.values(withTopic.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThanOrEqual(6);
    for (const a of alarms) expect(JSON.stringify((a as any).Properties.AlarmActions)).toMatch(/Pager/);
  });
});
