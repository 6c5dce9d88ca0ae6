import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { runCfnLint } from './support/cfn-lint.js';

// A deployment's settings live in cdk.json, checked in, so the next plain `npx cdk deploy` deploys
// the same stack. Each synth here is the CDK CLI's, in a folder of its own whose cdk.json holds the
// settings, as a deployer's checkout would.

mkdirSync(join(PROJECT_ROOT, 'cdk.out.test'), { recursive: true });
const workDir = mkdtempSync(join(PROJECT_ROOT, 'cdk.out.test', 'settings-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

/** `npx cdk synth --quiet` with this project's cdk.json, its context extended by `settings`, plus `args`. */
function synthWith(name: string, settings: Record<string, unknown>, args: string[] = []) {
  const dir = join(workDir, name);
  mkdirSync(dir);
  const cdkJson = JSON.parse(readFileSync(join(PROJECT_ROOT, 'cdk.json'), 'utf8')) as { app: string; context: Record<string, unknown> };
  // The same app, started from this folder (the project's cdk.json says `npx tsx cdk/app.ts`, relative to the project).
  cdkJson.app = [process.execPath, join(PROJECT_ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(PROJECT_ROOT, 'cdk', 'app.ts')].join(' ');
  cdkJson.context = { ...cdkJson.context, ...settings };
  writeFileSync(join(dir, 'cdk.json'), JSON.stringify(cdkJson, null, 2));
  const out = join(dir, 'cdk.out');
  const synth = spawnSync(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'aws-cdk', 'bin', 'cdk'), 'synth', '--quiet', '--output', out, ...args], {
    cwd: dir, encoding: 'utf8', env: { ...process.env, CI: 'true', CDK_DISABLE_VERSION_CHECK: '1' }, timeout: 400_000,
  });
  return { status: synth.status, output: synth.stderr + synth.stdout, templatePath: join(out, 'ClaudeSessions.template.json') };
}

type Resources = Record<string, { Type: string; Properties: any }>;

describe('settings in cdk.json', () => {
  it('are what a plain synth deploys: provider, model, limits, concurrency, architecture, notifications and schedules; a -c flag on top is warned of, by name', () => {
    // Act: every setting in cdk.json, one more on the command line
    const synth = synthWith('checked-in', {
      provider: 'bedrock', model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
      maxConcurrentSessions: 2, runnerConcurrency: 3, runnerArchitecture: 'x86_64', notifyStatuses: ['FAILED', 'TIMED_OUT'],
      schedules: [{ name: 'nightly', expression: 'cron(0 3 * * ? *)', projectId: 'demo', prompt: 'Summarise the README' }],
    }, ['-c', 'monthlyBudgetUsd=50']);
    // Assess: cdk-nag passed, and each setting is in the template
    expect(synth.output).not.toMatch(/AwsSolutions-/);
    expect(synth.status, synth.output).toBe(0);
    const resources = (JSON.parse(readFileSync(synth.templatePath, 'utf8')) as { Resources: Resources }).Resources;
    const of = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
    const fn = (prefix: string) => of('AWS::Lambda::Function').find(([id]) => id.startsWith(prefix))![1].Properties;
    expect(of('AWS::SecretsManager::Secret')).toEqual([]); // Bedrock: no API key
    expect(fn('RunnerFunction').Environment.Variables).toMatchObject({ MODEL_PROVIDER: 'bedrock', CLAUDE_MODEL: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0' });
    expect(fn('RunnerFunction')).toMatchObject({ ReservedConcurrentExecutions: 3, Architectures: ['x86_64'] });
    expect(fn('SessionCreator').Environment.Variables).toMatchObject({ MAX_CONCURRENT_SESSIONS: '2', MONTHLY_BUDGET_USD: '50' });
    expect(of('AWS::Scheduler::Schedule').map(([, r]) => r.Properties.ScheduleExpression)).toEqual(['cron(0 3 * * ? *)']);
    expect(of('AWS::SNS::Topic')).toHaveLength(1);
    // The flag, and only the flag, is named as what the next plain deploy would revert
    expect(synth.output).toMatch(/monthlyBudgetUsd is set outside cdk\.json \(a -c flag\): a later npx cdk deploy without the flag reverts it/);
    expect(synth.output.match(/is set outside cdk\.json/g)).toHaveLength(1);
    // And that stack passes cfn-lint too
    const lint = runCfnLint(synth.templatePath, { ignore: { W3005: 'aws-cdk-lib\'s redundant DependsOn on a service role (test/cfn-lint.test.ts)' } });
    expect(lint.findings).toEqual([]);
  }, 420_000);

  it('fail the synth on a bad value, naming the key', () => {
    const synth = synthWith('bad-value', { runnerConcurrency: 'many' });
    expect(synth.status).not.toBe(0);
    expect(synth.output).toMatch(/context runnerConcurrency must be a whole number from 1, not "many"/);
  }, 420_000);

  it('fail the synth on a key that is no setting, naming it and the setting it resembles', () => {
    const synth = synthWith('misspelt', { modle: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0' });
    expect(synth.status).not.toBe(0);
    expect(synth.output).toMatch(/context modle \(did you mean model\?\): no such setting of claude-sessions/);
  }, 420_000);
});
