import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { createHmac, randomUUID } from 'node:crypto';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { milestoneIdOfIssue } from '../lib/api/github-webhook.js';
import { MILESTONE_SK, milestonePk, toMilestoneItem } from '../lib/sessions/milestone-item.js';
import { milestoneTotalsSk, totalsFigures, totalsPk } from '../lib/sessions/project-totals.js';
import { toSessionItem, toSessionRecord } from '../lib/sessions/session-item.js';
import { sumUsage } from '../lib/sessions/usage-totals.js';
import { RecordingAwsEndpoint } from './support/aws-endpoint.js';
import { deployedFunctions, invokeHandler, lambdaEnvironment, readAssembly, taskRoot } from './support/deployed-code.js';
import { GitHubStandIn } from './support/github-stand-in.js';
import { checkCalls } from './support/iam-check.js';
import { templateResolver } from './support/template-resolver.js';

// `npx cdk synth` with the webhook on, as a deployer turns it on: cdk-nag must pass (the one
// route with no authoriser acknowledged, with why), and the route must be the only one without IAM.

const outdir = mkdtempSync(join(PROJECT_ROOT, 'cdk.out.test', 'github-'));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe('npx cdk synth with githubWebhookSecretName, githubTriggers, a git token and githubApiUrl', () => {
  it('passes with no unacknowledged cdk-nag finding; POST /webhooks/github is the one method without IAM, on the webhook\'s own function', () => {
    // Act
    const synth = spawnSync(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'aws-cdk', 'bin', 'cdk'), 'synth', '--quiet', '--output', outdir,
      '-c', 'githubWebhookSecretName=claude/github-webhook', '-c', 'githubTriggers={"repositories":{"acme/widgets":"widgets"}}',
      // A git token too: the sessions' repositories, and the reporter on GitHub Enterprise's API.
      '-c', 'gitTokenSecretName=claude/git', '-c', 'gitTokenScopes=https://github.example.com/acme/', '-c', 'githubApiUrl=https://github.example.com/api/v3'], {
      cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true', CDK_DISABLE_VERSION_CHECK: '1' }, timeout: 280_000,
    });
    // Assess
    expect(synth.stderr + synth.stdout).not.toMatch(/AwsSolutions-/);
    expect(synth.status).toBe(0);
    const resources = (JSON.parse(readFileSync(join(outdir, 'ClaudeSessions.template.json'), 'utf8')) as { Resources: Record<string, { Type: string; Properties: any }> }).Resources;
    const methods = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::ApiGateway::Method');
    const open = methods.filter(([, r]) => r.Properties.AuthorizationType !== 'AWS_IAM');
    expect(open.map(([, r]) => `${r.Properties.HttpMethod} ${resources[r.Properties.ResourceId.Ref]!.Properties.PathPart}`)).toEqual(['POST github']);
    expect(JSON.stringify(open[0]![1].Properties.Integration.Uri)).toContain('GitHubServiceFunction');
    const environment = Object.entries(resources).find(([id, r]) => id.startsWith('GitHubServiceFunction') && r.Type === 'AWS::Lambda::Function')![1].Properties.Environment.Variables;
    expect(Object.keys(environment).sort()).toEqual([
      'GITHUB_TRIGGERS', 'GIT_TOKEN_SCOPES', 'NODE_OPTIONS', 'POWERTOOLS_SERVICE_NAME', 'POWERTOOLS_TRACER_CAPTURE_ERROR', 'POWERTOOLS_TRACER_CAPTURE_RESPONSE', 'STATE_MACHINE_ARN', 'TABLE_NAME', 'TRANSCRIPT_BUCKET', 'WEBHOOK_SECRET_ARN',
    ]);
    // The reporter: its own function on the Session Closed rule, told the API's base URL and where the token is
    const reporter = Object.entries(resources).find(([id, r]) => id.startsWith('GitHubReporterServiceFunction') && r.Type === 'AWS::Lambda::Function')![1].Properties.Environment.Variables;
    expect(reporter).toMatchObject({ GITHUB_API_URL: 'https://github.example.com/api/v3', GITHUB_TOKEN_SECRET_ARN: expect.anything(), TABLE_NAME: expect.anything() });
  }, 300_000);

  it('the reporter\'s bundle, invoked with a Session Closed event as its role, opens the pull request and comments with the milestone\'s total, each AWS call allowed by its policy', async () => {
    // Prepare: the synthesized reporter, a closed GitHub session (a task of its issue's milestone) in the table, the token in its secret, GitHub's stand-in
    const assembly = readAssembly(outdir);
    const resolver = templateResolver(assembly.template);
    const reporter = deployedFunctions(assembly).find((f) => f.logicalId.startsWith('GitHubReporterServiceFunction'))!;
    const tableId = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table')![0];
    const dynamodb = await LocalDynamoDb.start({ table: assembly.template.Resources[tableId]!.Properties as never, tableName: resolver.physicalName(tableId) });
    const github = await new GitHubStandIn().start();
    const aws = await RecordingAwsEndpoint.start({
      upstreams: { dynamodb },
      handlers: { 'secretsmanager.GetSecretValue': (p: { SecretId: string }) => ({ ARN: p.SecretId, Name: 'claude/git', SecretString: JSON.stringify({ GIT_TOKEN: 'ghs_deployed' }) }) },
    });
    try {
      const sessionId = randomUUID();
      const milestoneId = randomUUID();
      const branch = 'claude-sessions/issue-7';
      await dynamodb.documentClient.send(new PutCommand({ TableName: dynamodb.tableName, Item: toMilestoneItem(milestoneId, 'widgets', new Date()) }));
      const closed = {
        ...toSessionItem({ sessionId, projectId: 'widgets', mode: 'milestone', milestoneId, trigger: 'github', runtime: 'lambda', startedAt: new Date().toISOString(), executionArn: 'arn', promptSha256: 'x', promptChars: 1, taskId: 'issue-7' } as never),
        status: 'COMPLETED', endedAt: new Date().toISOString(), result: 'Fixed the widgets.', numTurns: 2, totalCostUsd: 0.0123,
        workspace: { repo: 'https://github.example.com/acme/widgets', ref: null, baseCommit: 'abc', branch, commit: 'def', filesChanged: 1, insertions: 2, deletions: 0 },
      };
      await dynamodb.documentClient.send(new PutCommand({ TableName: dynamodb.tableName, Item: closed }));
      // The milestone's totals item, as the transactions that created and closed the task leave it
      await dynamodb.documentClient.send(new PutCommand({
        TableName: dynamodb.tableName, Item: { pk: totalsPk('widgets'), sk: milestoneTotalsSk(milestoneId), ...totalsFigures(sumUsage([toSessionRecord(closed)])) },
      }));
      const environment = Object.fromEntries(Object.entries(reporter.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
      const task = taskRoot(reporter.codeDir, 'aws-sdk');
      // Act
      const answer = await invokeHandler(task, reporter.module, reporter.exportName, {
        ...lambdaEnvironment(resolver.physicalName(reporter.logicalId), task), ...environment, ...aws.envFor(reporter.role), GITHUB_API_URL: github.url,
      }, { 'detail-type': 'Session Closed', source: 'claude-sessions', detail: { sessionId, trigger: 'github', status: 'COMPLETED' } });
      // Assess: one pull request and one comment, made with the secret's token; every AWS call allowed, no grant unused but logs, traces and the queue's
      expect(answer.error, answer.output).toBeUndefined();
      expect(answer.result).toMatchObject({ reported: true, pullRequest: expect.stringContaining('/pull/') });
      expect(github.writes).toEqual(['POST /repos/acme/widgets/pulls', 'POST /repos/acme/widgets/issues/7/comments']);
      expect(new Set(github.calls.map((c) => c.authorization))).toEqual(new Set(['Bearer ghs_deployed']));
      expect(github.comments.get('acme/widgets#7')?.[0]?.body).toContain('| conversation so far (1 task) |');
      // The session, the milestone and its totals item by key; the tasks after this one by the milestone index;
      // …and the pull request it opened recorded on the milestone, whose comments it alone continues
      expect(aws.calls.map((c) => `${c.service}:${c.action}`).sort()).toEqual(['dynamodb:GetItem', 'dynamodb:GetItem', 'dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:UpdateItem', 'secretsmanager:GetSecretValue']);
      const { Item: milestone } = await dynamodb.documentClient.send(new GetCommand({ TableName: dynamodb.tableName, Key: { pk: milestonePk(milestoneId), sk: MILESTONE_SK } }));
      expect(milestone).toMatchObject({ pullRequestNumber: github.pulls.get('acme/widgets')![0]!.number, pullRequestUrl: github.pulls.get('acme/widgets')![0]!.html_url });
      const { denied, unusedGrants } = await checkCalls(assembly.template, aws.calls);
      expect(denied).toEqual([]);
      expect(unusedGrants.filter((g) => g.principal === reporter.role && !/^(xray|logs):|^sqs:|^secretsmanager:DescribeSecret$/.test(g.action))).toEqual([]);
    } finally {
      await aws.close();
      await github.close();
      await dynamodb.close();
    }
  }, 120_000);

  it('the webhook\'s bundle, as its role: a signed issue comment opens the issue\'s milestone and starts its task; the pull request\'s closing closes it, each AWS call allowed by its policy', async () => {
    // Prepare: the synthesized webhook, the table, its secret; the milestone's branch as its first task leaves it
    const assembly = readAssembly(outdir);
    const resolver = templateResolver(assembly.template);
    const webhook = deployedFunctions(assembly).find((f) => f.logicalId.startsWith('GitHubServiceFunction'))!;
    const tableId = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table')![0];
    const dynamodb = await LocalDynamoDb.start({ table: assembly.template.Resources[tableId]!.Properties as never, tableName: resolver.physicalName(tableId) });
    const secret = 'the deployed webhook secret';
    const started: { name: string; input: string }[] = [];
    const aws = await RecordingAwsEndpoint.start({
      upstreams: { dynamodb },
      handlers: {
        'secretsmanager.GetSecretValue': (p: { SecretId: string }) => ({ ARN: p.SecretId, Name: 'claude/github-webhook', SecretString: secret }),
        'states.StartExecution': (p: { stateMachineArn: string; name: string; input: string }) => (started.push(p), {
          executionArn: `${p.stateMachineArn.replace(':stateMachine:', ':execution:')}:${p.name}`, startDate: Date.now() / 1000,
        }),
      },
    });
    const environment = Object.fromEntries(Object.entries(webhook.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
    const task = taskRoot(webhook.codeDir, 'aws-sdk');
    const delivery = (event: string, payload: unknown) => {
      const body = JSON.stringify(payload);
      const headers = { 'content-type': 'application/json', 'x-github-event': event, 'x-github-delivery': randomUUID(), 'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` };
      return {
        resource: '/webhooks/github', path: '/webhooks/github', httpMethod: 'POST', headers, multiValueHeaders: {}, queryStringParameters: null, multiValueQueryStringParameters: null,
        pathParameters: null, stageVariables: null, body, isBase64Encoded: false,
        requestContext: { requestId: randomUUID(), stage: 'v1', httpMethod: 'POST', path: '/webhooks/github', resourcePath: '/webhooks/github', identity: { sourceIp: '192.30.252.1' } },
      };
    };
    const invoke = (event: unknown) => invokeHandler(task, webhook.module, webhook.exportName, {
      ...lambdaEnvironment(resolver.physicalName(webhook.logicalId), task), ...environment, ...aws.envFor(webhook.role),
    }, event);
    const repository = { full_name: 'acme/widgets', html_url: 'https://github.example.com/acme/widgets' };
    const milestoneId = milestoneIdOfIssue('acme/widgets', 9);
    try {
      // Act: the issue's comment; then, its task having fixed the branch, the pull request closed
      const comment = await invoke(delivery('issue_comment', {
        action: 'created', repository,
        issue: { number: 9, title: 'Widgets crash', body: 'It throws.', html_url: `${repository.html_url}/issues/9`, updated_at: new Date().toISOString(), state: 'open' },
        comment: { html_url: `${repository.html_url}/issues/9#issuecomment-1`, body: '/claude fix it', author_association: 'OWNER', created_at: new Date().toISOString(), user: { login: 'owner' } },
      }));
      await dynamodb.documentClient.send(new PutCommand({
        TableName: dynamodb.tableName,
        Item: {
          ...toMilestoneItem(milestoneId, 'widgets', new Date()), workspace: { repo: repository.html_url, ref: null, branch: 'claude-sessions/issue-9' },
          // The reporter's record of the pull request it opened: only that one's closing closes the milestone
          pullRequestNumber: 10, pullRequestUrl: `${repository.html_url}/pull/10`,
        },
      }));
      const close = await invoke(delivery('pull_request', {
        action: 'closed', repository,
        pull_request: {
          number: 10, body: 'Resolves #9.\n<!-- claude-sessions:issue=9 -->', html_url: `${repository.html_url}/pull/10`, closed_at: new Date().toISOString(), merged: true,
          head: { ref: 'claude-sessions/issue-9', repo: { full_name: 'acme/widgets' } },
        },
      }));
      const milestone = await dynamodb.documentClient.send(new GetCommand({ TableName: dynamodb.tableName, Key: { pk: milestonePk(milestoneId), sk: MILESTONE_SK } }));

      // Assess: a milestone task of the issue's milestone started; the milestone closed; every AWS call allowed
      expect(comment.error, comment.output).toBeUndefined();
      expect(comment.result).toMatchObject({ statusCode: 202 });
      expect(JSON.parse((comment.result as { body: string }).body)).toMatchObject({ started: true, milestoneId });
      expect(JSON.parse(started[0]!.input)).toMatchObject({ mode: 'milestone', milestoneId, taskId: 'issue-9', workspace: { repo: repository.html_url, branch: 'claude-sessions/issue-9' } });
      expect(close.result, close.output).toMatchObject({ statusCode: 200 });
      expect(milestone.Item).toMatchObject({ status: 'CLOSED' });
      // (each invocation is a cold start of its own, so each reads the secret)
      expect([...new Set(aws.calls.map((c) => `${c.service}:${c.action}`))].sort()).toEqual([
        'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'secretsmanager:GetSecretValue', 'states:StartExecution',
      ]);
      const { denied, unusedGrants } = await checkCalls(assembly.template, aws.calls);
      expect(denied).toEqual([]);
      // Unused here: the transcript's tag (this milestone has no transcript: test/iam-policy.test.ts asks for it) and DescribeSecret.
      expect(unusedGrants.filter((g) => g.principal === webhook.role && !/^(xray|logs):|^s3:PutObjectTagging$|^secretsmanager:DescribeSecret$/.test(g.action))).toEqual([]);
    } finally {
      await aws.close();
      await dynamodb.close();
    }
  }, 120_000);
});
