import { marshall } from '@aws-sdk/util-dynamodb';
import { App } from 'aws-cdk-lib';
import { AccountRootPrincipal, Role } from 'aws-cdk-lib/aws-iam';
import { Template } from 'aws-cdk-lib/assertions';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { describe, expect, inject, it } from 'vitest';
import { MILESTONE_INDEX, MILESTONE_SK, RECORD_PULL_REQUEST_CONDITION, RECORD_PULL_REQUEST_UPDATE, milestonePk } from '../lib/sessions/milestone-item.js';
import { milestoneTotalsSk, totalsPk } from '../lib/sessions/project-totals.js';
import { SESSION_SK, sessionPk } from '../lib/sessions/session-item.js';
import { checkCalls, checkTrustPolicies, policiesOf, type AwsCall, type PolicyDocument, type PolicyStatement } from './support/iam-check.js';
import { resolveTemplate, templateResolver, type CfnTemplate } from './support/template-resolver.js';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { ROUTES } from '../lib/api/router.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';

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
  /** Every route of lib/api/router.ts under a project, for one project. */
  const routes = (project: string): AwsCall[] => {
    const id = uuidv4();
    return ROUTES.filter((r) => r.path.startsWith('/projects/{projectId}/'))
      .map((r) => invoke(r.method, r.path.replace('{projectId}', project).replace(/\{[^}]+\}/g, id)));
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

describe('the GitHub webhook\'s function: start the one state machine, read its one secret, open and close milestones', () => {
  // `-c githubWebhookSecretName=claude/github-webhook -c githubTriggers=…`, as app.ts passes them.
  const withWebhook = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
    apiKeySecretName: 'claude/anthropic', githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  })).toJSON() as CfnTemplate;
  const idOf = (prefix: string, type: string) => Object.keys(withWebhook.Resources).filter((id) => id.startsWith(prefix) && withWebhook.Resources[id]!.Type === type);
  const [webhookRole] = idOf('GitHubServiceFunctionServiceRole', 'AWS::IAM::Role');
  const webhookResolver = templateResolver(withWebhook);
  const machine = webhookResolver.arnOf(idOf('WorkflowStateMachine', 'AWS::StepFunctions::StateMachine')[0]!);
  const sessionsTable = webhookResolver.physicalName(idOf('SessionsTable', 'AWS::DynamoDB::Table')[0]!);
  const transcriptBucket = webhookResolver.physicalName(idOf('TranscriptsBucket', 'AWS::S3::Bucket')[0]!);
  const call = (service: string, action: string, params: Record<string, unknown>): AwsCall => ({ principal: webhookRole!, service, action, params });

  it('may StartExecution on the workflow, GetSecretValue on its secret, open, read and close a milestone and tag its transcript, and nothing else asked of it', async () => {
    // Prepare: what the function does (an issue's milestone opened, a closed pull request's read and closed), and what it must not be able to do
    const milestone = uuidv4();
    const allowed = [
      call('states', 'StartExecution', { stateMachineArn: machine }), call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/github-webhook' }),
      itemCall(webhookRole!, 'PutItem', sessionsTable, milestonePk(milestone), MILESTONE_SK),
      itemCall(webhookRole!, 'GetItem', sessionsTable, milestonePk(milestone), MILESTONE_SK),
      itemCall(webhookRole!, 'UpdateItem', sessionsTable, milestonePk(milestone), MILESTONE_SK),
      call('s3', 'PutObjectTagging', { Bucket: transcriptBucket, Key: `milestones/${milestone}/transcript.jsonl` }),
    ];
    const refused = [
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/anthropic' }),
      call('states', 'StartExecution', { stateMachineArn: machine.replace(/:stateMachine:.*/, ':stateMachine:Other') }),
      call('states', 'StopExecution', { executionArn: `${machine.replace(':stateMachine:', ':execution:')}:${uuidv4()}` }),
      itemCall(webhookRole!, 'GetItem', sessionsTable, sessionPk(uuidv4()), SESSION_SK),
      itemCall(webhookRole!, 'UpdateItem', sessionsTable, sessionPk(uuidv4()), SESSION_SK),
      call('s3', 'GetObject', { Bucket: transcriptBucket, Key: `milestones/${milestone}/transcript.jsonl` }),
    ];
    // Act
    const { denied, unusedGrants } = await checkCalls(withWebhook, [...allowed, ...refused]);
    // Assess: exactly the refused calls are denied, and the allowed ones use every grant the role
    // holds beyond its logs and traces: it holds nothing more
    expect(denied.map((d) => d.action)).toEqual([
      'secretsmanager:GetSecretValue', 'states:StartExecution', 'states:StopExecution', 'dynamodb:GetItem', 'dynamodb:UpdateItem', 's3:GetObject',
    ]);
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

describe('the GitHub reporter\'s function: read a session, its milestone and the git token, write only a milestone\'s pull request', () => {
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

  it('may GetItem a session, view its milestone, record its pull request, read the git token and send to its dead-letter queue, and nothing else asked of it', async () => {
    // Prepare: what reportSession and Lambda's failure destination do, and what the role must not be able to do
    const milestone = uuidv4();
    /** MilestoneRepository.recordPullRequest's write, on `pk`, as the SDK sends it (`extra` changes it). */
    const recordPullRequest = (pk: string, sk: string, extra: Record<string, unknown> = {}) => call('dynamodb', 'UpdateItem', {
      TableName: tableName, Key: marshall({ pk, sk }), UpdateExpression: RECORD_PULL_REQUEST_UPDATE, ConditionExpression: RECORD_PULL_REQUEST_CONDITION,
      ExpressionAttributeValues: marshall({ ':number': 12, ':url': 'https://github.com/acme/widgets/pull/12', ':projectId': 'widgets' }), ...extra,
    });
    const allowed = [
      itemCall(reporterRole!, 'GetItem', tableName, sessionPk(uuidv4()), SESSION_SK),
      // MilestoneRepository.view: the milestone, its totals item, then the tasks after the reported one by the milestone index (the running total)
      itemCall(reporterRole!, 'GetItem', tableName, milestonePk(milestone), MILESTONE_SK),
      itemCall(reporterRole!, 'GetItem', tableName, totalsPk('widgets'), milestoneTotalsSk(milestone)),
      call('dynamodb', 'Query', {
        TableName: tableName, IndexName: MILESTONE_INDEX, KeyConditionExpression: 'milestoneId = :m AND startedAt > :after',
        ExpressionAttributeValues: { ':m': { S: milestone }, ':after': { S: new Date().toISOString() } },
      }),
      recordPullRequest(milestonePk(milestone), MILESTONE_SK),
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/git' }),
      call('sqs', 'SendMessage', { QueueUrl: `https://sqs.us-east-1.amazonaws.com/123456789012/${queue}` }),
    ];
    const refused = [
      itemCall(reporterRole!, 'UpdateItem', tableName, sessionPk(uuidv4()), SESSION_SK),
      // The same write on a session; with the milestone's status or workspace in it; asking the whole item back
      recordPullRequest(sessionPk(uuidv4()), SESSION_SK),
      recordPullRequest(milestonePk(milestone), MILESTONE_SK, { UpdateExpression: `${RECORD_PULL_REQUEST_UPDATE}, #status = :url`, ExpressionAttributeNames: { '#status': 'status' } }),
      recordPullRequest(milestonePk(milestone), MILESTONE_SK, { UpdateExpression: `${RECORD_PULL_REQUEST_UPDATE} REMOVE workspace` }),
      recordPullRequest(milestonePk(milestone), MILESTONE_SK, { ReturnValues: 'ALL_NEW' }),
      call('dynamodb', 'Query', { TableName: tableName, IndexName: 'byProjectSummary', KeyConditionExpression: 'projectId = :p', ExpressionAttributeValues: { ':p': { S: 'widgets' } } }),
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/github-webhook' }),
      call('secretsmanager', 'GetSecretValue', { SecretId: 'claude/anthropic' }),
    ];
    // Act
    const { denied, unusedGrants } = await checkCalls(withReporter, [...allowed, ...refused]);
    // Assess: exactly the refused calls are denied; beyond logs, traces and the queue's two reads the SQS grant
    // brings, the allowed calls use every grant the role holds
    expect(denied.map((d) => `${d.action} ${d.resource.split(':').pop()}`)).toEqual([
      ...Array(5).fill(`dynamodb:UpdateItem table/${tableName}`), `dynamodb:Query table/${tableName}/index/byProjectSummary`,
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

describe('a GitHub App\'s key: read by its two token minters only, each invoked by its one caller', () => {
  // `-c githubAppSecretName=claude/github-app` with the webhook, as app.ts passes them.
  const withApp = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
    apiKeySecretName: 'claude/anthropic', githubAppSecretName: 'claude/github-app', gitTokenScopes: ['https://github.com/acme/'],
    githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  })).toJSON() as CfnTemplate;
  const resolver_ = templateResolver(withApp);
  const idOf = (prefix: string, type: string) => Object.keys(withApp.Resources).filter((id) => id.startsWith(prefix) && withApp.Resources[id]!.Type === type);
  const [minterRole] = idOf('GitTokenMinterServiceFunctionServiceRole', 'AWS::IAM::Role');
  const [reportMinterRole] = idOf('ReportTokenMinterServiceFunctionServiceRole', 'AWS::IAM::Role');
  const [reporterRole] = idOf('GitHubReporterServiceFunctionServiceRole', 'AWS::IAM::Role');
  const runnerRoles = [idOf('RunnerFunctionServiceRole', 'AWS::IAM::Role')[0]!, idOf('FargateTaskTaskRole', 'AWS::IAM::Role')[0]!];
  const minter = resolver_.arnOf(idOf('GitTokenMinterServiceFunction', 'AWS::Lambda::Function')[0]!);
  const reportMinter = resolver_.arnOf(idOf('ReportTokenMinterServiceFunction', 'AWS::Lambda::Function')[0]!);
  const readApp = (principal: string): AwsCall => ({ principal, service: 'secretsmanager', action: 'GetSecretValue', params: { SecretId: 'claude/github-app' } });
  const invoke = (principal: string, functionName: string): AwsCall => ({ principal, service: 'lambda', action: 'Invoke', params: { FunctionName: functionName } });

  it('lets the two minters read the App\'s secret, the runners invoke the git minter and the reporter the report minter; denies everyone else the secret and each caller the other\'s minter', async () => {
    // Prepare
    const allowed = [readApp(minterRole!), readApp(reportMinterRole!), ...runnerRoles.map((role) => invoke(role, minter)), invoke(reporterRole!, reportMinter)];
    const refused = [
      ...runnerRoles.map(readApp),
      readApp(reporterRole!),
      ...runnerRoles.map((role) => invoke(role, reportMinter)),
      invoke(reporterRole!, minter),
      { principal: minterRole!, service: 'secretsmanager', action: 'GetSecretValue', params: { SecretId: 'claude/anthropic' } },
      { principal: reportMinterRole!, service: 'secretsmanager', action: 'GetSecretValue', params: { SecretId: 'claude/github-webhook' } },
    ];
    // Act
    const { denied, unusedGrants } = await checkCalls(withApp, [...allowed, ...refused]);
    // Assess: exactly the refused calls are denied, and each minter holds nothing beyond the App's secret, logs and traces
    const minterName = (arn: string) => arn.split(':').pop()!;
    expect(denied.map((d) => `${d.principal} ${d.action} ${d.resource.split(':').slice(5).join(':')}`)).toEqual([
      ...runnerRoles.map((role) => expect.stringMatching(new RegExp(`^${role} secretsmanager:GetSecretValue secret:claude/github-app`))),
      expect.stringMatching(new RegExp(`^${reporterRole} secretsmanager:GetSecretValue secret:claude/github-app`)),
      ...runnerRoles.map((role) => `${role} lambda:InvokeFunction function:${minterName(reportMinter)}`),
      `${reporterRole} lambda:InvokeFunction function:${minterName(minter)}`,
      expect.stringMatching(new RegExp(`^${minterRole} secretsmanager:GetSecretValue secret:claude/anthropic`)),
      expect.stringMatching(new RegExp(`^${reportMinterRole} secretsmanager:GetSecretValue secret:claude/github-webhook`)),
    ]);
    expect(unusedGrants.filter((g) => (g.principal === minterRole || g.principal === reportMinterRole) && !/^(xray|logs):/.test(g.action))).toEqual([]);
  });

  it('gives the runners the git minter and the reporter the report minter, neither a secret; each minter mints its own permissions; refuses a token and an App together', () => {
    const functions = Object.entries(withApp.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    const environment = (prefix: string) => JSON.stringify((functions.find(([id]) => id.startsWith(prefix))![1].Properties as any).Environment.Variables);
    expect(environment('RunnerFunction')).toContain('GIT_TOKEN_MINTER_ARN'); // the Fargate task's is in its task definition
    expect(JSON.parse(environment('GitHubReporterServiceFunction')).REPORT_TOKEN_MINTER_ARN).toEqual({ 'Fn::GetAtt': [idOf('ReportTokenMinterServiceFunction', 'AWS::Lambda::Function')[0], 'Arn'] });
    expect(JSON.parse(environment('GitTokenMinterServiceFunction')).TOKEN_PURPOSE).toBe('git');
    expect(JSON.parse(environment('ReportTokenMinterServiceFunction')).TOKEN_PURPOSE).toBe('report');
    expect(functions.filter(([, r]) => JSON.stringify((r.Properties as any).Environment ?? {}).includes('GITHUB_APP_SECRET_ARN')).map(([id]) => id.replace(/[0-9A-F]{8}$/, '')))
      .toEqual(['GitTokenMinterServiceFunction', 'ReportTokenMinterServiceFunction']);
    expect(functions.map(([, r]) => JSON.stringify((r.Properties as any).Environment ?? {})).join(' ')).not.toContain('GIT_TOKEN_SECRET_ARN');
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
      gitTokenSecretName: 'claude/git', githubAppSecretName: 'claude/github-app', gitTokenScopes: ['https://github.com/acme/'],
    })).toThrow(/gitTokenSecretName or githubAppSecretName, not both/);
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', { githubAppSecretName: 'claude/github-app' }))
      .toThrow(/gitTokenScopes must name where the git token may go .* when githubAppSecretName is set/);
  });

  it('has no report minter without the webhook: the App\'s key is read by the git minter alone', () => {
    const appOnly = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
      githubAppSecretName: 'claude/github-app', gitTokenScopes: ['https://github.com/acme/'],
    })).toJSON() as CfnTemplate;
    expect(Object.keys(appOnly.Resources).filter((id) => /^(ReportTokenMinter|GitHubReporter)/.test(id))).toEqual([]);
    expect(Object.keys(appOnly.Resources).filter((id) => id.startsWith('GitTokenMinterServiceFunction') && appOnly.Resources[id]!.Type === 'AWS::Lambda::Function')).toHaveLength(1);
  });
});

function withWebhookOnly(): CfnTemplate {
  return Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
    githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  })).toJSON() as CfnTemplate;
}

/** A copy of a template with one role's trust policy changed. */
function withTrust(source: CfnTemplate, role: string, change: (trust: PolicyDocument & { Statement: PolicyStatement[] }) => void): CfnTemplate {
  const copy = structuredClone(source);
  change(copy.Resources[role]!.Properties!.AssumeRolePolicyDocument as PolicyDocument & { Statement: PolicyStatement[] });
  return copy;
}

// The stack with a schedule, as `-c schedules='[…]'` (cdk.json context `schedules`) makes it through app.ts's parseSchedules.
const scheduled = Template.fromStack(new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
  schedules: parseSchedules([{ name: 'nightly', expression: 'cron(0 3 * * ? *)', timezone: 'Europe/Paris', projectId: 'demo', prompt: 'Summarise' }]),
})).toJSON() as CfnTemplate;
const scheduleId = Object.keys(scheduled.Resources).find((id) => scheduled.Resources[id]!.Type === 'AWS::Scheduler::Schedule')!;
const schedulerRole = (scheduled.Resources[scheduleId]!.Properties!.Target as { RoleArn: { 'Fn::GetAtt': string[] } }).RoleArn['Fn::GetAtt'][0]!;

describe('who may assume each role: the trust policies, judged by the evaluator', () => {
  it('lets only the one service that uses each role of the deployed template assume it', async () => {
    // Act
    const trust = await checkTrustPolicies(template);
    // Assess: every role judged, by the service its user names, and nothing found
    const services = Object.fromEntries(trust.map((t) => [t.role.replace(/[0-9A-F]{8}$/, ''), t.service]));
    expect(services).toMatchObject({
      WorkflowStateMachineRole: 'states.amazonaws.com', RunnerFunctionServiceRole: 'lambda.amazonaws.com', HttpServiceFunctionServiceRole: 'lambda.amazonaws.com',
      FargateTaskTaskRole: 'ecs-tasks.amazonaws.com', FargateTaskExecutionRole: 'ecs-tasks.amazonaws.com', HttpApiCloudWatchRole: 'apigateway.amazonaws.com',
    });
    expect(trust.map((t) => t.role).sort()).toEqual(Object.keys(template.Resources).filter((id) => template.Resources[id]!.Type === 'AWS::IAM::Role').sort());
    expect(trust.filter((t) => t.findings.length)).toEqual([]);
  });

  it('judges the scheduler\'s role in a synth with schedules: Scheduler only, from this account\'s schedule group', async () => {
    // Act
    const trust = await checkTrustPolicies(scheduled);
    // Assess
    expect(trust.find((t) => t.role === schedulerRole)).toEqual({ role: schedulerRole, service: 'scheduler.amazonaws.com', findings: [] });
    expect(trust.filter((t) => t.findings.length)).toEqual([]);
  });

  it('reports a trust of everyone, of a second service, of another account, and an AssumeRole beyond sts:AssumeRole', async () => {
    // Prepare: four broken copies of the deployed template
    const runner = logicalId('RunnerFunctionServiceRole', 'AWS::IAM::Role');
    const broken = [
      withTrust(template, runner, (t) => { t.Statement[0]!.Principal = '*'; }),
      withTrust(template, runner, (t) => { t.Statement[0]!.Principal = { Service: ['lambda.amazonaws.com', 'events.amazonaws.com'] }; }),
      withTrust(template, runner, (t) => { t.Statement.push({ Effect: 'Allow', Action: 'sts:AssumeRole', Principal: { AWS: 'arn:aws:iam::210987654321:root' } }); }),
      withTrust(template, runner, (t) => { t.Statement[0]!.Action = ['sts:AssumeRole', 'sts:TagSession']; }),
    ];
    // Act
    const findings = await Promise.all(broken.map(async (b) => (await checkTrustPolicies(b)).filter((t) => t.findings.length)));
    // Assess: the runner's role, each time, and why
    for (const found of findings) expect(found.map((t) => t.role)).toEqual([runner]);
    expect(findings[0]![0]!.findings).toEqual(expect.arrayContaining(['statement 1 trusts every principal (*)', 'states.amazonaws.com may assume it', 'arn:aws:iam::210987654321:role/Intruder may assume it']));
    expect(findings[1]![0]!.findings).toEqual(['statement 1 trusts Service:events.amazonaws.com besides lambda.amazonaws.com', 'events.amazonaws.com may assume it']);
    expect(findings[2]![0]!.findings).toEqual(expect.arrayContaining(['statement 2 trusts AWS:arn:aws:iam::210987654321:root besides lambda.amazonaws.com', 'arn:aws:iam::210987654321:root may assume it']));
    expect(findings[3]![0]!.findings).toEqual(['statement 1 allows sts:TagSession, not only sts:AssumeRole']);
  });

  it('reports a scheduler role that lacks aws:SourceAccount or aws:SourceArn, and a state machine role open to another account', async () => {
    // Prepare
    const withoutCondition = (key: string) => withTrust(scheduled, schedulerRole, (t) => {
      const condition = t.Statement[0]!.Condition!.StringEquals as Record<string, unknown>;
      delete condition[key];
    });
    const openMachine = withTrust(template, stateMachineRole, (t) => { delete t.Statement[0]!.Condition; });
    // Act
    const [noArn, noAccount, machine] = await Promise.all([withoutCondition('aws:SourceArn'), withoutCondition('aws:SourceAccount'), openMachine].map(checkTrustPolicies));
    // Assess
    const findingsOf = (trust: Awaited<ReturnType<typeof checkTrustPolicies>>) => trust.filter((t) => t.findings.length).map((t) => [t.role, t.findings]);
    expect(findingsOf(noArn!)).toEqual([[schedulerRole, ['scheduler.amazonaws.com may assume it without aws:SourceArn: the trust policy lacks that condition']]]);
    expect(findingsOf(noAccount!)).toEqual([[schedulerRole, [
      'scheduler.amazonaws.com may assume it without aws:SourceAccount: the trust policy lacks that condition',
    ]]]);
    expect(findingsOf(machine!)).toEqual([[stateMachineRole, [
      'states.amazonaws.com may assume it without aws:SourceAccount: the trust policy lacks that condition',
      'states.amazonaws.com may assume it without aws:SourceArn: the trust policy lacks that condition',
      'states.amazonaws.com may assume it for another account\'s source (a confused deputy)',
    ]]]);
  });
});

describe('the schedules\' role: start the one state machine its schedules target, and send to their dead-letter queue', () => {
  const scheduledResolver = templateResolver(scheduled);
  const target = resolveTemplate(scheduled).Resources[scheduleId]!.Properties!.Target as { Arn: string; DeadLetterConfig: { Arn: string } };
  /** What Scheduler does with the role at each tick: StartExecution on the target; SendMessage to the queue when that fails. */
  const ticks: AwsCall[] = [
    { principal: schedulerRole, service: 'states', action: 'StartExecution', params: { stateMachineArn: target.Arn } },
    { principal: schedulerRole, service: 'sqs', action: 'SendMessage', params: { QueueUrl: `https://sqs.us-east-1.amazonaws.com/123456789012/${target.DeadLetterConfig.Arn.split(':').pop()}` } },
  ];

  it('targets the workflow, and its role may make exactly those calls and holds nothing more', async () => {
    // Assess the target: this stack's state machine and dead-letter queue
    const machine = Object.keys(scheduled.Resources).find((id) => scheduled.Resources[id]!.Type === 'AWS::StepFunctions::StateMachine')!;
    expect(target.Arn).toBe(scheduledResolver.arnOf(machine));
    // Act
    const { denied, unusedGrants } = await checkCalls(scheduled, ticks);
    // Assess
    expect(denied).toEqual([]);
    expect(unusedGrants).toEqual([]);
  });

  it('fails a role whose StartExecution names another state machine', async () => {
    // Prepare: the role's grant moved to a state machine the schedules do not target
    const copy = structuredClone(scheduled);
    const [policy] = Object.values(copy.Resources).filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties!.Roles).includes(schedulerRole));
    const start = (policy!.Properties!.PolicyDocument as { Statement: PolicyStatement[] }).Statement.find((s) => s.Action === 'states:StartExecution')!;
    start.Resource = 'arn:aws:states:us-east-1:123456789012:stateMachine:Other';
    // Act
    const { denied } = await checkCalls(copy, ticks);
    // Assess
    expect(denied.map((d) => `${d.action} ${d.resource}`)).toEqual([`states:StartExecution ${target.Arn}`]);
  });
});
