import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { RecordingAwsEndpoint, type LambdaInvocation } from './support/aws-endpoint.js';
import {
  deployedContainer, deployedFunctions, invokeHandler, lambdaEnvironment, readAssembly, runCommand, taskRoot, type CloudAssembly, type DeployedFunction,
} from './support/deployed-code.js';
import { git } from './support/git-remote.js';
import { GitHubStandIn } from './support/github-stand-in.js';
import { HttpsGitRemote } from './support/https-git-remote.js';
import { checkCalls } from './support/iam-check.js';
import { templateResolver, type TemplateResolver } from './support/template-resolver.js';

// A deployment with a GitHub App, end to end on the deployed side: the runner's bundles (the image's
// Lambda handler, then its Fargate entry) clone and push a session's repository with a token they get
// by Lambda's Invoke of the git token minter's bundle, which alone reads the App's key. Each bundle runs as its own
// role against one recording AWS endpoint, whose Invoke runs the minter's handler; GitHub's
// stand-in mints the token and the https git remote takes only that token.

const outdir = mkdtempSync(join(PROJECT_ROOT, 'cdk.out.test', 'runner-git-token-'));

const APP_ID = '626262';
const app = generateKeyPairSync('rsa', { modulusLength: 2048 });
const APP_SECRET = JSON.stringify({ appId: APP_ID, privateKey: app.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString() });
const API_KEY_SECRET = JSON.stringify({ ANTHROPIC_API_KEY: 'sk-ant-test-runner-git-token' });

let assembly: CloudAssembly;
let resolver: TemplateResolver;
let dynamodb: LocalDynamoDb;
let anthropic: AnthropicStandIn;
let github: GitHubStandIn;
let remote: HttpsGitRemote;
let aws: RecordingAwsEndpoint;
/** Where the test's repositories are: the scope every function is told, in place of the synthesized https://github.com/acme/. */
let scope: string;
/** Executions' inputs, where the Fargate task reads its prompt (DescribeExecution); what it answered on its token. */
const executionInputs = new Map<string, string>();
const taskReports: { action: string; params: Record<string, unknown> }[] = [];
const fn = (prefix: string): DeployedFunction => deployedFunctions(assembly).find((f) => f.logicalId.startsWith(prefix))!;

/** A function's bundle, invoked once as its own role with its template environment and the test's places. */
function invoke(deployed: DeployedFunction, event: unknown, extra: Record<string, string> = {}) {
  const task = taskRoot(deployed.codeDir, deployed.kind === 'zip' ? 'aws-sdk' : 'claude-code');
  const environment = Object.fromEntries(Object.entries(deployed.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
  const places: Record<string, string> = {};
  // The stand-ins are on 127.0.0.1: the repositories under the scope, GitHub's API (the App's host) there too.
  if ('GIT_TOKEN_SCOPES' in environment) places.GIT_TOKEN_SCOPES = scope;
  if ('GITHUB_API_URL' in environment) places.GITHUB_API_URL = github.url;
  return invokeHandler(task, deployed.module, deployed.exportName, {
    ...lambdaEnvironment(resolver.physicalName(deployed.logicalId), task), ...environment, ...aws.envFor(deployed.role), ...places, ...extra,
  }, event);
}

beforeAll(async () => {
  const synth = spawnSync(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'aws-cdk', 'bin', 'cdk'), 'synth', '--quiet', '--output', outdir,
    '-c', 'githubAppSecretName=claude/github-app', '-c', 'gitTokenScopes=https://github.com/acme/'], {
    cwd: PROJECT_ROOT, encoding: 'utf8', env: { ...process.env, CI: 'true', CDK_DISABLE_VERSION_CHECK: '1' }, timeout: 280_000,
  });
  if (synth.status !== 0) throw new Error(`cdk synth failed: ${synth.stderr}${synth.stdout}`);
  assembly = readAssembly(outdir);
  resolver = templateResolver(assembly.template);
  const tableId = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table')![0];
  dynamodb = await LocalDynamoDb.start({ table: assembly.template.Resources[tableId]!.Properties as never, tableName: resolver.physicalName(tableId) });
  anthropic = await new AnthropicStandIn().start();
  github = await new GitHubStandIn().start();
  github.installApp({ appId: APP_ID, publicKey: app.publicKey, installationId: 11, repositories: ['acme/widgets'], permissions: { contents: 'write', issues: 'write', pull_requests: 'write' } });
  remote = await new HttpsGitRemote().start();
  remote.repository('acme', 'widgets');
  remote.authorize = github.gitAccess(); // only a token the stand-in minted for the repository clones or pushes it
  scope = `https://127.0.0.1:${remote.port}/acme/`;
  const minter = fn('GitTokenMinterServiceFunction');
  aws = await RecordingAwsEndpoint.start({
    upstreams: { dynamodb },
    handlers: {
      'secretsmanager.GetSecretValue': (p: { SecretId: string }) => ({ ARN: p.SecretId, SecretString: /github-app/.test(p.SecretId) ? APP_SECRET : API_KEY_SECRET }),
      'states.DescribeExecution': (p: { executionArn: string }) => ({ executionArn: p.executionArn, status: 'RUNNING', input: executionInputs.get(p.executionArn), startDate: Date.now() / 1000 }),
      'states.SendTaskHeartbeat': (p: Record<string, unknown>) => (taskReports.push({ action: 'SendTaskHeartbeat', params: p }), {}),
      'states.SendTaskSuccess': (p: Record<string, unknown>) => (taskReports.push({ action: 'SendTaskSuccess', params: p }), {}),
      'states.SendTaskFailure': (p: Record<string, unknown>) => (taskReports.push({ action: 'SendTaskFailure', params: p }), {}),
      // Lambda's Invoke of the minter runs its bundle, as its role, as Lambda would (a cold start each time).
      'lambda.Invoke': async (p: { FunctionName: string; Payload: unknown }): Promise<LambdaInvocation> => {
        if (p.FunctionName !== resolver.resolve(fn('RunnerFunction').environment.GIT_TOKEN_MINTER_ARN)) {
          return { error: { errorType: 'ResourceNotFoundException', errorMessage: `no function ${p.FunctionName} here` } };
        }
        const answer = await invoke(minter, p.Payload);
        return answer.error ? { error: answer.error } : { result: answer.result };
      },
    },
  });
}, 300_000);

afterAll(async () => {
  await Promise.all([aws?.close(), anthropic?.close(), github?.close(), remote?.close(), dynamodb?.close()]);
  rmSync(outdir, { recursive: true, force: true });
});

describe('the deployed runner gets git\'s token from the minter, by Lambda Invoke', () => {
  it('clones and pushes the session\'s repository with a token of that repository, contents write, that the minter minted; the runner never reads the App\'s key; each call allowed by its own role', async () => {
    // Prepare: CreateSession's bundle puts the session, with its repository, as the workflow starts it
    const sessionId = randomUUID();
    const repo = `${scope}widgets`;
    const stateMachineArn = resolver.ref(Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')![0]);
    const created = await invoke(fn('SessionCreator'), {
      input: { prompt: 'Write NOTES.md', projectId: 'widgets', sessionId, workspace: { repo } },
      executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`, executionName: sessionId, executionStartTime: new Date().toISOString(),
    });
    expect(created.error, created.output).toBeUndefined();
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'NOTES.md', content: 'written by the deployed runner\n' } },
      { kind: 'text', text: 'Wrote NOTES.md.' },
    );

    // Act: the runner's Lambda handler, as RunClaude invokes it
    const run = await invoke(fn('RunnerFunction'), { ...(created.result as object), retry: { attempt: 1, prior: null } }, {
      ANTHROPIC_BASE_URL: anthropic.endpoint.baseUrl!, GIT_SSL_CAINFO: remote.caFile,
    });

    // Assess: the session's change is on the remote, pushed with the minted token
    expect(run.error, run.output).toBeUndefined();
    const record = (run.result as { record: { status: string; workspace: { branch: string; commit: string; filesChanged: number } } }).record;
    expect(record).toMatchObject({ status: 'COMPLETED', workspace: { filesChanged: 1 } });
    expect(git(remote.barePath(`${repo}.git`), 'rev-parse', record.workspace.branch)).toBe(record.workspace.commit);
    expect(github.minted.map((m) => ({ repositories: m.repositories, permissions: m.permissions }))).toEqual(
      github.minted.map(() => ({ repositories: ['acme/widgets'], permissions: { contents: 'write' } })),
    );
    expect(github.minted.length).toBeGreaterThan(0);
    const minted = new Set(github.minted.map((m) => m.token));
    const used = remote.requests.map((r) => Buffer.from((r.authorization ?? '').replace(/^Basic /, ''), 'base64').toString('utf8').split(':')[1]);
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((token) => !minted.has(token!))).toEqual([]);
    expect(JSON.stringify(run.result) + run.output).not.toMatch(/ghs_|BEGIN RSA PRIVATE KEY/);
    // The runner asked the minter (its ARN, from GIT_TOKEN_MINTER_ARN); only the minter read the App's secret
    const runner = fn('RunnerFunction').role;
    const minter = fn('GitTokenMinterServiceFunction').role;
    const invokes = aws.calls.filter((c) => c.service === 'lambda');
    expect(invokes.map((c) => `${c.principal} ${c.action} ${String(c.params.FunctionName)}`)).toEqual(
      invokes.map(() => `${runner} Invoke ${String(resolver.resolve(fn('RunnerFunction').environment.GIT_TOKEN_MINTER_ARN))}`),
    );
    expect(invokes.length).toBeGreaterThan(0);
    const appSecretReaders = aws.calls.filter((c) => c.action === 'GetSecretValue' && /github-app/.test(String(c.params.SecretId))).map((c) => c.principal);
    expect(new Set(appSecretReaders)).toEqual(new Set([minter]));
    const { denied } = await checkCalls(assembly.template, aws.calls);
    expect(denied).toEqual([]);
    // The runner's role may invoke the minter alone: the same Invoke of CreateSession would be denied
    const creatorArn = resolver.arnOf(fn('SessionCreator').logicalId);
    const elsewhere = await checkCalls(assembly.template, [{ ...invokes[0]!, params: { ...invokes[0]!.params, FunctionName: creatorArn } }]);
    expect(elsewhere.denied.map((d) => `${d.principal} ${d.action}`)).toEqual([`${runner} lambda:InvokeFunction`]);
  }, 240_000);

  it('the Fargate entry, as its task role, does the same: its clone and push with the minter\'s token, its Invoke allowed by the task role\'s policy', async () => {
    // Prepare: a fargate session of the same repository, its execution's input where DescribeExecution finds it
    const sessionId = randomUUID();
    const repo = `${scope}widgets`;
    const stateMachineArn = resolver.ref(Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')![0]);
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`;
    const input = { prompt: 'Write TASK.md', projectId: 'widgets', sessionId, runtime: 'fargate', workspace: { repo, branch: 'fargate/task' } };
    executionInputs.set(executionArn, JSON.stringify(input));
    const created = await invoke(fn('SessionCreator'), { input, executionArn, executionName: sessionId, executionStartTime: new Date().toISOString() });
    expect(created.error, created.output).toBeUndefined();
    const prepared = created.result as { session: unknown; milestone: unknown; retry: unknown };
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'TASK.md', content: 'written by the deployed Fargate task\n' } },
      { kind: 'text', text: 'Wrote TASK.md.' },
    );
    const container = deployedContainer(assembly);
    const task = taskRoot(container.codeDir, 'claude-code');
    const environment = Object.fromEntries(Object.entries(container.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
    const callsBefore = aws.calls.length;

    // Act: the container command with the overrides the workflow renders, as the task's role
    const run = await runCommand(task, container.command, {
      PATH: process.env.PATH!, ...environment, ...aws.envFor(container.taskRole), GIT_TOKEN_SCOPES: scope, ANTHROPIC_BASE_URL: anthropic.endpoint.baseUrl!,
      GIT_SSL_CAINFO: remote.caFile, SESSION_JSON: JSON.stringify(prepared.session), MILESTONE_JSON: JSON.stringify(prepared.milestone),
      RETRY_JSON: JSON.stringify(prepared.retry), TASK_TOKEN: 'token-'.padEnd(2_048, 'x'), HEARTBEAT_INTERVAL_SECONDS: '1',
    });

    // Assess: pushed, reported on its token; the task role invoked the minter, and may
    expect(run.exitCode, run.output).toBe(0);
    expect(taskReports.filter((r) => r.action === 'SendTaskFailure').map((r) => r.params.cause)).toEqual([]);
    const success = taskReports.find((r) => r.action === 'SendTaskSuccess');
    const record = JSON.parse(String(success?.params.output)).record as { status: string; workspace: { branch: string; commit: string } };
    expect(record).toMatchObject({ status: 'COMPLETED', workspace: { branch: 'fargate/task', filesChanged: 1 } });
    expect(git(remote.barePath(`${repo}.git`), 'rev-parse', 'fargate/task')).toBe(record.workspace.commit);
    const calls = aws.calls.slice(callsBefore).filter((c) => c.principal === container.taskRole);
    expect(calls.filter((c) => c.service === 'lambda').map((c) => `${c.action} ${String(c.params.FunctionName)}`)).toContain(
      `Invoke ${String(resolver.resolve(fn('RunnerFunction').environment.GIT_TOKEN_MINTER_ARN))}`,
    );
    const { denied } = await checkCalls(assembly.template, aws.calls.slice(callsBefore));
    expect(denied).toEqual([]);
  }, 240_000);
});
