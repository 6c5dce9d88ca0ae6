import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStandIn, type RecordedRequest } from '../lib/local/anthropic-stand-in.js';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { SessionRepository } from '../lib/sessions/session-repository.js';
import type { SessionStart } from '../lib/sessions/execution-input.js';
import { RecordingAwsEndpoint } from './support/aws-endpoint.js';
import { deployedFunctions, invokeHandler, lambdaEnvironment, readAssembly, taskRoot, type CloudAssembly } from './support/deployed-code.js';
import { checkCalls, type AwsCall } from './support/iam-check.js';
import { templateResolver } from './support/template-resolver.js';
import { promptSha256 } from '../lib/sessions/execution-input.js';

// `npx cdk synth -c provider=bedrock -c model=…` as a user runs it, and the runner bundle it made,
// invoked as Lambda invokes it: the runner assumes the model role, Claude's CLI calls Bedrock (the
// stand-in's event stream) with those credentials alone, and every call, the CLI's included, is
// judged by the policies the template grants.
const MODEL = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';
const SMALL = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';
const PROFILE = 'arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6';

let assembly: CloudAssembly;
let synthOutput = '';
let dynamodb: LocalDynamoDb;
let aws: RecordingAwsEndpoint;
let bedrock: AnthropicStandIn;
const issued: string[] = [];

beforeAll(async () => {
  const outdir = mkdtempSync(join(tmpdir(), 'cdk-bedrock-'));
  const synth = spawnSync(process.execPath, [
    join('node_modules', 'aws-cdk', 'bin', 'cdk'), 'synth', '--quiet', '--output', outdir,
    '-c', 'provider=bedrock', '-c', `model=${MODEL}`, '-c', `smallFastModel=${SMALL}`, '-c', `projectModels={"billing":"${PROFILE}"}`,
  ], { encoding: 'utf8', env: { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' } });
  synthOutput = `${synth.stdout}${synth.stderr}`;
  if (synth.status !== 0) throw new Error(`cdk synth -c provider=bedrock failed:\n${synthOutput.slice(-3000)}`);
  assembly = readAssembly(outdir);
  const resolver = templateResolver(assembly.template);
  const tableId = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table')![0];
  dynamodb = await LocalDynamoDb.start({ table: assembly.template.Resources[tableId]!.Properties as never, tableName: resolver.physicalName(tableId) });
  bedrock = await new AnthropicStandIn().start();
  aws = await RecordingAwsEndpoint.start({
    upstreams: { dynamodb },
    handlers: {
      // The runner's watch of its execution (every 5 s): still running.
      'states.DescribeExecution': (p: { executionArn: string }) => ({ executionArn: p.executionArn, status: 'RUNNING', startDate: Date.now() / 1000 }),
      // The model role's credentials, as STS would issue them: their key id names the role, so the calls made with them are its.
      'sts.AssumeRole': (p: { RoleArn: string; RoleSessionName: string }) => {
        const role = modelRoleId();
        const { AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY } = aws.envFor(role);
        issued.push(p.RoleSessionName);
        const expiration = new Date(Date.now() + 3_600_000).toISOString();
        return {
          xml: `<Credentials><AccessKeyId>${AWS_ACCESS_KEY_ID}</AccessKeyId><SecretAccessKey>${AWS_SECRET_ACCESS_KEY}</SecretAccessKey>` +
            `<SessionToken>model-session-token</SessionToken><Expiration>${expiration}</Expiration></Credentials>` +
            `<AssumedRoleUser><AssumedRoleId>AROAMODEL:${p.RoleSessionName}</AssumedRoleId><Arn>${p.RoleArn}/${p.RoleSessionName}</Arn></AssumedRoleUser>`,
        };
      },
    },
  });
}, 180_000);

afterAll(async () => {
  await aws?.close();
  await bedrock?.close();
  await dynamodb?.close();
});

function stateMachineId(): string {
  return Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')![0];
}

function modelRoleId(): string {
  return Object.entries(assembly.template.Resources).find(([id, r]) => r.Type === 'AWS::IAM::Role' && id.startsWith('ModelAccessRole'))![0];
}

/** The principal whose recording-endpoint credentials signed a request (see RecordingAwsEndpoint.envFor). */
function signer(request: RecordedRequest): string {
  const key = request.accessKeyId ?? '';
  return key.startsWith('LOCAL') ? Buffer.from(key.slice(5), 'hex').toString('utf8') : `unsigned (${key || 'no key'})`;
}

/** A request the CLI sent to Bedrock, as the AWS call IAM authorizes. */
function bedrockCall(request: RecordedRequest): AwsCall {
  const [, kind, id, verb] = /^\/(model|inference-profiles)(?:\/([^/]+))?(?:\/(.+))?$/.exec(request.path) ?? [];
  const modelId = id && decodeURIComponent(id);
  const action = kind === 'inference-profiles'
    ? (modelId ? 'GetInferenceProfile' : 'ListInferenceProfiles')
    : ({ 'invoke-with-response-stream': 'InvokeModelWithResponseStream', invoke: 'InvokeModel', 'count-tokens': 'CountTokens' } as Record<string, string>)[verb ?? ''] ?? `Unknown(${request.path})`;
  return { principal: signer(request), service: 'bedrock', action, params: modelId ? { modelId } : {} };
}

describe('cdk synth -c provider=bedrock', () => {
  it('synthesizes with every cdk-nag finding acknowledged, no API key secret, and a model role the runners may assume', () => {
    const resources = Object.entries(assembly.template.Resources);
    expect(resources.filter(([, r]) => r.Type === 'AWS::SecretsManager::Secret')).toEqual([]);
    expect(synthOutput).not.toMatch(/AwsSolutions-\w+.*(Error|Warning)/);
    const assumers = resources
      .filter(([, r]) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties).includes('sts:AssumeRole'))
      .flatMap(([, r]) => (r.Properties!.Roles as { Ref: string }[]).map((role) => role.Ref)).sort();
    expect(assumers).toEqual([expect.stringMatching(/^FargateTaskTaskRole/), expect.stringMatching(/^RunnerFunctionServiceRole/)]);
  });
});

describe('the runner bundle of a Bedrock deployment, invoked', () => {
  let calls: AwsCall[] = [];

  it('runs the real CLI on Bedrock with the model role\'s credentials alone, on the pinned model and the project\'s own profile', async () => {
    // Prepare: the session CreateSession would hand on; the runner's template environment, its role's credentials
    const resolver = templateResolver(assembly.template);
    const runner = deployedFunctions(assembly).find((f) => f.logicalId.startsWith('RunnerFunction'))!;
    const task = taskRoot(runner.codeDir, 'claude-code');
    const environment = Object.fromEntries(Object.entries(runner.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
    const env = {
      ...lambdaEnvironment(resolver.physicalName(runner.logicalId), task), ...environment, ...aws.envFor(runner.role),
      ANTHROPIC_BEDROCK_BASE_URL: bedrock.url,
    };
    const sessionFor = (projectId: string) => {
      const sessionId = randomUUID();
      const prompt = `hello from ${projectId}`;
      return {
        session: {
          sessionId, projectId, mode: 'fresh', runtime: 'lambda', trigger: 'console', startedAt: new Date().toISOString(),
          executionArn: `${String(resolver.ref(stateMachineId())).replace(':stateMachine:', ':execution:')}:${sessionId}`, timeoutSeconds: 600, promptChars: prompt.length,
          promptSha256: promptSha256(prompt),
        },
        prompt, milestone: { item: null }, retry: { attempt: 1, prior: null },
      };
    };
    bedrock.respondWith({ kind: 'text', text: 'on bedrock', usage: { input_tokens: 40, output_tokens: 5 } }, { kind: 'text', text: 'billed to the project', usage: { input_tokens: 7, output_tokens: 1 } });
    // Act
    const runs = [];
    for (const projectId of ['demo', 'billing']) {
      // The session CreateSession would have put RUNNING: the runner claims its attempt on it before Claude starts.
      const input = sessionFor(projectId);
      await new SessionRepository(dynamodb.documentClient, dynamodb.tableName).create(input.session as SessionStart);
      const answer = await invokeHandler(task, runner.module, runner.exportName, env, input);
      expect(answer.error, answer.output).toBeUndefined();
      runs.push(answer.result as { record: { status: string; provider: string; model: string; usage: { inputTokens: number } } });
    }
    // Assess: the records, the models called, and who signed every call to Bedrock
    expect(runs.map((r) => [r.record.status, r.record.provider, r.record.model])).toEqual([['COMPLETED', 'bedrock', MODEL], ['COMPLETED', 'bedrock', PROFILE]]);
    const models = bedrock.messageRequests.map((r) => r.model);
    expect(models).toEqual([MODEL, PROFILE]);
    expect(issued).toHaveLength(2);
    expect(issued.every((name) => /^claude-[0-9a-f-]{36}$/.test(name))).toBe(true);
    expect(new Set(bedrock.requests.map(signer))).toEqual(new Set([modelRoleId()]));
    // Each session's credentials are limited to its own models by the AssumeRole session policy (under IAM's 2,048 characters).
    const policies = aws.calls.filter((c) => c.action === 'AssumeRole').map((c) => String(c.params.Policy));
    expect(policies.map((p) => p.length).every((n) => n < 2_048)).toBe(true);
    expect(policies.map((p) => [p.includes(`inference-profile/${MODEL}`), p.includes(PROFILE), p.includes(`inference-profile/${SMALL}`)])).toEqual([
      [true, false, true], [false, true, true],
    ]);
    calls = [...aws.calls, ...bedrock.requests.map(bedrockCall)];
  }, 120_000);

  it('IAM allows every call: the runner\'s AssumeRole by its own role, each Bedrock call by the model role', async () => {
    expect(calls.map((c) => `${c.service}:${c.action}`)).toEqual(expect.arrayContaining(['sts:AssumeRole', 'bedrock:InvokeModelWithResponseStream']));
    const { denied, unusedGrants } = await checkCalls(assembly.template, calls, { reportUnusedFor: [modelRoleId()] });
    expect(denied).toEqual([]);
    // Every statement of the model role is what some call needed: nothing granted beyond the calls.
    expect(unusedGrants).toEqual([]);
    // What the CLI calls (2.1.197): the system profiles first, GetInferenceProfile on an application profile, then the model.
    // The runner's own: its attempt's claim on the session, and (if the run outlasts a watch interval) DescribeExecution.
    const made = calls.filter((c) => c.action !== 'DescribeExecution').map((c) => `${c.principal.replace(/[0-9A-F]{8}$/, '')} ${c.service}:${c.action}`);
    expect([...new Set(made)].sort()).toEqual([
      'ModelAccessRole bedrock:GetInferenceProfile', 'ModelAccessRole bedrock:InvokeModelWithResponseStream',
      'ModelAccessRole bedrock:ListInferenceProfiles', 'RunnerFunctionServiceRole dynamodb:UpdateItem', 'RunnerFunctionServiceRole sts:AssumeRole',
    ]);
  });

  it('and denies the model role a model the deployment did not configure (the check can fail)', async () => {
    const other: AwsCall = { principal: modelRoleId(), service: 'bedrock', action: 'InvokeModelWithResponseStream', params: { modelId: 'us.anthropic.claude-opus-4-6-v1' } };
    const { denied } = await checkCalls(assembly.template, [other]);
    expect(denied.map((d) => d.action)).toContain('bedrock:InvokeModelWithResponseStream');
  });
});
