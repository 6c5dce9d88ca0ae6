import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { executionTimeout } from '../cdk/session-workflow.js';
import { fromTemplate } from '../lib/local/workflow-definition.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';
import { MAX_FARGATE_TIMEOUT_SECONDS } from '../lib/sessions/session-limits.js';
import { marshall } from '@aws-sdk/util-dynamodb';
import { prepareSession } from '../lib/sessions/session-creation.js';
import { toMilestoneItem } from '../lib/sessions/milestone-item.js';
import { synthesizedTemplate } from './support/synthesized.js';

// Each finding of the deploy-fidelity review, as the rendered template now has it.
const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const stack = new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Fidelity', {
  apiKeySecretName: 'team/anthropic', apiKeySecretKmsKeyArn: KEY_ARN, runAttempts: 3, runnerConcurrency: 5,
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

  it('ends a session whose runner stays throttled: after the retries, RunClaude\'s Catch closes it FAILED', () => {
    expect(states.RunClaude!.Catch).toContainEqual(expect.objectContaining({ ErrorEquals: ['States.ALL'], Next: 'CloseFailed' }));
    expect(states.CloseFailed!.Type).toBe('Task');
  });

  it('reserves the runner\'s concurrency only when runnerConcurrency says so (a new account has 10 in all)', () => {
    const reserved = (t: Template) => Object.entries(t.findResources('AWS::Lambda::Function'))
      .filter(([, fn]: [string, any]) => fn.Properties.ReservedConcurrentExecutions !== undefined)
      .map(([id, fn]: [string, any]) => [id.replace(/[0-9A-F]{8}$/, ''), fn.Properties.ReservedConcurrentExecutions]);
    expect(reserved(template)).toEqual([['RunnerFunction', 5]]);
    expect(reserved(synthesizedTemplate())).toEqual([]);
  });

  it('refuses a runnerConcurrency that is not a whole number from 1, naming it', () => {
    for (const runnerConcurrency of [0, 2.5, -1]) {
      expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), `Reserved${String(runnerConcurrency).replace(/\W/g, '')}`, { runnerConcurrency }))
        .toThrow(new RegExp(`runnerConcurrency must be a whole number from 1 .*not ${String(runnerConcurrency).replace('.', '\\.')}`));
    }
  });

  it('gives a Fargate task five minutes to its first heartbeat (a cold start pulls the image first)', () => {
    expect(states.RunClaudeOnFargate!.HeartbeatSeconds).toBeGreaterThanOrEqual(300);
  });

  it('lets an execution outlast every attempt on the longest runtime', () => {
    const { TimeoutSeconds } = fromTemplate(template.toJSON() as never, {}).asl;
    // Three runs of 8 h plus their 300 s margin to report, the 15 s and 30 s back-offs, an hour for the rest.
    expect(TimeoutSeconds).toBe(3 * (MAX_FARGATE_TIMEOUT_SECONDS + 300) + 15 + 30 + 3600);
    expect(executionTimeout(3).toSeconds()).toBe(TimeoutSeconds);
  });

  it('logs under /aws/vendedlogs/, which needs no entry in the account\'s log resource policy', () => {
    template.hasResourceProperties('AWS::Logs::LogGroup', { LogGroupName: Match.stringLikeRegexp('^/aws/vendedlogs/states/') });
    const [machine] = Object.values(template.findResources('AWS::StepFunctions::StateMachine')) as any[];
    const group = machine.Properties.LoggingConfiguration.Destinations[0].CloudWatchLogsLogGroup.LogGroupArn['Fn::GetAtt'][0];
    expect(template.toJSON().Resources[group].Properties.LogGroupName).toMatch(/^\/aws\/vendedlogs\/states\//);
  });
});

describe('the Fargate task\'s container overrides', () => {
  // The container overrides as Step Functions renders RunClaudeOnFargate's Parameters for a state.
  function renderedOverrides(state: Record<string, unknown>, token: string): unknown {
    const { Overrides } = states.RunClaudeOnFargate!.Parameters as { Overrides: { ContainerOverrides: { Name: string; Environment: Record<string, string>[] }[] } };
    return {
      ContainerOverrides: Overrides.ContainerOverrides.map((c) => ({
        Name: c.Name,
        Environment: c.Environment.map((e) => {
          if (e.Value !== undefined) return { Name: e.Name, Value: e.Value }; // a literal (RUNNER_CONTRACT)
          const path = e['Value.$']!;
          if (path === '$$.Task.Token') return { Name: e.Name, Value: token };
          const field = /^States\.JsonToString\(\$\.(\w+)\)$/.exec(path)?.[1];
          if (!field) throw new Error(`an override this test cannot render: ${path}`);
          return { Name: e.Name, Value: JSON.stringify(state[field]) };
        }),
      })),
    };
  }

  it('stay under ECS\'s 8 KiB at their largest: 64-character ids, a milestone lease with a workspace (in the input and the item), a retry, a 2,048-character token, whatever the prompt', () => {
    // Prepare: every field at its longest; the prompt a marker that must not travel
    const id = 'x'.repeat(64);
    const marker = 'PROMPT-MUST-NOT-TRAVEL';
    const executionArn = `arn:aws:states:ap-southeast-2:123456789012:execution:${'M'.repeat(80)}:${'e'.repeat(80)}`;
    const common = { prompt: `${marker}"\n`.repeat(4_000), projectId: id, taskId: id, maxTurns: 200, maxBudgetUsd: 99999.123456, timeoutSeconds: 28_800, runtime: 'fargate', trigger: 'schedule' };
    const policy = { maxConcurrentSessions: 1000, runAttempts: 10, retryBaseSeconds: 3600 };
    const start = (input: Record<string, unknown>) => prepareSession({ input: { ...common, ...input }, executionArn, executionName: 'e'.repeat(80) }, policy);
    const workspace = { repo: `https://git.example.com/${'r'.repeat(472)}.git`, ref: 'v'.repeat(200), branch: 'b'.repeat(200) };
    const milestoneTask = start({ milestoneId: '6a2fe0ee-6684-4d70-bd8f-d08e873e2f22', workspace });
    const item = {
      ...toMilestoneItem(milestoneTask.session.milestoneId!, id, new Date()), leaseSessionId: milestoneTask.session.sessionId, leaseExecutionArn: executionArn,
      lastSessionId: milestoneTask.session.sessionId, updatedAt: new Date().toISOString(),
      transcriptKey: `milestones/${milestoneTask.session.milestoneId}.jsonl`, transcriptSha256: 'f'.repeat(64), transcriptBytes: 2 ** 40, transcriptVersionId: 'v'.repeat(64), workspace,
    };
    const withWorkspace = start({ workspace });
    const big = 2 ** 53 - 1;
    const retry = { attempt: 10, prior: { usage: { inputTokens: big, outputTokens: big, cacheReadInputTokens: big, cacheCreationInputTokens: big }, numTurns: big, totalCostUsd: 123456.123456789, durationMs: big } };
    // Act
    const rendered = [
      renderedOverrides({ ...milestoneTask, milestone: { item: marshall(item) }, retry }, 't'.repeat(2_048)),
      renderedOverrides({ ...withWorkspace, retry }, 't'.repeat(2_048)),
    ].map((o) => JSON.stringify(o));
    // Assess: no prompt in them, and a kilobyte of room left
    expect(workspace.repo).toHaveLength(500);
    expect(rendered[0]).toContain('b'.repeat(200));
    for (const text of rendered) {
      expect(text).not.toContain(marker);
      expect(Buffer.byteLength(text, 'utf8')).toBeLessThan(8_192 - 1_024);
    }
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

describe('workspaces on AWS', () => {
  const withToken = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Git', { gitTokenSecretName: 'team/git', gitTokenScopes: ['https://github.com/acme'] }));
  const statements = (rolePrefix: string) => Object.values(withToken.findResources('AWS::IAM::Policy', {
    Properties: { Roles: [{ Ref: Match.stringLikeRegexp(`^${rolePrefix}`) }] },
  })).flatMap((p: any) => p.Properties.PolicyDocument.Statement);

  it('lets both runners read the git token secret, named to them by ARN, and put patches under workspaces/ only', () => {
    for (const role of ['RunnerFunctionServiceRole', 'FargateTaskTaskRole']) {
      expect(statements(role)).toContainEqual(expect.objectContaining({
        Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Resource: expect.objectContaining({ 'Fn::Join': expect.arrayContaining([expect.arrayContaining([':secret:team/git-??????'])]) }),
      }));
      expect(statements(role)).toContainEqual(expect.objectContaining({
        Action: 's3:PutObject', Resource: { 'Fn::Join': ['', [{ 'Fn::GetAtt': [expect.stringMatching(/^TranscriptsBucket/), 'Arn'] }, '/workspaces/*']] },
      }));
    }
    withToken.hasResourceProperties('AWS::Lambda::Function', {
      PackageType: 'Image', Environment: { Variables: Match.objectLike({ GIT_TOKEN_SECRET_ARN: Match.anyValue(), GIT_TOKEN_SCOPES: 'https://github.com/acme/' }) },
    });
  });

  it('refuses a git token without the hosts it may go to, and a scope that is not an https prefix, naming gitTokenScopes', () => {
    const stack = (props: object) => () => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'GitScopes', { gitTokenSecretName: 'team/git', ...props });
    expect(stack({})).toThrow(/gitTokenScopes must name where the git token may go/);
    expect(stack({ gitTokenScopes: ['http://github.com/acme/'] })).toThrow(/gitTokenScopes must be https URLs/);
    expect(stack({ gitTokenScopes: ['https://x:y@github.com/acme/'] })).toThrow(/gitTokenScopes must be https URLs/);
  });

  it('expires patches like closed transcripts, and the default stack has no git secret', () => {
    withToken.hasResourceProperties('AWS::S3::Bucket', { LifecycleConfiguration: { Rules: Match.arrayWith([Match.objectLike({ Id: 'expire-workspace-patches', Prefix: 'workspaces/' })]) } });
    expect(JSON.stringify(template.toJSON())).not.toContain('GIT_TOKEN_SECRET_ARN');
  });
});

describe('tools a session may name', () => {
  it('gives CreateSession and the API the deployment\'s allow-list, which both check', () => {
    const allowing = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Tools', { allowedTools: ['Read', 'Bash'] }));
    for (const service of ['claude-sessions-create-session', 'claude-sessions-api']) {
      allowing.hasResourceProperties('AWS::Lambda::Function', { Environment: { Variables: Match.objectLike({ POWERTOOLS_SERVICE_NAME: service, ALLOWED_TOOLS: 'Read,Bash' }) } });
    }
  });
});

describe('schedules at synth', () => {
  it('refuses a time zone Scheduler does not know, naming the entry and the field', () => {
    const entry = { name: 'nightly', expression: 'cron(0 3 * * ? *)', projectId: 'demo', prompt: 'p' };
    expect(() => parseSchedules([{ ...entry, timezone: 'Europe/Pari' }])).toThrow(/schedules\[0\] \(nightly\): timezone must be an IANA time zone/);
    expect(parseSchedules([{ ...entry, timezone: 'Europe/Paris' }])[0]!.timezone).toBe('Europe/Paris');
  });
});

describe('what a first deploy prints', () => {
  it('outputs every name the deploy guide then uses: the API, the state machine, the key\'s secret, the table and the bucket', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(Object.keys(outputs)).toEqual(expect.arrayContaining(['ApiUrl', 'StateMachineArn', 'ApiKeySecretArn', 'SessionTableName', 'TranscriptBucketName']));
    const [machine] = Object.keys(template.findResources('AWS::StepFunctions::StateMachine'));
    expect(outputs.StateMachineArn!.Value).toEqual({ Ref: machine });
    const [table] = Object.keys(template.findResources('AWS::DynamoDB::Table'));
    expect(outputs.SessionTableName!.Value).toEqual({ Ref: table });
    // The secret the stack was given by name: its ARN as Secrets Manager resolves a name.
    expect(JSON.stringify(outputs.ApiKeySecretArn!.Value)).toContain('secret:team/anthropic');
  });

  it('names no key secret when the model is Bedrock: there is none to put in', () => {
    const bedrock = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'FidelityBedrock', {
      provider: 'bedrock', model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
    }));
    expect(Object.keys(bedrock.toJSON().Outputs as object)).not.toContain('ApiKeySecretArn');
  });
});

describe('a runner task that stops before it reports', () => {
  it('is watched by a rule on its own family in its own cluster, stopped tasks only, whose target may only answer task tokens', () => {
    const [cluster] = Object.keys(template.findResources('AWS::ECS::Cluster'));
    const [family] = Object.values(template.findResources('AWS::ECS::TaskDefinition')).map((t: any) => t.Properties.Family);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecs'], 'detail-type': ['ECS Task State Change'],
        detail: { clusterArn: [{ 'Fn::GetAtt': [cluster, 'Arn'] }], lastStatus: ['STOPPED'], group: [`family:${family}`] },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TaskStopWatchServiceFunction'), 'Arn'] } })],
    });
    // Beside the traces every function of ours sends, task tokens only.
    expect(statementsOf('TaskStopWatchServiceFunction').map((s) => [s.Action, s.Resource])).toEqual([
      [['xray:PutTraceSegments', 'xray:PutTelemetryRecords'], '*'], ['states:SendTaskFailure', '*'],
    ]);
  });
});
