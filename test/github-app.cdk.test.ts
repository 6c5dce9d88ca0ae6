import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { toSessionItem } from '../lib/sessions/session-item.js';
import { RecordingAwsEndpoint } from './support/aws-endpoint.js';
import { deployedFunctions, invokeHandler, lambdaEnvironment, readAssembly, taskRoot } from './support/deployed-code.js';
import { GitHubStandIn } from './support/github-stand-in.js';
import { checkCalls } from './support/iam-check.js';
import { templateResolver } from './support/template-resolver.js';

// `npx cdk synth` with a GitHub App (githubAppSecretName), then the bundles that read its key,
// each invoked as its own role: the git token minter, and the reporter through its report minter.
// GitHub's stand-in checks the App's JWT against its public key and each token's repository and permission.

const outdir = mkdtempSync(join(PROJECT_ROOT, 'cdk.out.test', 'github-app-'));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

const APP_ID = '515151';
const app = generateKeyPairSync('rsa', { modulusLength: 2048 });
const APP_SECRET = JSON.stringify({ appId: APP_ID, privateKey: app.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() });

describe('npx cdk synth with githubAppSecretName', () => {
  it('passes with no unacknowledged cdk-nag finding, and the runners get the minter, not a secret', () => {
    const synth = spawnSync(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'aws-cdk', 'bin', 'cdk'), 'synth', '--quiet', '--output', outdir,
      '-c', 'githubWebhookSecretName=claude/github-webhook', '-c', 'githubTriggers={"repositories":{"acme/widgets":"widgets"}}',
      '-c', 'githubAppSecretName=claude/github-app', '-c', 'gitTokenScopes=https://github.com/acme/'], {
      cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true', CDK_DISABLE_VERSION_CHECK: '1' }, timeout: 280_000,
    });
    expect(synth.stderr + synth.stdout).not.toMatch(/AwsSolutions-/);
    expect(synth.status).toBe(0);
    const runner = deployedFunctions(readAssembly(outdir)).find((f) => f.logicalId.startsWith('RunnerFunction'))!;
    expect(Object.keys(runner.environment)).toContain('GIT_TOKEN_MINTER_ARN');
    expect(Object.keys(runner.environment)).not.toContain('GIT_TOKEN_SECRET_ARN');
  }, 300_000);

  it('the minter\'s bundle, invoked as its role, mints a token of the one repository asked, contents write, and refuses one out of gitTokenScopes; each AWS call allowed', async () => {
    // Prepare
    const assembly = readAssembly(outdir);
    const resolver = templateResolver(assembly.template);
    const minter = deployedFunctions(assembly).find((f) => f.logicalId.startsWith('GitTokenMinterServiceFunction'))!;
    const github = await new GitHubStandIn().start();
    github.installApp({ appId: APP_ID, publicKey: app.publicKey, installationId: 9, repositories: ['acme/widgets'], permissions: { contents: 'write', issues: 'write', pull_requests: 'write' } });
    const aws = await RecordingAwsEndpoint.start({
      handlers: { 'secretsmanager.GetSecretValue': (p: { SecretId: string }) => ({ ARN: p.SecretId, Name: 'claude/github-app', SecretString: APP_SECRET }) },
    });
    try {
      const environment = Object.fromEntries(Object.entries(minter.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
      const task = taskRoot(minter.codeDir, 'aws-sdk');
      const env: Record<string, string> = { ...lambdaEnvironment(resolver.physicalName(minter.logicalId), task), ...environment, ...aws.envFor(minter.role), GITHUB_API_URL: github.url };
      // The stand-in plays GitHub on 127.0.0.1: the App's repositories are there (an App token goes to its own host only),
      // under the synthesized scope's path
      expect(env.GIT_TOKEN_SCOPES).toBe('https://github.com/acme/');
      env.GIT_TOKEN_SCOPES = 'https://127.0.0.1/acme/';
      // Act
      const answer = await invokeHandler(task, minter.module, minter.exportName, env, { repo: 'https://127.0.0.1/acme/widgets' });
      const refused = await invokeHandler(task, minter.module, minter.exportName, env, { repo: 'https://127.0.0.1/acme-evil/widgets' });
      const otherHost = await invokeHandler(task, minter.module, minter.exportName, { ...env, GIT_TOKEN_SCOPES: 'https://127.0.0.1/acme/,https://github.com/acme/' }, { repo: 'https://github.com/acme/widgets' });
      // Assess
      expect(answer.error, answer.output).toBeUndefined();
      const token = (answer.result as { token: string }).token;
      expect(github.minted).toEqual([expect.objectContaining({ token, repositories: ['acme/widgets'], permissions: { contents: 'write' } })]);
      expect(answer.output).not.toContain(token);
      expect(JSON.stringify(refused.error)).toMatch(/acme-evil\/widgets is under none of gitTokenScopes/);
      expect(JSON.stringify(otherHost.error)).toMatch(/github\.com\/acme\/widgets is not on 127\.0\.0\.1, the GitHub App's host/);
      const { denied, unusedGrants } = await checkCalls(assembly.template, aws.calls);
      expect(aws.calls.map((c) => `${c.service}:${c.action}`)).toEqual(['secretsmanager:GetSecretValue']);
      expect(denied).toEqual([]);
      expect(unusedGrants.filter((g) => g.principal === minter.role && !/^(xray|logs):|^secretsmanager:DescribeSecret$/.test(g.action))).toEqual([]);
    } finally {
      await aws.close();
      await github.close();
    }
  }, 120_000);

  it('the reporter\'s bundle reports with a token its report minter mints for the session\'s repository, issues and pull requests write, and never reads the App\'s secret', async () => {
    // Prepare
    const assembly = readAssembly(outdir);
    const resolver = templateResolver(assembly.template);
    const functions = deployedFunctions(assembly);
    const reporter = functions.find((f) => f.logicalId.startsWith('GitHubReporterServiceFunction'))!;
    const reportMinter = functions.find((f) => f.logicalId.startsWith('ReportTokenMinterServiceFunction'))!;
    const tableId = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table')![0];
    const dynamodb = await LocalDynamoDb.start({ table: assembly.template.Resources[tableId]!.Properties as never, tableName: resolver.physicalName(tableId) });
    const github = await new GitHubStandIn().start();
    github.installApp({ appId: APP_ID, publicKey: app.publicKey, installationId: 9, repositories: ['acme/widgets'], permissions: { contents: 'write', issues: 'write', pull_requests: 'write' } });
    const envOf = (f: typeof reporter) => Object.fromEntries(Object.entries(f.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
    const minterTask = taskRoot(reportMinter.codeDir, 'aws-sdk');
    let minterEnv: Record<string, string> = {};
    const minterOutput: string[] = [];
    const aws = await RecordingAwsEndpoint.start({
      upstreams: { dynamodb },
      handlers: {
        'secretsmanager.GetSecretValue': (p: { SecretId: string }) => ({ ARN: p.SecretId, Name: 'claude/github-app', SecretString: APP_SECRET }),
        // Lambda runs the report minter's bundle as its own role, as the reporter's Invoke would.
        'lambda.Invoke': async (p: { FunctionName: string; Payload: unknown }) => {
          expect(p.FunctionName).toBe(resolver.arnOf(reportMinter.logicalId));
          const minted = await invokeHandler(minterTask, reportMinter.module, reportMinter.exportName, minterEnv, p.Payload);
          minterOutput.push(minted.output);
          return minted.error ? { error: { errorType: minted.error.errorType, errorMessage: minted.error.errorMessage } } : { result: minted.result };
        },
      },
    });
    minterEnv = { ...lambdaEnvironment(resolver.physicalName(reportMinter.logicalId), minterTask), ...envOf(reportMinter), ...aws.envFor(reportMinter.role), GITHUB_API_URL: github.url };
    // The stand-in plays GitHub on 127.0.0.1 (see the git minter's test above)
    expect(minterEnv.GIT_TOKEN_SCOPES).toBe('https://github.com/acme/');
    minterEnv.GIT_TOKEN_SCOPES = 'https://127.0.0.1/acme/';
    try {
      const sessionId = randomUUID();
      await dynamodb.documentClient.send(new PutCommand({
        TableName: dynamodb.tableName,
        Item: {
          ...toSessionItem({ sessionId, projectId: 'widgets', mode: 'fresh', trigger: 'github', runtime: 'lambda', startedAt: new Date().toISOString(), executionArn: 'arn', promptSha256: 'x', promptChars: 1, taskId: 'issue-7' } as never),
          status: 'COMPLETED', endedAt: new Date().toISOString(), result: 'Fixed the widgets.', numTurns: 2, totalCostUsd: 0.0123,
          workspace: { repo: 'https://github.com/acme/widgets', ref: null, baseCommit: 'abc', branch: 'claude-sessions/issue-7', commit: 'def', filesChanged: 1, insertions: 2, deletions: 0 },
        },
      }));
      const task = taskRoot(reporter.codeDir, 'aws-sdk');
      // Act
      const answer = await invokeHandler(task, reporter.module, reporter.exportName, {
        ...lambdaEnvironment(resolver.physicalName(reporter.logicalId), task), ...envOf(reporter), ...aws.envFor(reporter.role), GITHUB_API_URL: github.url,
      }, { 'detail-type': 'Session Closed', source: 'claude-sessions', detail: { sessionId, trigger: 'github', status: 'COMPLETED' } });
      // Assess
      expect(answer.error, answer.output + minterOutput.join('\n')).toBeUndefined();
      expect(Object.keys(envOf(reporter))).not.toContain('GITHUB_APP_SECRET_ARN');
      expect(aws.calls.filter((c) => c.service !== 'dynamodb').map((c) => `${c.principal === reporter.role ? 'reporter' : c.principal === reportMinter.role ? 'report minter' : c.principal} ${c.service}:${c.action}`))
        .toEqual(expect.arrayContaining(['reporter lambda:Invoke', 'report minter secretsmanager:GetSecretValue']));
      expect(aws.calls.filter((c) => c.principal === reporter.role && c.service === 'secretsmanager')).toEqual([]);
      expect(github.writes).toEqual(['POST /app/installations/9/access_tokens', 'POST /repos/acme/widgets/pulls', 'POST /repos/acme/widgets/issues/7/comments']);
      expect(github.minted).toEqual([expect.objectContaining({ repositories: ['acme/widgets'], permissions: { issues: 'write', pull_requests: 'write' } })]);
      expect(new Set(github.calls.filter((c) => c.path.startsWith('/repos/acme/widgets/') && !c.path.endsWith('/installation')).map((c) => c.authorization)))
        .toEqual(new Set([`Bearer ${github.minted[0]!.token}`]));
      const { denied } = await checkCalls(assembly.template, aws.calls);
      expect(denied).toEqual([]);
    } finally {
      await aws.close();
      await github.close();
      await dynamodb.close();
    }
  }, 120_000);
});
