import { marshall } from '@aws-sdk/util-dynamodb';
import { App } from 'aws-cdk-lib';
import { AccountRootPrincipal, Role } from 'aws-cdk-lib/aws-iam';
import { Template } from 'aws-cdk-lib/assertions';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { describe, expect, inject, it } from 'vitest';
import { MILESTONE_SK, milestonePk } from '../lib/sessions/milestone-item.js';
import { SESSION_SK, sessionPk } from '../lib/sessions/session-item.js';
import { checkCalls, policiesOf, type AwsCall, type PolicyStatement } from './support/iam-check.js';
import { resolveTemplate, templateResolver, type CfnTemplate } from './support/template-resolver.js';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';

// The template `cdk synth` made for this run: what a deploy would ship.
const template = JSON.parse(readFileSync(join(inject('cdkOut'), 'ClaudeSessions.template.json'), 'utf8')) as CfnTemplate;
const resolver = templateResolver(template);
const resolved = resolveTemplate(template);

/** The one resource of a type whose logical id starts with the construct path's prefix. */
function logicalId(prefix: string, type: string): string {
  const ids = Object.keys(template.Resources).filter((id) => id.startsWith(prefix) && template.Resources[id]!.Type === type);
  if (ids.length !== 1) throw new Error(`expected one ${type} starting with ${prefix}, found ${JSON.stringify(ids)}`);
  return ids[0]!;
}

const table = logicalId('SessionsTable', 'AWS::DynamoDB::Table');
const stateMachineRole = logicalId('WorkflowStateMachineRole', 'AWS::IAM::Role');
const apiRole = logicalId('HttpServiceFunctionServiceRole', 'AWS::IAM::Role');
const reaperRole = logicalId('ReaperServiceFunctionServiceRole', 'AWS::IAM::Role');
const reaperFunction = logicalId('ReaperServiceFunction', 'AWS::Lambda::Function');

/** A DynamoDB item call as the SDK sends it: the key in AttributeValue JSON. */
function itemCall(principal: string, action: string, tableName: string, pk: string, sk: string): AwsCall {
  const key = marshall({ pk, sk });
  return { principal, service: 'dynamodb', action, params: action === 'PutItem' ? { TableName: tableName, Item: key } : { TableName: tableName, Key: key } };
}

describe('IAM equals the calls: the evaluator against the synthesized template', () => {
  it('lets the state machine update a session but denies it a DeleteItem, naming principal, action and resource', async () => {
    // Prepare
    const session = sessionPk(uuidv4());
    const calls = [
      itemCall(stateMachineRole, 'UpdateItem', resolver.physicalName(table), session, SESSION_SK),
      itemCall(stateMachineRole, 'DeleteItem', resolver.physicalName(table), session, SESSION_SK),
    ];
    // Act
    const { denied } = await checkCalls(template, calls);
    // Assess: the table ARN is the one the policy names, built by the same resolver.
    expect(resolver.arnOf(table)).toBe(`arn:aws:dynamodb:us-east-1:123456789012:table/${resolver.physicalName(table)}`);
    expect(denied).toEqual([
      { principal: stateMachineRole, action: 'dynamodb:DeleteItem', resource: resolver.arnOf(table), reason: expect.stringMatching(/^ImplicitlyDenied/) },
    ]);
  });

  it('honours a dynamodb:LeadingKeys condition: the API role may write a MILESTONE# item but not a SESSION# one', async () => {
    // Prepare: the grant under test, found in the template rather than assumed.
    const conditioned = policiesOf(template, apiRole)
      .flatMap((p) => [p.document.Statement].flat() as PolicyStatement[])
      .find((s) => [s.Action].flat().includes('dynamodb:PutItem'));
    expect(conditioned?.Condition).toEqual({ 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['MILESTONE#*'] } });
    const milestone = itemCall(apiRole, 'PutItem', resolver.physicalName(table), milestonePk(uuidv4()), MILESTONE_SK);
    const session = itemCall(apiRole, 'PutItem', resolver.physicalName(table), sessionPk(uuidv4()), SESSION_SK);
    // Act
    const { denied } = await checkCalls(template, [milestone, session]);
    // Assess: only the SESSION# write is denied, and the reason names the unmet condition.
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ principal: apiRole, action: 'dynamodb:PutItem', resource: resolver.arnOf(table) });
    expect(denied[0]!.reason).toMatch(/condition does not/);
    expect(denied[0]!.reason).toContain(`dynamodb:LeadingKeys=${(session.params.Item as Record<string, { S: string }>).pk!.S}`);
  });

  it('the reaper\'s role can GetItem the session it closes', async () => {
    // Prepare: the reaper reads the session (repository.get) with the table name its environment gives it.
    const environment = (resolved.Resources[reaperFunction]!.Properties!.Environment as { Variables: Record<string, string> }).Variables;
    const call = itemCall(reaperRole, 'GetItem', environment.TABLE_NAME!, sessionPk(uuidv4()), SESSION_SK);
    // Act
    const { denied } = await checkCalls(template, [call]);
    // Assess
    expect(denied).toEqual([]);
  });

  it('reports the grants a principal\'s calls never used', async () => {
    // Prepare: only one of the state machine's calls.
    const calls = [itemCall(stateMachineRole, 'UpdateItem', resolver.physicalName(table), sessionPk(uuidv4()), SESSION_SK)];
    // Act
    const { denied, unusedGrants } = await checkCalls(template, calls);
    // Assess: the used grant is not reported; the unexercised ones (start the runner, pass the Fargate roles) are.
    expect(denied).toEqual([]);
    const unused = unusedGrants.map((g) => `${g.principal} ${g.action} ${g.resource}`);
    expect(unused).not.toContain(`${stateMachineRole} dynamodb:UpdateItem ${resolver.arnOf(table)}`);
    expect(unused).toEqual(
      expect.arrayContaining([
        `${stateMachineRole} lambda:InvokeFunction ${resolver.arnOf(logicalId('RunnerFunction', 'AWS::Lambda::Function'))}`,
        `${stateMachineRole} iam:PassRole ${resolver.arnOf(logicalId('FargateTaskTaskRole', 'AWS::IAM::Role'))}`,
      ]),
    );
    expect(new Set(unusedGrants.map((g) => g.principal))).toEqual(new Set([stateMachineRole]));
  });
});

describe('CodeCommit repositories the runners sign for', () => {
  // `-c codeCommitRepositories=widgets,arn:…:gadgets`, as the stack props app.ts makes of it.
  const GADGETS = 'arn:aws:codecommit:eu-west-1:123456789012:gadgets';
  const stack = (codeCommitRepositories: string[]) =>
    new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', { codeCommitRepositories });
  const granting = Template.fromStack(stack(['widgets', GADGETS])).toJSON() as CfnTemplate;
  const roleOf = (prefix: string) => Object.keys(granting.Resources).find((id) => id.startsWith(prefix) && granting.Resources[id]!.Type === 'AWS::IAM::Role')!;
  const runnerRoles = [roleOf('RunnerFunctionServiceRole'), roleOf('FargateTaskTaskRole')];
  const gitCall = (principal: string, action: string, repositoryName: string, region?: string): AwsCall =>
    ({ principal, service: 'codecommit', action, params: { repositoryName, ...(region ? { region } : {}) } });

  it('lets both runner roles pull and push the named repositories, and no other', async () => {
    // Prepare
    const allowed = runnerRoles.flatMap((role) => ['GitPull', 'GitPush'].flatMap((action) => [gitCall(role, action, 'widgets'), gitCall(role, action, 'gadgets', 'eu-west-1')]));
    const others = runnerRoles.flatMap((role) => [gitCall(role, 'GitPush', 'payroll'), gitCall(role, 'GitPull', 'gadgets')]);
    // Act
    const { denied } = await checkCalls(granting, [...allowed, ...others]);
    // Assess: only the other repositories (payroll; gadgets in the stack's own region) are denied
    expect(denied.map((d) => `${d.principal} ${d.action} ${d.resource}`).sort()).toEqual(runnerRoles.flatMap((role) => [
      `${role} codecommit:GitPull arn:aws:codecommit:us-east-1:123456789012:gadgets`,
      `${role} codecommit:GitPush arn:aws:codecommit:us-east-1:123456789012:payroll`,
    ]).sort());
  });

  it('grants exactly GitPull and GitPush on exactly those ARNs, to the runner roles only', () => {
    const codeCommitGrants = Object.entries(granting.Resources)
      .filter(([, r]) => r.Type === 'AWS::IAM::Role')
      .flatMap(([role]) => policiesOf(granting, role).flatMap((p) => ([p.document.Statement].flat() as PolicyStatement[])
        .filter((s) => JSON.stringify(s.Action).includes('codecommit:'))
        .map((s) => ({ role, effect: s.Effect, actions: [s.Action].flat(), resources: [s.Resource].flat() }))));
    expect(new Set(codeCommitGrants.map((g) => g.role))).toEqual(new Set(runnerRoles));
    for (const role of runnerRoles) {
      const grants = codeCommitGrants.filter((g) => g.role === role && g.effect === 'Allow');
      // Beside them, the one Deny of pushes to protected branches (the test below).
      expect(codeCommitGrants.filter((g) => g.role === role && g.effect === 'Deny').map((g) => g.actions)).toEqual([['codecommit:GitPush']]);
      expect(grants.every((g) => JSON.stringify(g.actions) === JSON.stringify(['codecommit:GitPull', 'codecommit:GitPush']))).toBe(true);
      expect(grants.flatMap((g) => g.resources).map((r) => templateResolver(granting).resolve(r)).sort()).toEqual([GADGETS, 'arn:aws:codecommit:us-east-1:123456789012:widgets']);
    }
    // The default deployment (no repositories named) grants none.
    expect(JSON.stringify(template)).not.toContain('codecommit:');
  });

  it('denies a push to a protected branch (main, master by default; the deployment\'s globs), whatever the runner asks', async () => {
    // Prepare: the default deployment, one protecting release/* only, one protecting none
    const push = (template: CfnTemplate, branch: string) => checkCalls(template, [{ ...gitCall(runnerRoles[0]!, 'GitPush', 'widgets'), params: { repositoryName: 'widgets', references: [`refs/heads/${branch}`] } }]);
    const withBranches = (protectedBranches: string[]) => Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
      codeCommitRepositories: ['widgets'], protectedBranches,
    })).toJSON() as CfnTemplate;
    const releases = withBranches(['release/*']);
    const none = withBranches([]);
    // Act + Assess
    expect((await push(granting, 'main')).denied).toHaveLength(1);
    expect((await push(granting, 'master')).denied).toHaveLength(1);
    expect((await push(granting, 'claude-sessions/0c9f3f6e')).denied).toEqual([]);
    expect((await push(releases, 'release/2026-11')).denied).toHaveLength(1);
    expect((await push(releases, 'release/2026/11')).denied).toHaveLength(1); // as assertBranchAllowed: `*` crosses `/`
    expect((await push(releases, 'main')).denied).toEqual([]);
    expect((await push(none, 'main')).denied).toEqual([]);
    expect(JSON.stringify(none)).not.toContain('codecommit:References');
  });

  it('refuses a name CodeCommit would not take at synth, naming the setting', () => {
    expect(() => stack(['widgets', 'my repo'])).toThrow(/codeCommitRepositories must be CodeCommit repository names .* not "my repo"/);
    expect(() => stack(['arn:aws:codecommit:eu-west-1:1234:gadgets'])).toThrow(/codeCommitRepositories must be .*arn:aws:codecommit:eu-west-1:1234:gadgets/);
  });
});

describe('who may use which project: execute-api:Invoke on the project\'s paths', () => {
  // A caller's role as a deployer would give it: SessionApi.grantProjectAccess(role, 'demo').
  const stack = new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions');
  stack.api.grantProjectAccess(new Role(stack, 'DemoCaller', { assumedBy: new AccountRootPrincipal() }), 'demo');
  const scoped = Template.fromStack(stack).toJSON() as CfnTemplate;
  const scopedResolver = templateResolver(scoped);
  const idOf = (prefix: string, type: string) => Object.keys(scoped.Resources).find((id) => id.startsWith(prefix) && scoped.Resources[id]!.Type === type)!;
  const caller = idOf('DemoCaller', 'AWS::IAM::Role');
  const restApiId = scopedResolver.ref(idOf('HttpApi', 'AWS::ApiGateway::RestApi'));
  /** A signed request to the deployed API, as API Gateway authorises it. */
  const invoke = (method: string, path: string): AwsCall => ({ principal: caller, service: 'execute-api', action: 'Invoke', params: { restApiId, stage: 'v1', method, path } });
  /** Every route of lib/api/router.ts, for one project. */
  const routes = (project: string): AwsCall[] => {
    const id = uuidv4();
    return [
      invoke('POST', `/projects/${project}/sessions`), invoke('GET', `/projects/${project}/sessions`), invoke('GET', `/projects/${project}/sessions/${id}`),
      invoke('GET', `/projects/${project}/usage`), invoke('POST', `/projects/${project}/milestones`), invoke('GET', `/projects/${project}/milestones/${id}`),
      invoke('POST', `/projects/${project}/milestones/${id}/close`),
    ];
  };
  const denied = async (calls: AwsCall[]) => (await checkCalls(scoped, calls)).denied.map((d) => d.resource.replace(/^.*?\/v1\//, ''));

  it('renders the grant on the project\'s paths of this API\'s stage, every method', () => {
    const statements = policiesOf(scoped, caller).flatMap((p) => [p.document.Statement].flat() as PolicyStatement[]);
    expect(statements).toEqual([{
      Effect: 'Allow', Action: 'execute-api:Invoke',
      Resource: [`arn:aws:execute-api:us-east-1:123456789012:${restApiId}/v1/*/projects/demo`, `arn:aws:execute-api:us-east-1:123456789012:${restApiId}/v1/*/projects/demo/*`],
    }]);
  });

  it('allows a principal granted project demo every route of demo', async () => {
    expect(await denied(routes('demo'))).toEqual([]);
  });

  it('refuses it every route of another project, one whose id starts with demo, and the list of every project', async () => {
    // Act
    const refused = await denied([...routes('other'), ...routes('demo-evil'), invoke('GET', '/projects')]);
    // Assess: each one, by its request ARN
    expect(refused).toEqual(expect.arrayContaining(['POST/projects/other/sessions', 'GET/projects/other/usage', 'POST/projects/demo-evil/sessions', 'GET/projects']));
    expect(refused).toHaveLength(7 + 7 + 1);
  });

  it('names a project id it cannot scope to', () => {
    expect(() => stack.api.grantProjectAccess(new AccountRootPrincipal(), 'demo*')).toThrow(/projectId "demo\*" must be 1-64 characters/);
  });
});

describe('the GitHub webhook\'s function: start the one state machine, read its one secret', () => {
  // `-c githubWebhookSecretName=claude/github-webhook -c githubTriggers=…`, as app.ts passes them.
  const withWebhook = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
    apiKeySecretName: 'claude/anthropic', githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  })).toJSON() as CfnTemplate;
  const idOf = (prefix: string, type: string) => Object.keys(withWebhook.Resources).filter((id) => id.startsWith(prefix) && withWebhook.Resources[id]!.Type === type);
  const [webhookRole] = idOf('GitHubServiceFunctionServiceRole', 'AWS::IAM::Role');
  const machine = templateResolver(withWebhook).arnOf(idOf('WorkflowStateMachine', 'AWS::StepFunctions::StateMachine')[0]!);
  const call = (service: string, action: string, params: Record<string, unknown>): AwsCall => ({ principal: webhookRole!, service, action, params });

  it('may StartExecution on the workflow and GetSecretValue on its secret, and nothing else asked of it', async () => {
    // Prepare: what the function does, and what it must not be able to do
    const allowed = [call('states', 'StartExecution', { stateMachineArn: machine }), call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/github-webhook' })];
    const refused = [
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/anthropic' }),
      call('states', 'StartExecution', { stateMachineArn: machine.replace(/:stateMachine:.*/, ':stateMachine:Other') }),
      call('states', 'StopExecution', { executionArn: `${machine.replace(':stateMachine:', ':execution:')}:${uuidv4()}` }),
      itemCall(webhookRole!, 'GetItem', 'ClaudeSessions-SessionsTable', sessionPk(uuidv4()), SESSION_SK),
    ];
    // Act
    const { denied, unusedGrants } = await checkCalls(withWebhook, [...allowed, ...refused]);
    // Assess: exactly the four refused calls are denied, and the two allowed ones use every grant the role
    // holds beyond its logs and traces: it holds nothing more
    expect(denied.map((d) => d.action)).toEqual(['secretsmanager:GetSecretValue', 'states:StartExecution', 'states:StopExecution', 'dynamodb:GetItem']);
    expect(denied[0]!.resource).toContain(':secret:claude/anthropic');
    expect(unusedGrants.filter((g) => !/^(xray|logs):/.test(g.action))).toEqual([]);
  });

  it('is not deployed, nor its route, without a webhook secret', () => {
    expect(JSON.stringify(template)).not.toContain('webhooks');
    expect(Object.keys(template.Resources).filter((id) => id.startsWith('GitHub'))).toEqual([]);
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', { githubWebhookSecretName: 'claude/github-webhook' }))
      .toThrow(/githubWebhookSecretName and githubTriggers go together/);
  });
});

describe('the GitHub reporter\'s function: read a session and the git token, write nothing to the table', () => {
  // The webhook and a git token on, as a deployment that reports on GitHub has them.
  const withReporter = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
    apiKeySecretName: 'claude/anthropic', gitTokenSecretName: 'claude/git', gitTokenScopes: ['https://github.com/acme/'],
    githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  })).toJSON() as CfnTemplate;
  const resolver_ = templateResolver(withReporter);
  const idOf = (prefix: string, type: string) => Object.keys(withReporter.Resources).filter((id) => id.startsWith(prefix) && withReporter.Resources[id]!.Type === type);
  const [reporterRole] = idOf('GitHubReporterServiceFunctionServiceRole', 'AWS::IAM::Role');
  const tableName = resolver_.physicalName(idOf('SessionsTable', 'AWS::DynamoDB::Table')[0]!);
  const queue = resolver_.physicalName(idOf('GitHubReporterDeadLetters', 'AWS::SQS::Queue')[0]!);
  const call = (service: string, action: string, params: Record<string, unknown>): AwsCall => ({ principal: reporterRole!, service, action, params });

  it('may GetItem a session, read the git token and send to its dead-letter queue, and nothing else asked of it', async () => {
    // Prepare: what reportSession and Lambda's failure destination do, and what the role must not be able to do
    const allowed = [
      itemCall(reporterRole!, 'GetItem', tableName, sessionPk(uuidv4()), SESSION_SK),
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/git' }),
      call('sqs', 'SendMessage', { QueueUrl: `https://sqs.us-east-1.amazonaws.com/123456789012/${queue}` }),
    ];
    const refused = [
      itemCall(reporterRole!, 'UpdateItem', tableName, sessionPk(uuidv4()), SESSION_SK),
      itemCall(reporterRole!, 'GetItem', tableName, milestonePk(uuidv4()), MILESTONE_SK),
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/github-webhook' }),
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/anthropic' }),
    ];
    // Act
    const { denied, unusedGrants } = await checkCalls(withReporter, [...allowed, ...refused]);
    // Assess: exactly the refused calls are denied; beyond logs, traces and the queue's two reads the SQS grant
    // brings, the allowed calls use every grant the role holds
    expect(denied.map((d) => `${d.action} ${d.resource.split(':').pop()}`)).toEqual([
      `dynamodb:UpdateItem table/${tableName}`, `dynamodb:GetItem table/${tableName}`,
      expect.stringMatching(/^secretsmanager:GetSecretValue claude\/github-webhook/), expect.stringMatching(/^secretsmanager:GetSecretValue claude\/anthropic/),
    ]);
    expect(unusedGrants.filter((g) => !/^(xray|logs):|^sqs:GetQueue(Attributes|Url)$/.test(g.action))).toEqual([]);
  });

  it('hears only the Session Closed events of GitHub sessions, on the bus the events go to, with retries and a dead-letter queue', () => {
    // Prepare
    const [ruleId] = idOf('GitHubReporterGitHubSessionClosed', 'AWS::Events::Rule');
    const rule = withReporter.Resources[ruleId!]!.Properties as any;
    const [invokeConfig] = Object.values(withReporter.Resources).filter((r) => r.Type === 'AWS::Lambda::EventInvokeConfig') as any[];
    // Assess
    expect(rule.EventPattern).toEqual({ source: ['claude-sessions'], 'detail-type': ['Session Closed'], detail: { trigger: ['github'] } });
    expect(rule.Targets[0]).toMatchObject({ RetryPolicy: { MaximumRetryAttempts: 8 }, DeadLetterConfig: { Arn: { 'Fn::GetAtt': [expect.stringMatching(/^GitHubReporterDeadLetters/), 'Arn'] } } });
    expect(invokeConfig.Properties).toMatchObject({ MaximumRetryAttempts: 2, DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [expect.stringMatching(/^GitHubReporterDeadLetters/), 'Arn'] } } } });
  });

  it('is not deployed without a git token, nor without the webhook', () => {
    expect(Object.keys(withWebhookOnly().Resources).filter((id) => id.startsWith('GitHubReporter'))).toEqual([]);
    expect(Object.keys(template.Resources).filter((id) => id.startsWith('GitHubReporter'))).toEqual([]);
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', { githubApiUrl: 'http://github.example.com/api/v3' }))
      .toThrow(/githubApiUrl must be the https URL of GitHub's REST API/);
  });
});

describe('a GitHub App\'s key: read by the token minter and the reporter, never by a runner', () => {
  // `-c githubAppSecretName=claude/github-app` with the webhook, as app.ts passes them.
  const withApp = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
    apiKeySecretName: 'claude/anthropic', githubAppSecretName: 'claude/github-app', gitTokenScopes: ['https://github.com/acme/'],
    githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  })).toJSON() as CfnTemplate;
  const resolver_ = templateResolver(withApp);
  const idOf = (prefix: string, type: string) => Object.keys(withApp.Resources).filter((id) => id.startsWith(prefix) && withApp.Resources[id]!.Type === type);
  const [minterRole] = idOf('GitTokenMinterServiceFunctionServiceRole', 'AWS::IAM::Role');
  const [reporterRole] = idOf('GitHubReporterServiceFunctionServiceRole', 'AWS::IAM::Role');
  const runnerRoles = [idOf('RunnerFunctionServiceRole', 'AWS::IAM::Role')[0]!, idOf('FargateTaskTaskRole', 'AWS::IAM::Role')[0]!];
  const minter = resolver_.arnOf(idOf('GitTokenMinterServiceFunction', 'AWS::Lambda::Function')[0]!);
  const readApp = (principal: string): AwsCall => ({ principal, service: 'secretsmanager', action: 'GetSecretValue', params: { SecretId: 'claude/github-app' } });
  const invokeMinter = (principal: string, functionName = minter): AwsCall => ({ principal, service: 'lambda', action: 'Invoke', params: { FunctionName: functionName } });

  it('lets the minter and the reporter read the App\'s secret and the runners invoke the minter; denies the runners the secret and the minter anything else', async () => {
    // Prepare
    const allowed = [readApp(minterRole!), readApp(reporterRole!), ...runnerRoles.map((role) => invokeMinter(role))];
    const refused = [
      ...runnerRoles.map(readApp),
      invokeMinter(reporterRole!),
      { principal: minterRole!, service: 'secretsmanager', action: 'GetSecretValue', params: { SecretId: 'claude/anthropic' } },
      { principal: minterRole!, service: 'secretsmanager', action: 'GetSecretValue', params: { SecretId: 'claude/github-webhook' } },
    ];
    // Act
    const { denied, unusedGrants } = await checkCalls(withApp, [...allowed, ...refused]);
    // Assess: exactly the refused calls are denied, and the minter holds nothing beyond the App's secret, logs and traces
    expect(denied.map((d) => `${d.principal} ${d.action} ${d.resource.split(':').slice(5).join(':')}`)).toEqual([
      ...runnerRoles.map((role) => expect.stringMatching(new RegExp(`^${role} secretsmanager:GetSecretValue secret:claude/github-app`))),
      expect.stringMatching(new RegExp(`^${reporterRole} lambda:InvokeFunction function:`)),
      expect.stringMatching(new RegExp(`^${minterRole} secretsmanager:GetSecretValue secret:claude/anthropic`)),
      expect.stringMatching(new RegExp(`^${minterRole} secretsmanager:GetSecretValue secret:claude/github-webhook`)),
    ]);
    expect(unusedGrants.filter((g) => g.principal === minterRole && !/^(xray|logs):/.test(g.action))).toEqual([]);
  });

  it('gives the runners the minter, not a token secret, and the reporter the App\'s secret; refuses a token and an App together', () => {
    const environments = Object.values(withApp.Resources).filter((r) => r.Type === 'AWS::Lambda::Function').map((r) => JSON.stringify((r.Properties as any).Environment ?? {}));
    expect(environments.filter((e) => e.includes('GIT_TOKEN_MINTER_ARN'))).toHaveLength(1); // the Lambda runner (the Fargate task's is in its task definition)
    expect(environments.filter((e) => e.includes('GITHUB_APP_SECRET_ARN'))).toHaveLength(2); // the minter and the reporter
    expect(environments.join(' ')).not.toContain('GIT_TOKEN_SECRET_ARN');
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
      gitTokenSecretName: 'claude/git', githubAppSecretName: 'claude/github-app', gitTokenScopes: ['https://github.com/acme/'],
    })).toThrow(/gitTokenSecretName or githubAppSecretName, not both/);
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', { githubAppSecretName: 'claude/github-app' }))
      .toThrow(/gitTokenScopes must name where the git token may go .* when githubAppSecretName is set/);
  });
});

function withWebhookOnly(): CfnTemplate {
  return Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
    githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  })).toJSON() as CfnTemplate;
}
