import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { executionTimeout } from '../cdk/session-workflow.js';
import { fromTemplate } from '../lib/local/workflow-definition.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';
import { MAX_FARGATE_TIMEOUT_SECONDS } from '../lib/sessions/session-limits.js';

// Each finding of the deploy-fidelity review, as the rendered template now has it.
const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const stack = new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Fidelity', {
  apiKeySecretName: 'team/anthropic', apiKeySecretKmsKeyArn: KEY_ARN, runAttempts: 3,
});
const template = Template.fromStack(stack);
const states = fromTemplate(template.toJSON() as never, {}).asl.States;

function statementsOf(rolePrefix: string): { Action: string | string[]; Resource: unknown; Condition?: unknown }[] {
  return Object.values(template.findResources('AWS::IAM::Policy', {
    Properties: { Roles: [{ Ref: Match.stringLikeRegexp(`^${rolePrefix}`) }] },
  })).flatMap((p: any) => p.Properties.PolicyDocument.Statement);
}

describe('the deployed workflow', () => {
  it('retries Lambda throttling on CreateSession and RunClaude, with a back-off', () => {
    for (const name of ['CreateSession', 'RunClaude']) {
      expect(states[name]!.Retry).toContainEqual(expect.objectContaining({
        ErrorEquals: ['Lambda.TooManyRequestsException'], IntervalSeconds: 2, BackoffRate: 2, MaxAttempts: 6,
      }));
    }
  });

  it('gives a Fargate task five minutes to its first heartbeat (a cold start pulls the image first)', () => {
    expect(states.RunClaudeOnFargate!.HeartbeatSeconds).toBeGreaterThanOrEqual(300);
  });

  it('lets an execution outlast every attempt on the longest runtime', () => {
    const { TimeoutSeconds } = fromTemplate(template.toJSON() as never, {}).asl;
    expect(TimeoutSeconds).toBe(executionTimeout(3).toSeconds());
    expect(TimeoutSeconds).toBeGreaterThan(3 * MAX_FARGATE_TIMEOUT_SECONDS + 45);
  });

  it('logs under /aws/vendedlogs/, which needs no entry in the account\'s log resource policy', () => {
    template.hasResourceProperties('AWS::Logs::LogGroup', { LogGroupName: Match.stringLikeRegexp('^/aws/vendedlogs/states/') });
    const [machine] = Object.values(template.findResources('AWS::StepFunctions::StateMachine')) as any[];
    const group = machine.Properties.LoggingConfiguration.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
    expect(template.toJSON().Resources[group].Properties.LogGroupName).toMatch(/^\/aws\/vendedlogs\/states\//);
  });
});

describe('the deployed grants', () => {
  it('lets the reaper read the session it closes', () => {
    const actions = statementsOf('ReaperServiceFunctionServiceRole').flatMap((s) => [s.Action].flat());
    expect(actions).toEqual(expect.arrayContaining(['dynamodb:GetItem', 'dynamodb:UpdateItem']));
  });

  it('lets both runners list the transcript prefix, so a missing transcript is NoSuchKey and not a 403', () => {
    for (const role of ['RunnerFunctionServiceRole', 'FargateTaskTaskRole']) {
      expect(statementsOf(role)).toContainEqual(expect.objectContaining({
        Action: 's3:ListBucket', Condition: { StringLike: { 's3:prefix': ['milestones/*'] } },
      }));
    }
  });

  it('lets both runners decrypt an imported secret\'s customer-managed key, through Secrets Manager only', () => {
    for (const role of ['RunnerFunctionServiceRole', 'FargateTaskTaskRole']) {
      expect(statementsOf(role)).toContainEqual(expect.objectContaining({
        Action: 'kms:Decrypt', Resource: KEY_ARN,
        Condition: { StringEquals: { 'kms:ViaService': expect.anything() } },
      }));
    }
  });

  it('refuses a key without its secret, naming both settings', () => {
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'NoSecret', { apiKeySecretKmsKeyArn: KEY_ARN }))
      .toThrow(/apiKeySecretKmsKeyArn is set but apiKeySecretName is not/);
  });
});

describe('schedules at synth', () => {
  it('refuses a time zone Scheduler does not know, naming the entry and the field', () => {
    const entry = { name: 'nightly', expression: 'cron(0 3 * * ? *)', projectId: 'demo', prompt: 'p' };
    expect(() => parseSchedules([{ ...entry, timezone: 'Europe/Pari' }])).toThrow(/schedules\[0\] \(nightly\): timezone must be an IANA time zone/);
    expect(parseSchedules([{ ...entry, timezone: 'Europe/Paris' }])[0]!.timezone).toBe('Europe/Paris');
  });
});
