import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { randomUUID } from 'node:crypto';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { toSessionItem } from '../lib/sessions/session-item.js';
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
      'GITHUB_TRIGGERS', 'GIT_TOKEN_SCOPES', 'NODE_OPTIONS', 'POWERTOOLS_SERVICE_NAME', 'POWERTOOLS_TRACER_CAPTURE_ERROR', 'POWERTOOLS_TRACER_CAPTURE_RESPONSE', 'STATE_MACHINE_ARN', 'WEBHOOK_SECRET_ARN',
    ]);
    // The reporter: its own function on the Session Closed rule, told the API's base URL and where the token is
    const reporter = Object.entries(resources).find(([id, r]) => id.startsWith('GitHubReporterServiceFunction') && r.Type === 'AWS::Lambda::Function')![1].Properties.Environment.Variables;
    expect(reporter).toMatchObject({ GITHUB_API_URL: 'https://github.example.com/api/v3', GITHUB_TOKEN_SECRET_ARN: expect.anything(), TABLE_NAME: expect.anything() });
  }, 300_000);

  it('the reporter\'s bundle, invoked with a Session Closed event as its role, opens the pull request and comments, each AWS call allowed by its policy', async () => {
    // Prepare: the synthesized reporter, a closed GitHub session in the table, the token in its secret, GitHub's stand-in
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
      const branch = `claude-sessions/${sessionId}`;
      await dynamodb.documentClient.send(new PutCommand({
        TableName: dynamodb.tableName,
        Item: {
          ...toSessionItem({ sessionId, projectId: 'widgets', mode: 'fresh', trigger: 'github', runtime: 'lambda', startedAt: new Date().toISOString(), executionArn: 'arn', promptSha256: 'x', promptChars: 1, taskId: 'issue-7' } as never),
          status: 'COMPLETED', endedAt: new Date().toISOString(), result: 'Fixed the widgets.', numTurns: 2, totalCostUsd: 0.0123,
          workspace: { repo: 'https://github.example.com/acme/widgets', ref: null, baseCommit: 'abc', branch, commit: 'def', filesChanged: 1, insertions: 2, deletions: 0 },
        },
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
      expect(aws.calls.map((c) => `${c.service}:${c.action}`).sort()).toEqual(['dynamodb:GetItem', 'secretsmanager:GetSecretValue']);
      const { denied, unusedGrants } = await checkCalls(assembly.template, aws.calls);
      expect(denied).toEqual([]);
      expect(unusedGrants.filter((g) => g.principal === reporter.role && !/^(xray|logs):|^sqs:|^secretsmanager:DescribeSecret$/.test(g.action))).toEqual([]);
    } finally {
      await aws.close();
      await github.close();
      await dynamodb.close();
    }
  }, 120_000);
});
