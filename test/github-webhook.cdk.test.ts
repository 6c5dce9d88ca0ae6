import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../lib/project-root.js';

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
    expect(Object.keys(environment).sort()).toEqual(['GITHUB_TRIGGERS', 'GIT_TOKEN_SCOPES', 'NODE_OPTIONS', 'POWERTOOLS_SERVICE_NAME', 'STATE_MACHINE_ARN', 'WEBHOOK_SECRET_ARN']);
    // The reporter: its own function on the Session Closed rule, told the API's base URL and where the token is
    const reporter = Object.entries(resources).find(([id, r]) => id.startsWith('GitHubReporterServiceFunction') && r.Type === 'AWS::Lambda::Function')![1].Properties.Environment.Variables;
    expect(reporter).toMatchObject({ GITHUB_API_URL: 'https://github.example.com/api/v3', GITHUB_TOKEN_SECRET_ARN: expect.anything(), TABLE_NAME: expect.anything() });
  }, 300_000);
});
