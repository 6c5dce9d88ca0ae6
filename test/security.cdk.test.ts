import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';

// With one schedule, so what the schedules' role may do is asserted too.
const template = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Test', {
  schedules: parseSchedules([{ name: 'nightly', expression: 'cron(0 3 * * ? *)', projectId: 'demo', prompt: 'Summarise' }]),
}));
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: any }>;

/** Every action each role may take, from the inline policies attached to it. */
function actionsByRole(): Map<string, string[]> {
  const byRole = new Map<string, string[]>();
  for (const policy of Object.values(resources).filter((r) => r.Type === 'AWS::IAM::Policy')) {
    const actions = policy.Properties.PolicyDocument.Statement.flatMap((s: any) => [s.Action].flat());
    for (const role of policy.Properties.Roles) byRole.set(role.Ref, [...(byRole.get(role.Ref) ?? []), ...actions]);
  }
  return byRole;
}

describe('least privilege', () => {
  const roles = actionsByRole();
  const rolesWith = (action: string) => [...roles].filter(([, actions]) => actions.includes(action)).map(([role]) => role).sort();

  it('only the two runners may read the API key secret', () => {
    expect(rolesWith('secretsmanager:GetSecretValue')).toEqual([
      expect.stringMatching(/^FargateTaskTaskRole/),
      expect.stringMatching(/^RunnerFunctionServiceRole/),
    ]);
  });

  it('the runners may only update their session and its project\'s totals, for a run whose execution ended under it: the state machine writes every other close', () => {
    for (const [role, actions] of roles) {
      if (/^(RunnerFunction|FargateTaskTaskRole)/.test(role)) {
        expect(actions.filter((a) => a.startsWith('dynamodb:'))).toEqual(['dynamodb:UpdateItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem']);
      }
    }
    const runnerStatements = Object.values(resources)
      .filter((r: any) => r.Type === 'AWS::IAM::Policy' && /RunnerFunction|FargateTaskTaskRole/.test(JSON.stringify(r.Properties.Roles)))
      .flatMap((p: any) => p.Properties.PolicyDocument.Statement)
      .filter((st: any) => JSON.stringify(st.Action).includes('dynamodb:'));
    // Per runner: its session (the claim, a stopped run's spend; GetItem when that record is refused), and the totals that spend moves.
    const sessionStatement = { Action: ['dynamodb:UpdateItem', 'dynamodb:GetItem'], Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['SESSION#*'] } } };
    const totalsStatement = { Action: 'dynamodb:UpdateItem', Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['TOTALS#*'] } } };
    expect(runnerStatements).toEqual([sessionStatement, totalsStatement, sessionStatement, totalsStatement].map((st) => expect.objectContaining(st)));
  });

  it('only CreateSession puts sessions (and counts them in the totals) and the state machine updates them (the runners a stopped run\'s spend); the API writes milestone items only; the reaper and the sweeper only update', () => {
    // The API's PutItem/UpdateItem carry a LeadingKeys condition (MILESTONE#*), asserted in triggers.cdk.test.ts.
    expect(rolesWith('dynamodb:PutItem').sort()).toEqual([expect.stringMatching(/^Http/), expect.stringMatching(/^SessionCreator/)]);
    const creator = Object.values(resources).filter((r: any) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes('SessionCreator'));
    const put = creator.flatMap((p: any) => p.Properties.PolicyDocument.Statement).find((st: any) => JSON.stringify(st.Action).includes('dynamodb:PutItem'));
    expect(put).toMatchObject({
      Action: ['dynamodb:PutItem', 'dynamodb:GetItem'],
      Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['SESSION#*'] } },
    });
    // CreateSession's update is the new session's count in its project's totals and its project's registry item, nothing else.
    const creatorUpdates = creator.flatMap((p: any) => p.Properties.PolicyDocument.Statement).filter((st: any) => JSON.stringify(st.Action).includes('dynamodb:UpdateItem'));
    expect(creatorUpdates).toEqual([expect.objectContaining({ Action: 'dynamodb:UpdateItem', Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['TOTALS#*', 'PROJECTS'] } } })]);
    expect(rolesWith('dynamodb:UpdateItem').sort()).toEqual([
      expect.stringMatching(/^FargateTaskTaskRole/),
      expect.stringMatching(/^Http/),
      expect.stringMatching(/^Reaper/),
      expect.stringMatching(/^RunnerFunction/),
      expect.stringMatching(/^SessionCreator/),
      expect.stringMatching(/^Sweeper/),
      expect.stringMatching(/^WorkflowStateMachineRole/),
    ]);
    expect(rolesWith('dynamodb:DeleteItem')).toEqual([]);
  });

  it('only the runners read and write transcripts, and only under milestones/', () => {
    expect(rolesWith('s3:PutObject').sort()).toEqual([expect.stringMatching(/^FargateTaskTaskRole/), expect.stringMatching(/^RunnerFunctionServiceRole/)]);
    expect(rolesWith('s3:GetObject').sort()).toEqual([expect.stringMatching(/^FargateTaskTaskRole/), expect.stringMatching(/^RunnerFunctionServiceRole/)]);
    expect(rolesWith('s3:DeleteObject')).toEqual([]);
    const bucket = Object.values(resources).find((r: any) => r.Type === 'AWS::S3::Bucket') as any;
    expect(bucket.Properties).toMatchObject({
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
    });
    const policy = Object.values(resources).find((r: any) => r.Type === 'AWS::S3::BucketPolicy') as any;
    expect(JSON.stringify(policy.Properties.PolicyDocument)).toContain('"aws:SecureTransport":"false"');
  });

  it('only the API function and the schedules may start executions', () => {
    expect(rolesWith('states:StartExecution')).toEqual([expect.stringMatching(/^Http/), expect.stringMatching(/^SchedulerRoleForTarget/)]);
  });
});

describe('no secret in the template', () => {
  it('no function or container has the API key in its environment', () => {
    for (const r of Object.values(resources)) {
      const envs =
        r.Type === 'AWS::Lambda::Function' ? [r.Properties.Environment?.Variables ?? {}]
          : r.Type === 'AWS::ECS::TaskDefinition' ? r.Properties.ContainerDefinitions.map((c: any) => Object.fromEntries((c.Environment ?? []).map((e: any) => [e.Name, e.Value])))
            : [];
      for (const env of envs) {
        expect(Object.keys(env)).not.toContain('ANTHROPIC_API_KEY');
        // Where the key is named, it is by a reference to the secret, never a literal value.
        if ('API_KEY_SECRET_ARN' in env) expect(env.API_KEY_SECRET_ARN).toEqual({ Ref: expect.stringMatching(/^AnthropicApiKey/) });
      }
    }
  });
});

describe('data at rest and in transit', () => {
  it('every log group has a retention', () => {
    const groups = Object.values(resources).filter((r) => r.Type === 'AWS::Logs::LogGroup');
    expect(groups.length).toBeGreaterThan(4);
    for (const g of groups) expect(g.Properties.RetentionInDays).toBeGreaterThan(0);
  });

  it('queues are encrypted and refuse plain HTTP', () => {
    const queues = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::SQS::Queue');
    for (const [id, q] of queues) {
      expect(q.Properties.SqsManagedSseEnabled).toBe(true);
      const policy = Object.values(resources).find((r) => r.Type === 'AWS::SQS::QueuePolicy' && JSON.stringify(r.Properties.Queues).includes(id));
      expect(JSON.stringify(policy?.Properties.PolicyDocument)).toContain('"aws:SecureTransport":"false"');
    }
  });

  it('the table is encrypted and recoverable to any point in time', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      SSESpecification: { SSEEnabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
  });
});

describe('limits on AWS', () => {
  it('give CreateSession the retention, and refuse one that is not whole days at synth, naming the setting', () => {
    const app = () => new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const retained = Template.fromStack(new ClaudeSessionsStack(app(), 'Retained', { sessionRetentionDays: 90 }));
    retained.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('Validates a session input and creates the session item'),
      Environment: { Variables: Match.objectLike({ SESSION_RETENTION_DAYS: '90' }) },
    });
    expect(() => new ClaudeSessionsStack(app(), 'Half', { sessionRetentionDays: 0.5 })).toThrow(/^sessionRetentionDays must be a whole number of days from 1 to 36500, not 0.5/);
  });

  it('pass the limits to CreateSession and the API, and let CreateSession only read its project\'s totals when a budget is set', () => {
    const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const limited = Template.fromStack(new ClaudeSessionsStack(app, 'Limited', { maxConcurrentSessions: 3, monthlyBudgetUsd: 50 }));
    limited.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('Validates a session input and creates the session item'),
      Environment: { Variables: Match.objectLike({ MAX_CONCURRENT_SESSIONS: '3', MONTHLY_BUDGET_USD: '50' }) },
    });
    limited.hasResourceProperties('AWS::Lambda::Function', {
      Description: 'claude-sessions HTTP API',
      Environment: { Variables: Match.objectLike({ MAX_CONCURRENT_SESSIONS: '3', MONTHLY_BUDGET_USD: '50' }) },
    });
    const policies = Object.values(limited.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^SessionCreator') }] } }));
    const dynamo = policies.flatMap((p: any) => p.Properties.PolicyDocument.Statement).filter((s: any) => JSON.stringify(s.Action).includes('dynamodb'));
    const table = { 'Fn::GetAtt': [expect.stringMatching(/^SessionsTable/), 'Arn'] };
    const leading = (...keys: string[]) => ({ 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': keys } });
    // The budget reads the month's day totals (TOTALS#): no index, no session item.
    expect(dynamo).toEqual([
      expect.objectContaining({ Action: ['dynamodb:PutItem', 'dynamodb:GetItem'], Resource: table, Condition: leading('SESSION#*') }),
      expect.objectContaining({ Action: 'dynamodb:UpdateItem', Resource: table, Condition: leading('TOTALS#*', 'PROJECTS') }),
      expect.objectContaining({ Action: ['dynamodb:GetItem', 'dynamodb:Query'], Resource: table, Condition: leading('TOTALS#*') }),
    ]);
  });

  it('let CreateSession read the projects\' items (a project\'s own concurrency limit) only when the deployment sets no limit', () => {
    const app = () => new App({ context: { 'aws:cdk:bundling-stacks': [] } });
    const creatorDynamo = (template: Template) => Object.values(template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^SessionCreator') }] } }))
      .flatMap((p: any) => p.Properties.PolicyDocument.Statement).filter((s: any) => JSON.stringify(s.Action).includes('dynamodb'));
    const unlimited = creatorDynamo(Template.fromStack(new ClaudeSessionsStack(app(), 'Unlimited', {})));
    expect(unlimited).toContainEqual(expect.objectContaining({
      Action: 'dynamodb:GetItem', Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['PROJECT#*'] } },
    }));
    const limited = creatorDynamo(Template.fromStack(new ClaudeSessionsStack(app(), 'StackLimited', { maxConcurrentSessions: 3 })));
    expect(JSON.stringify(limited)).not.toContain('PROJECT#');
  });
});
