import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { ACQUIRE_SLOT_UPDATE, SLOTS_SK, slotsPk } from '../lib/sessions/project-slots.js';
import { SessionRepository } from '../lib/sessions/session-repository.js';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { RecordingAwsEndpoint } from './support/aws-endpoint.js';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { createSocket } from 'node:dgram';
import {
  deployedContainer, deployedFunctions, invokeHandler, lambdaEnvironment, readAssembly, runCommand, taskRoot, type DeployedFunction,
} from './support/deployed-code.js';
import { checkCalls, type AwsCall, type PolicyStatement } from './support/iam-check.js';
import { ROUTES } from '../lib/api/router.js';
import { resolveTemplate, templateResolver, type CfnTemplate } from './support/template-resolver.js';
import { transcriptKey } from '../lib/claude/transcript-store.js';
import { MILESTONE_INDEX } from '../lib/sessions/milestone-item.js';
import { TOTALS_ALL_SK, totalsPk } from '../lib/sessions/project-totals.js';
import { PROJECT_INDEX, SESSION_SK, sessionPk } from '../lib/sessions/session-item.js';

// The synthesized bundles invoked as Lambda invokes them, each as its own principal: every AWS
// call they make is recorded on the wire, then judged by the IAM policies the template grants.
const assembly = readAssembly(inject('cdkOut'));
const resolver = templateResolver(assembly.template);
const functions = deployedFunctions(assembly);
const fn = (prefix: string): DeployedFunction => functions.find((f) => f.logicalId.startsWith(prefix))!;
const tableId = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table')![0];
const SECRET = JSON.stringify({ ANTHROPIC_API_KEY: 'sk-ant-test-deployed' });

const taskReports: { action: string; params: Record<string, unknown> }[] = [];
const executionInputs = new Map<string, string>();
let dynamodb: LocalDynamoDb;
let aws: RecordingAwsEndpoint;
/** How an execution ended, as DescribeExecution tells its runner; RUNNING when absent. */
const executionStatuses = new Map<string, string>();
let anthropic: AnthropicStandIn;

beforeAll(async () => {
  const table = assembly.template.Resources[tableId]!.Properties!;
  dynamodb = await LocalDynamoDb.start({ table: table as never, tableName: resolver.physicalName(tableId) });
  anthropic = await new AnthropicStandIn().start();
  aws = await RecordingAwsEndpoint.start({
    upstreams: { dynamodb },
    handlers: {
      'secretsmanager.GetSecretValue': (p: { SecretId: string }) => ({ ARN: p.SecretId, Name: 'AnthropicApiKey', SecretString: SECRET }),
      'events.PutEvents': (p: { Entries: unknown[] }) => ({ FailedEntryCount: 0, Entries: p.Entries.map(() => ({ EventId: randomUUID() })) }),
      'states.SendTaskHeartbeat': (p: Record<string, unknown>) => (taskReports.push({ action: 'SendTaskHeartbeat', params: p }), {}),
      'states.SendTaskSuccess': (p: Record<string, unknown>) => (taskReports.push({ action: 'SendTaskSuccess', params: p }), {}),
      'states.SendTaskFailure': (p: Record<string, unknown>) => (taskReports.push({ action: 'SendTaskFailure', params: p }), {}),
      'states.DescribeExecution': (p: { executionArn: string }) => {
        const input = executionInputs.get(p.executionArn);
        if (!input) throw Object.assign(new Error(`no execution ${p.executionArn}`), { name: 'ExecutionDoesNotExist' });
        return { executionArn: p.executionArn, status: executionStatuses.get(p.executionArn) ?? 'RUNNING', input, startDate: Date.now() / 1000 };
      },
      'states.StartExecution': (p: { stateMachineArn: string; name: string }) => ({
        executionArn: `${p.stateMachineArn.replace(':stateMachine:', ':execution:')}:${p.name}`, startDate: Date.now() / 1000,
      }),
    },
  });
});

afterAll(async () => {
  await aws?.close();
  await anthropic?.close();
  await dynamodb?.close();
});

/** Invokes one deployed function's bundle once, as its own role, with its template environment. */
/** The function's answer, an error included. */
function invokeAnswer(deployed: DeployedFunction, event: unknown, extra: Record<string, string> = {}) {
  const task = taskRoot(deployed.codeDir, deployed.kind === 'zip' ? 'aws-sdk' : 'claude-code');
  const environment = Object.fromEntries(Object.entries(deployed.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
  const env = { ...lambdaEnvironment(resolver.physicalName(deployed.logicalId), task), ...environment, ...aws.envFor(deployed.role), ...extra };
  return invokeHandler(task, deployed.module, deployed.exportName, env, event);
}

async function invoke(deployed: DeployedFunction, event: unknown, extra: Record<string, string> = {}) {
  const answer = await invokeAnswer(deployed, event, extra);
  expect(answer.exitCode, answer.output).toBe(0);
  expect(answer.error, answer.output).toBeUndefined();
  return answer.result as any;
}

async function sessionItem(sessionId: string) {
  const { Item } = await dynamodb.client.send(new GetItemCommand({ TableName: dynamodb.tableName, Key: { pk: { S: `SESSION#${sessionId}` }, sk: { S: 'SESSION' } } }));
  return Item;
}

const stateMachineArn = resolver.ref(Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')![0]);

/** What the HTTP API test called, as `METHOD /path`. */
const calledRoutes: string[] = [];
/** Routes of lib/api/router.ts the HTTP function does not serve on AWS, each with where it is served and tested. */
const ROUTES_SERVED_ELSEWHERE: [route: string, reason: string][] = [
  ['POST /webhooks/github', 'its own function behind its own resource, deployed only with a webhook secret (cdk/github-webhook.ts; test/github-webhook.test.ts, its role in test/iam-policy.test.ts)'],
];

describe('the synthesized bundles, invoked', () => {
  let created: any;

  it('CreateSession puts the session RUNNING in the table and hands on the session and its prompt', async () => {
    // Prepare
    const sessionId = randomUUID();
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`;
    // Act
    created = await invoke(fn('SessionCreator'), {
      input: { prompt: 'Summarise the README', projectId: 'deployed', sessionId }, executionArn, executionName: sessionId,
      executionStartTime: new Date().toISOString(),
    });
    // Assess
    expect(created).toMatchObject({ session: { sessionId, projectId: 'deployed' }, prompt: 'Summarise the README', milestone: { item: null } });
    expect(await sessionItem(sessionId)).toMatchObject({ status: { S: 'RUNNING' } });
  });

  it('CreateSession refuses a workspace on a protected branch (main, by default), naming the field, and puts nothing', async () => {
    const sessionId = randomUUID();
    const answer = await invokeAnswer(fn('SessionCreator'), {
      input: { prompt: 'Fix it on main', projectId: 'deployed', sessionId, workspace: { repo: 'https://example.com/r.git', branch: 'main' } },
      executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`, executionName: sessionId, executionStartTime: new Date().toISOString(),
    });
    expect(answer.error, answer.output).toMatchObject({ errorType: 'InvalidInputError', errorMessage: expect.stringMatching(/workspace\.branch must not be a branch this deployment protects \(main, master/) });
    expect(await sessionItem(sessionId)).toBeUndefined();
  });

  it('CreateSession caps a session by its project from PROJECT_LIMITS: the cap as its budget when it names none, a refusal naming the field past it', async () => {
    // Prepare: the environment the stack gives CreateSession for `projectLimits` (test/project-limits.test.ts renders it)
    const limits = { PROJECT_LIMITS: JSON.stringify({ '*': { maxBudgetUsd: 2 }, capped: { timeoutSeconds: 300 } }) };
    const event = (sessionId: string, input: Record<string, unknown>) => ({
      input: { prompt: 'p', sessionId, ...input }, executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`,
      executionName: sessionId, executionStartTime: new Date().toISOString(),
    });
    const [given, refused] = [randomUUID(), randomUUID()];
    // Act
    const capped = await invoke(fn('SessionCreator'), event(given, { projectId: 'capped' }), limits);
    const answer = await invokeAnswer(fn('SessionCreator'), event(refused, { projectId: 'capped', maxBudgetUsd: 3, timeoutSeconds: 600 }), limits);
    // Assess
    expect(capped.session).toMatchObject({ projectId: 'capped', maxBudgetUsd: 2, timeoutSeconds: 300 });
    expect(await sessionItem(given)).toMatchObject({ maxBudgetUsd: { N: '2' }, timeoutSeconds: { N: '300' } });
    expect(answer.error, answer.output).toMatchObject({
      errorType: 'InvalidInputError', errorMessage: 'Invalid input: maxBudgetUsd must be at most 2 for project capped (this deployment\'s cap); timeoutSeconds must be at most 300 for project capped (this deployment\'s cap)',
    });
    expect(await sessionItem(refused)).toBeUndefined();
  });

  it('the runner image\'s Lambda handler runs the real Claude CLI for that session, reading its key from the secret', async () => {
    // Prepare
    anthropic.respondWith({ kind: 'text', text: 'deployed and done', usage: { input_tokens: 12, output_tokens: 3 } });
    // Act
    const run = await invoke(fn('RunnerFunction'), { ...created, retry: { attempt: 1, prior: null } }, { ANTHROPIC_BASE_URL: anthropic.endpoint.baseUrl! });
    // Assess: the record RecordUsage writes; the key reached the API, not the record
    expect(run.record).toMatchObject({ sessionId: created.session.sessionId, status: 'COMPLETED', result: 'deployed and done', usage: { inputTokens: 12 } });
    expect(anthropic.messageRequests.map((r) => r.sessionId)).toEqual([created.session.sessionId]);
    expect(JSON.stringify(run)).not.toContain('sk-ant-test-deployed');
  });

  it('the runner image\'s Lambda handler stops Claude when its execution is aborted (AWS does not stop it), and records what Claude spent', async () => {
    // Prepare: a session whose Claude is streaming a reply (1,187 input tokens reported) when the console aborts its execution
    const sessionId = randomUUID();
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`;
    const input = { prompt: 'A long job', projectId: 'deployed', sessionId };
    executionInputs.set(executionArn, JSON.stringify(input));
    const prepared = await invoke(fn('SessionCreator'), { input, executionArn, executionName: sessionId, executionStartTime: new Date().toISOString() });
    anthropic.respondWith({ kind: 'stall', usage: { input_tokens: 1187, output_tokens: 1 } });
    const answer = invokeAnswer(fn('RunnerFunction'), { ...prepared, retry: { attempt: 1, prior: null } }, { ANTHROPIC_BASE_URL: anthropic.endpoint.baseUrl! });
    for (let i = 0; i < 300 && anthropic.openStreams === 0; i++) await new Promise((r) => setTimeout(r, 100));
    // Act: the execution ends; the invocation goes on, as on AWS
    const abortedAt = Date.now();
    executionStatuses.set(executionArn, 'ABORTED');
    const { error } = await answer;
    // Assess: the runner saw it within its watch (5 s), stopped Claude, and wrote the spend (the close is the reaper's, or the sweeper's)
    expect(Date.now() - abortedAt).toBeLessThan(10_000);
    expect(error).toMatchObject({ errorType: 'ExecutionEndedError' });
    expect(anthropic.openStreams).toBe(0);
    expect(unmarshall((await sessionItem(sessionId))!)).toMatchObject({ usage: { inputTokens: 1187 }, spendRecordedAfterStop: true });
  }, 30_000);

  it('the runner image\'s Fargate entry, started as its container command, runs a session and answers its token', async () => {
    // Prepare: a fargate session created by the CreateSession bundle, its execution's input where DescribeExecution finds it
    const sessionId = randomUUID();
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`;
    const input = { prompt: 'Refactor "the" module\nslowly', projectId: 'deployed', sessionId, runtime: 'fargate' };
    executionInputs.set(executionArn, JSON.stringify(input));
    const prepared = await invoke(fn('SessionCreator'), { input, executionArn, executionName: sessionId, executionStartTime: new Date().toISOString() });
    anthropic.respondWith({ kind: 'text', text: 'refactored on fargate', usage: { input_tokens: 30, output_tokens: 4 } });
    const container = deployedContainer(assembly);
    const task = taskRoot(container.codeDir, 'claude-code');
    const environment = Object.fromEntries(Object.entries(container.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
    // Act: the overrides the workflow renders (States.JsonToString of each), the task's role
    const run = await runCommand(task, container.command, {
      PATH: process.env.PATH!, ...environment, ...aws.envFor(container.taskRole), ANTHROPIC_BASE_URL: anthropic.endpoint.baseUrl!,
      SESSION_JSON: JSON.stringify(prepared.session), MILESTONE_JSON: JSON.stringify(prepared.milestone),
      RETRY_JSON: JSON.stringify(prepared.retry), TASK_TOKEN: 'token-'.padEnd(2_048, 'x'), HEARTBEAT_INTERVAL_SECONDS: '1',
    });
    // Assess: a heartbeat first, then the outcome on the token; the prompt came from the execution, byte for byte
    expect(run.exitCode, run.output).toBe(0);
    expect(taskReports[0]?.action).toBe('SendTaskHeartbeat');
    const success = taskReports.find((r) => r.action === 'SendTaskSuccess');
    expect(JSON.parse(String(success?.params.output)).record).toMatchObject({ sessionId, runtime: 'fargate', status: 'COMPLETED', result: 'refactored on fargate' });
    expect(JSON.stringify(anthropic.messageRequests.at(-1)!.body.messages)).toContain(JSON.stringify(input.prompt).slice(1, -1));
  });

  it('the reaper closes the session of an aborted execution, and the stream consumer publishes its close', async () => {
    // Prepare
    const sessionId = created.session.sessionId as string;
    executionInputs.set(created.session.executionArn, JSON.stringify({ prompt: 'Summarise the README', projectId: 'deployed', sessionId }));
    executionStatuses.set(created.session.executionArn, 'ABORTED');
    const before = await sessionItem(sessionId);
    // Act
    const reaped = await invoke(fn('ReaperServiceFunction'), {
      version: '0', id: randomUUID(), 'detail-type': 'Step Functions Execution Status Change', source: 'aws.states', account: '123456789012',
      time: new Date().toISOString(), region: 'us-east-1', resources: [created.session.executionArn],
      // a large input is left out of the event: the reaper reads it from DescribeExecution
      detail: { executionArn: created.session.executionArn, stateMachineArn, name: sessionId, status: 'ABORTED', inputDetails: { included: false }, error: null, cause: null },
    });
    const after = await sessionItem(sessionId);
    const published = await invoke(fn('EventsServiceFunction'), {
      Records: [{
        eventID: '1', eventName: 'MODIFY', eventSource: 'aws:dynamodb', awsRegion: 'us-east-1',
        dynamodb: { Keys: { pk: before!.pk, sk: before!.sk }, OldImage: before, NewImage: after, SequenceNumber: '100', StreamViewType: 'NEW_AND_OLD_IMAGES' },
      }],
    });
    // Assess
    expect(reaped).toMatchObject({ closed: true });
    expect(after).toMatchObject({ status: { S: 'ABORTED' } });
    expect(published).toEqual({ batchItemFailures: [] });
    expect(aws.calls.filter((c) => c.action === 'PutEvents')).toHaveLength(1);
  });

  it('the sweeper closes a session whose execution timed out unrecorded (its event lost), and frees its slot', async () => {
    // Prepare: a session RUNNING for 20 minutes in a limited project, its execution timed out long ago
    const sessionId = randomUUID();
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`;
    const input = { prompt: 'A lost event', projectId: 'deployed-swept', sessionId };
    const { session } = prepareSessionStart(input, { executionArn, now: new Date(Date.now() - 20 * 60_000) });
    await new SessionRepository(dynamodb.documentClient, dynamodb.tableName).create(session);
    await dynamodb.documentClient.send(new UpdateCommand({
      TableName: dynamodb.tableName, Key: { pk: slotsPk(input.projectId), sk: SLOTS_SK }, UpdateExpression: ACQUIRE_SLOT_UPDATE,
      ExpressionAttributeValues: { ':session': new Set([sessionId]) },
    }));
    executionInputs.set(executionArn, JSON.stringify(input));
    executionStatuses.set(executionArn, 'TIMED_OUT');
    // Act: the schedule's tick
    const { swept } = await invoke(fn('SweeperServiceFunction'), {
      version: '0', id: randomUUID(), 'detail-type': 'Scheduled Event', source: 'aws.events', account: '123456789012',
      time: new Date().toISOString(), region: 'us-east-1', resources: [], detail: {},
    });
    // Assess
    expect(swept).toEqual([expect.objectContaining({ sessionId, closed: true, slotReleased: true, executionStatus: 'TIMED_OUT' })]);
    expect(await sessionItem(sessionId)).toMatchObject({ status: { S: 'TIMED_OUT' }, error: { S: 'ExecutionTimedOut' } });
    expect(aws.calls.filter((c) => c.action === 'DescribeExecution' && c.principal.startsWith('Sweeper'))).not.toHaveLength(0);
  });

  it('the task-stop watch fails the token a stopped Fargate task held, naming why it stopped, and logs no token', async () => {
    // Prepare: ECS's event for a runner task whose image could not be pulled
    const token = `token-${randomUUID()}`;
    const before = taskReports.length;
    const event = (lastStatus: string) => ({
      version: '0', id: randomUUID(), 'detail-type': 'ECS Task State Change', source: 'aws.ecs', account: '123456789012',
      time: new Date().toISOString(), region: 'us-east-1', resources: [],
      detail: {
        lastStatus, stopCode: 'TaskFailedToStart', stoppedReason: 'CannotPullContainerError: pull image manifest has been retried 5 time(s)',
        taskArn: 'arn:aws:ecs:us-east-1:123456789012:task/cluster/abc', containers: [{ name: 'runner', reason: 'CannotPullContainerError' }],
        overrides: { containerOverrides: [{ name: 'runner', environment: [{ name: 'SESSION_JSON', value: '{}' }, { name: 'TASK_TOKEN', value: token }] }] },
      },
    });
    // Act
    const running = await invokeAnswer(fn('TaskStopWatch'), event('RUNNING'));
    const stopped = await invokeAnswer(fn('TaskStopWatch'), event('STOPPED'));
    // Assess
    expect(running.result).toEqual({ outcome: 'not-stopped' });
    expect(stopped.result, stopped.output).toEqual({ outcome: 'failed' });
    expect(taskReports.slice(before)).toEqual([{
      action: 'SendTaskFailure',
      params: { taskToken: token, error: 'ECS.TaskStopped', cause: expect.stringContaining('TaskFailedToStart: CannotPullContainerError') },
    }]);
    expect(stopped.output).not.toContain(token);
  });

  it('the HTTP API answers on every route, each under its project\'s path', async () => {
    // Prepare
    const event = (httpMethod: string, path: string, body?: unknown) => ({
      resource: '/{proxy+}', path, httpMethod, headers: body === undefined ? {} : { 'content-type': 'application/json' }, multiValueHeaders: {},
      queryStringParameters: null, multiValueQueryStringParameters: null, pathParameters: { proxy: path.slice(1) }, stageVariables: null,
      body: body === undefined ? null : JSON.stringify(body), isBase64Encoded: false,
      requestContext: { requestId: randomUUID(), stage: 'v1', httpMethod, path, resourcePath: '/{proxy+}', identity: { sourceIp: '203.0.113.1' } },
    });
    const api = (method: string, path: string, body?: unknown) => (calledRoutes.push(`${method} ${path}`), invoke(fn('HttpServiceFunction'), event(method, path, body)));
    const sessionId = created.session.sessionId as string;
    // Act: every route of lib/api/router.ts
    const started = await api('POST', '/projects/deployed/sessions', { prompt: 'hi' });
    const read = await api('GET', `/projects/deployed/sessions/${sessionId}`);
    const elsewhere = await api('GET', `/projects/other/sessions/${sessionId}`);
    const listed = await api('GET', '/projects/deployed/sessions');
    const usage = await api('GET', '/projects/deployed/usage');
    const projects = await api('GET', '/projects');
    const opened = await api('POST', '/projects/deployed/milestones');
    const milestoneId = JSON.parse(opened.body).milestoneId as string;
    const milestone = await api('GET', `/projects/deployed/milestones/${milestoneId}`);
    const closed = await api('POST', `/projects/deployed/milestones/${milestoneId}/close`);
    // Assess
    expect(started.statusCode, started.body).toBe(202);
    expect(JSON.parse(read.body)).toMatchObject({ sessionId, status: 'ABORTED' });
    expect(elsewhere.statusCode).toBe(404);
    expect(JSON.parse(listed.body).items).toEqual(expect.arrayContaining([expect.objectContaining({ sessionId })]));
    expect(JSON.parse(usage.body)).toMatchObject({ projectId: 'deployed', sessions: expect.any(Number) });
    expect(JSON.parse(projects.body).items).toContain('deployed');
    expect(opened.statusCode, opened.body).toBe(201);
    expect(JSON.parse(milestone.body)).toMatchObject({ milestoneId, projectId: 'deployed', status: 'OPEN', tasks: [] });
    expect(JSON.parse(closed.body)).toMatchObject({ milestoneId, status: 'CLOSED' });
  });

  it('has called every route of lib/api/router.ts (ROUTES) but the webhook\'s, which another function serves', () => {
    // Prepare: each route as a pattern of the paths it answers
    const pattern = (r: { method: string; path: string }) => new RegExp(`^${r.method} ${r.path.replace(/\{[^/]+\}/g, '[^/]+')}$`);
    // Act
    const uncalled = ROUTES.filter((r) => !calledRoutes.some((c) => pattern(r).test(c))).map((r) => `${r.method} ${r.path}`);
    // Assess
    expect(uncalled).toEqual(ROUTES_SERVED_ELSEWHERE.map(([route]) => route));
  });
});

describe('what the deployed functions trace', () => {
  it('sends X-Ray no prompt and no reply: CreateSession and the runner, traced and sampled', async () => {
    // Prepare: a daemon address that collects the segments, and a sampled trace
    const daemon = createSocket('udp4');
    const segments: string[] = [];
    daemon.on('message', (m) => segments.push(m.toString('utf8')));
    await new Promise<void>((resolve) => daemon.bind(0, '127.0.0.1', () => resolve()));
    const traced = {
      AWS_XRAY_DAEMON_ADDRESS: `127.0.0.1:${daemon.address().port}`,
      _X_AMZN_TRACE_ID: `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${randomUUID().replaceAll('-', '').slice(0, 24)};Parent=53995c3f42cd8ad8;Sampled=1`,
      INVOKE_SETTLE_MS: '300',
    };
    const sessionId = randomUUID();
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}`;
    const input = { prompt: 'THE-PROMPT-TEXT: refactor the billing module', projectId: 'deployed', sessionId };
    executionInputs.set(executionArn, JSON.stringify(input));
    anthropic.respondWith({ kind: 'text', text: 'THE-REPLY-TEXT: refactored', usage: { input_tokens: 3, output_tokens: 1 } });
    try {
      // Act
      const prepared = await invoke(fn('SessionCreator'), { input, executionArn, executionName: sessionId, executionStartTime: new Date().toISOString() }, traced);
      const run = await invoke(fn('RunnerFunction'), { ...prepared, retry: { attempt: 1, prior: null } }, { ...traced, ANTHROPIC_BASE_URL: anthropic.endpoint.baseUrl! });
      await new Promise((r) => setTimeout(r, 300));
      // Assess: both ran and traced (the test sees segments), and none holds the prompt or the reply
      expect(run.record).toMatchObject({ status: 'COMPLETED', result: 'THE-REPLY-TEXT: refactored' });
      expect(segments.filter((x) => x.includes('"name":"## index.handler"'))).toHaveLength(2);
      expect(segments.join('\n')).not.toContain('THE-PROMPT-TEXT');
      expect(segments.join('\n')).not.toContain('THE-REPLY-TEXT');
    } finally {
      daemon.close();
    }
  }, 60_000);
});

describe('IAM equals the calls', () => {
  it('allows every call each function made, by the policies of its own role', async () => {
    // Prepare: what the bundles above sent on the wire, each under the role it runs as
    const calls: AwsCall[] = aws.calls;
    expect(calls.filter((c) => c.principal === 'unknown')).toEqual([]); // every call came with a role's credentials
    expect(new Set(calls.map((c) => c.principal)).size).toBe(8); // seven functions and the Fargate task
    // Act: with the calls made elsewhere (each with its reason), judged the same way
    const { denied, unusedGrants } = await judge(assembly.template);
    // Assess: nothing denied, no grant that no call used
    expect(denied).toEqual([]);
    expect(unusedGrants).toEqual([]);
  });

  it('fails the API role narrowed to the wrong index: the list of a project\'s sessions, or a milestone\'s tasks, is denied', async () => {
    // Prepare: two copies of the template, the API role's Query on every index (index/*) narrowed to one of them
    const api = fn('HttpServiceFunction').role;
    const indexQuery = (s: PolicyStatement) => s.Action === 'dynamodb:Query' && JSON.stringify(s.Resource).includes('/index/*');
    const narrowed = (index: string) => withStatement(api, indexQuery, (s) => {
      s.Resource = JSON.parse(JSON.stringify(s.Resource).replace('/index/*', `/index/${index}`));
    });
    // Act
    const [onMilestones, onProjects] = await Promise.all([judge(narrowed(MILESTONE_INDEX)), judge(narrowed(PROJECT_INDEX))]);
    // Assess: each denies the Query of the other index, by the API role
    const queries = (denied: { principal: string; action: string; resource: string }[]) => denied.map((d) => `${d.principal} ${d.action} ${d.resource.split(':').pop()}`);
    expect(new Set(queries(onMilestones.denied))).toEqual(new Set([`${api} dynamodb:Query table/${resolver.physicalName(tableId)}/index/${PROJECT_INDEX}`]));
    expect(new Set(queries(onProjects.denied))).toEqual(new Set([`${api} dynamodb:Query table/${resolver.physicalName(tableId)}/index/${MILESTONE_INDEX}`]));
  });

  it('fails a grant excused as used elsewhere when it is on the wrong resource: the runner\'s transcripts on another prefix', async () => {
    // Prepare: the runner's transcript grant (milestones/*) moved to a prefix no code writes
    const runner = fn('RunnerFunction').role;
    const broken = withStatement(runner, (s) => JSON.stringify(s.Action).includes('s3:GetObjectVersion'), (s) => {
      s.Resource = JSON.parse(JSON.stringify(s.Resource).replace('/milestones/*', '/elsewhere/*'));
    });
    // Act
    const { denied } = await judge(broken);
    // Assess: the milestone task's transcript calls are denied, by object
    const object = `arn:aws:s3:::${resolver.physicalName(bucketId)}/${transcriptKey(ELSEWHERE_MILESTONE)}`;
    expect(denied.map((d) => `${d.principal} ${d.action} ${d.resource}`)).toEqual(['s3:GetObject', 's3:GetObjectVersion', 's3:PutObject'].map((a) => `${runner} ${a} ${object}`));
  });

  it('allows every service integration of the state machine, by the state machine\'s role', async () => {
    // Prepare: each Task state's call, as Step Functions makes it with the rendered parameters
    const resolved = resolveTemplate(assembly.template);
    const [machineId, machine] = Object.entries(resolved.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')!;
    const role = String((assembly.template.Resources[machineId]!.Properties!.RoleArn as { 'Fn::GetAtt': string[] })['Fn::GetAtt'][0]);
    const states = JSON.parse(String(machine.Properties!.DefinitionString)).States as Record<string, Record<string, any>>;
    const calls = Object.values(states).filter((s) => s.Type === 'Task').map((s) => integrationCall(role, s));
    // Act
    const { denied } = await checkCalls(assembly.template, calls);
    // Assess
    expect(calls.length).toBeGreaterThan(10);
    expect(denied).toEqual([]);
  });
});

const bucketId = Object.keys(assembly.template.Resources).find((id) => assembly.template.Resources[id]!.Type === 'AWS::S3::Bucket' && id.startsWith('Transcripts'))!;
/** The milestone whose transcript the calls made elsewhere touch. */
const ELSEWHERE_MILESTONE = randomUUID();

/** A call no invocation above makes but its role is for, and who makes it where. */
interface CallMadeElsewhere {
  call: AwsCall;
  reason: string;
}

/**
 * The calls each role is for that no invocation above makes: an AWS service acting with the role,
 * or a path these invocations do not take (a milestone, a failed push; covered on the local
 * runtime). They are judged with the recorded ones, action and resource (table, index, key,
 * object, queue), so an excuse cannot cover a grant on the wrong resource: only a grant one of
 * them or a recorded call used is not reported.
 */
function callsMadeElsewhere(): CallMadeElsewhere[] {
  const resolved = resolveTemplate(assembly.template);
  const idOf = (prefix: string, type: string) => Object.keys(resolved.Resources).find((id) => id.startsWith(prefix) && resolved.Resources[id]!.Type === type)!;
  const table = resolver.physicalName(tableId);
  const bucket = resolver.physicalName(bucketId);
  const queueUrl = (prefix: string) => `https://sqs.us-east-1.amazonaws.com/123456789012/${resolver.physicalName(idOf(prefix, 'AWS::SQS::Queue'))}`;
  const key = (pk: string, sk: string) => ({ pk: { S: pk }, sk: { S: sk } });
  const transcript = transcriptKey(ELSEWHERE_MILESTONE);
  const [runner, api, events, task] = [fn('RunnerFunction').role, fn('HttpServiceFunction').role, fn('EventsServiceFunction').role, deployedContainer(assembly).taskRole];
  const call = (principal: string, service: string, action: string, params: Record<string, unknown>, reason: string): CallMadeElsewhere =>
    ({ call: { principal, service, action, params }, reason });
  // What a milestone task and a failed push do with the transcript bucket (lib/claude/transcript-store.ts).
  const transcripts = (principal: string, reason: string) => [
    call(principal, 's3', 'GetObject', { Bucket: bucket, Key: transcript }, reason),
    call(principal, 's3', 'GetObject', { Bucket: bucket, Key: transcript, VersionId: 'v1' }, reason),
    call(principal, 's3', 'PutObject', { Bucket: bucket, Key: transcript }, reason),
    call(principal, 's3', 'ListObjectsV2', { Bucket: bucket, prefix: transcript }, `${reason}; S3 answers a missing one NoSuchKey only to a role that may list it`),
    call(principal, 's3', 'PutObject', { Bucket: bucket, Key: `workspaces/${randomUUID()}.patch` }, 'a workspace whose push failed saves its patch (test/workspaces.test.ts)'),
  ];
  const stream = String(resolver.getAtt(tableId, 'StreamArn'));
  return [
    ...functions.flatMap((f) => {
      const logGroupName = String(resolver.resolve((resolved.Resources[f.logicalId]!.Properties!.LoggingConfig as { LogGroup: unknown }).LogGroup));
      const logs = 'AWSLambdaBasicExecutionRole: the Lambda service writes the function\'s logs, to its own log group';
      const traces = 'active tracing: the X-Ray daemon beside the function sends the segments';
      return [
        call(f.role, 'logs', 'CreateLogStream', { logGroupName, logStreamName: '2026/01/01/[$LATEST]0' }, logs),
        call(f.role, 'logs', 'PutLogEvents', { logGroupName, logStreamName: '2026/01/01/[$LATEST]0' }, logs),
        call(f.role, 'xray', 'PutTraceSegments', {}, traces),
        call(f.role, 'xray', 'PutTelemetryRecords', {}, traces),
      ];
    }),
    ...['ListStreams', 'DescribeStream', 'GetShardIterator', 'GetRecords'].map((action) =>
      call(events, 'dynamodb', action, { TableName: table, StreamArn: stream }, 'the event source mapping reads the table\'s stream with the function\'s role')),
    ...['SendMessage', 'GetQueueAttributes', 'GetQueueUrl'].map((action) =>
      call(events, 'sqs', action, { QueueUrl: queueUrl('EventsDeadLetters') }, 'the event source mapping sends a failed batch to its dead-letter queue')),
    ...transcripts(runner, 'milestone tasks restore and save their transcript (test/milestones.test.ts)'),
    ...transcripts(task, 'milestone tasks on Fargate restore and save theirs (test/fargate-runtime.test.ts)'),
    call(task, 'dynamodb', 'TransactWriteItems', {
      TransactItems: [{ Update: { TableName: table, Key: key(sessionPk(randomUUID()), SESSION_SK) } }, { Update: { TableName: table, Key: key(totalsPk('deployed'), TOTALS_ALL_SK) } }],
    }, 'a stopped run\'s spend on its session and its project totals, written when the execution ended under the task (test/fargate-runtime.test.ts, "runs on after an abort")'),
    call(runner, 'dynamodb', 'GetItem', { TableName: table, Key: key(sessionPk(randomUUID()), SESSION_SK) }, 'a stopped run\'s record refused finds whether it was its own repeat (test/session-reaper.test.ts)'),
    call(api, 's3', 'PutObjectTagging', { Bucket: bucket, Key: transcript }, 'closing a milestone that has a transcript tags it to expire; the one closed above has none'),
  ];
}

/** The recorded calls and those made elsewhere, judged against a template (the deployed one, or a broken copy). */
function judge(template: CfnTemplate) {
  return checkCalls(template, [...aws.calls, ...callsMadeElsewhere().map((e) => e.call)]);
}

/** A copy of the deployed template with one statement of one role's policies changed. */
function withStatement(role: string, matches: (s: PolicyStatement) => boolean, change: (s: PolicyStatement) => void): CfnTemplate {
  const copy = structuredClone(assembly.template);
  const statements = Object.values(copy.Resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties!.Roles).includes(`"${role}"`))
    .flatMap((r) => [(r.Properties!.PolicyDocument as { Statement: PolicyStatement | PolicyStatement[] }).Statement].flat());
  const found = statements.filter(matches);
  if (found.length !== 1) throw new Error(`expected one statement of ${role} to change, found ${found.length}`);
  change(found[0]!);
  return copy;
}

/** The API call a Task state's integration makes (arn:aws:states:::<service>:<action>[.pattern]). */
function integrationCall(principal: string, state: Record<string, any>): AwsCall {
  // A LambdaInvoke with payloadResponseOnly names the function itself as its Resource.
  if (String(state.Resource).startsWith('arn:aws:lambda:')) return { principal, service: 'lambda', action: 'Invoke', params: { FunctionName: state.Resource } };
  const match = /^arn:aws:states:::(aws-sdk|\w+):([\w:]+?)(?:\.\w+)?$/.exec(String(state.Resource));
  if (!match) throw new Error(`no integration mapping for ${state.Resource}`);
  const p = state.Parameters as Record<string, any>;
  if (match[1] === 'dynamodb') {
    // A key given by a path ('S.$': "States.Format('MILESTONE#{}', …)") takes an example value of its form.
    const example = (v: Record<string, string>) => v.S ?? `${/'(\w+#)\{\}'/.exec(v['S.$'] ?? '')?.[1] ?? ''}example`;
    const key = Object.fromEntries(Object.entries(p.Key as Record<string, Record<string, string>>).map(([k, v]) => [k, { S: example(v) }]));
    return { principal, service: 'dynamodb', action: 'UpdateItem', params: { TableName: p.TableName, Key: key } };
  }
  if (match[1] === 'lambda') return { principal, service: 'lambda', action: 'Invoke', params: { FunctionName: p.FunctionName } };
  if (match[1] === 'aws-sdk' && match[2] === 'dynamodb:transactWriteItems') {
    // Each Update's key: a path ('S.$': '$.totals.pk') takes an example value of the prefix it names.
    const example = (v: Record<string, string>) => v.S ?? `${/'(\w+#)\{\}'/.exec(v['S.$'] ?? '')?.[1] ?? 'TOTALS#'}example`;
    const items = (p.TransactItems as { Update: { TableName: string; Key: Record<string, Record<string, string>> } }[]).map(({ Update }) => ({
      Update: { TableName: Update.TableName, Key: Object.fromEntries(Object.entries(Update.Key).map(([k, v]) => [k, { S: example(v) }])) },
    }));
    return { principal, service: 'dynamodb', action: 'TransactWriteItems', params: { TransactItems: items } };
  }
  if (match[1] === 'ecs') return { principal, service: 'ecs', action: 'RunTask', params: { taskDefinition: p.TaskDefinition, cluster: p.Cluster } };
  throw new Error(`no integration mapping for ${state.Resource}`);
}
