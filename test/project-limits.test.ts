import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { v4 as uuidv4 } from 'uuid';
import { afterAll, describe, expect, it } from 'vitest';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { createApiHandler } from '../lib/api/router.js';
import { startLocalApiServer } from '../lib/local/local-api-server.js';
import type { ProjectLimits } from '../lib/sessions/project-limits.js';
import { DEFAULT_TOOLS } from '../lib/sessions/session-limits.js';
import { LocalRuntime } from '../lib/local/local-runtime.js';
import { claudeProcessOptions } from '../lib/claude/claude-process.js';
import { ProjectAtCapacityError } from '../lib/sessions/project-slots.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';
import { assertCanStart } from '../lib/sessions/start-checks.js';
import { prepareSession, sessionPolicyEnvironment, sessionPolicyFromEnv } from '../lib/sessions/session-creation.js';
import { BIN, cliEnvironment, runCli } from './support/cli-process.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

// Every project at most $0.01 a session; `capped` also 2 s and Lambda only; `fargate-only` on Fargate only.
const LIMITS: ProjectLimits = {
  '*': { maxBudgetUsd: 0.01 },
  capped: { timeoutSeconds: 2, runtimes: ['lambda'] },
  'fargate-only': { runtimes: ['fargate'] },
};

let env: TestRuntime;
useTestRuntime((started) => (env = started), {}, { policy: { projectLimits: LIMITS } });

const CAP = "(this deployment's cap)";

describe('per-project caps, in the workflow (CreateSession)', () => {
  it.each([
    ['a budget over the cap every project has', { projectId: 'any', maxBudgetUsd: 0.02 }, `maxBudgetUsd must be at most 0.01 for project any ${CAP}`],
    ['a timeout over its project\'s cap', { projectId: 'capped', timeoutSeconds: 3 }, `timeoutSeconds must be at most 2 for project capped ${CAP}`],
    ['a runtime its project may not use', { projectId: 'fargate-only' }, `runtime must be fargate for project fargate-only ${CAP}, not lambda`],
  ])('refuses %s naming the field: no session, no Claude', async (_label, input, cause) => {
    // Act
    const { outcome, session } = await env.runtime.run({ prompt: 'p', sessionId: uuidv4(), ...input });
    // Assess
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInputError', cause: expect.stringContaining(`"errorMessage":"Invalid input: ${cause}"`) });
    expect(session).toBeUndefined();
    expect(env.anthropic.messageRequests).toEqual([]);
  });

  it('gives a session that names no budget or timeout its project\'s caps, the `*` ones under a project\'s own', () => {
    // Act
    const prepare = (input: Record<string, unknown>) => prepareSession({ input: { prompt: 'p', ...input }, executionArn: 'arn', executionName: 'e' }, { projectLimits: LIMITS }).session;
    // Assess: capped has its own timeout and the budget of every project; the runtime's default stays when lower than the cap
    expect(prepare({ projectId: 'capped' })).toMatchObject({ maxBudgetUsd: 0.01, timeoutSeconds: 2 });
    expect(prepare({ projectId: 'capped', maxBudgetUsd: 0.005, timeoutSeconds: 1 })).toMatchObject({ maxBudgetUsd: 0.005, timeoutSeconds: 1 });
    expect(prepare({ projectId: 'fargate-only', runtime: 'fargate' })).toMatchObject({ maxBudgetUsd: 0.01, timeoutSeconds: 7_200 });
    expect(prepareSession({ input: { prompt: 'p', projectId: 'free' }, executionArn: 'arn', executionName: 'e' }).session.maxBudgetUsd).toBeUndefined();
  });

  it('runs a session that names no budget under the cap: the CLI stops it there', async () => {
    // Prepare: every model call asks for a tool and costs more than the cap
    env.anthropic.respondByDefault({ kind: 'tool_use', usage: { input_tokens: 20_000, output_tokens: 2_000 } });
    // Act
    const { session } = await env.runtime.run({ prompt: 'expensive', projectId: 'any' });
    // Assess
    expect(session).toMatchObject({ status: 'FAILED', error: 'ClaudeMaxBudget' });
    expect(session!.totalCostUsd).toBeGreaterThan(0.01);
  });

  it('runs a session that names no timeout under its project\'s cap: stopped at 2 s, not the runtime\'s 840', async () => {
    // Prepare: the model never answers
    env.anthropic.respondByDefault({ kind: 'stall' });
    // Act
    const started = Date.now();
    const { session } = await env.runtime.run({ prompt: 'wait', projectId: 'capped' });
    // Assess
    expect(session).toMatchObject({ status: 'TIMED_OUT' });
    expect(Date.now() - started).toBeLessThan(30_000);
  });
});

describe('a project\'s own concurrency limit, with no deployment-wide one', () => {
  it('holds on its own: while one session runs, the start check refuses a second and the workflow closes it ProjectAtCapacity', async () => {
    // Prepare: this deployment sets no maxConcurrentSessions; the project sets 1 (`project limit own-one 1`)
    expect(env.runtime.policy.maxConcurrentSessions).toBeUndefined();
    await env.runtime.slots.setLimit('own-one', 1);
    env.anthropic.respondByDefault({ kind: 'stall' });
    const first = env.runtime.startExecution({ prompt: 'p', projectId: 'own-one', timeoutSeconds: 5 });
    let ended = false;
    void first.outcome.then(() => (ended = true));
    // Running: its slot taken (with this change), or, without it, its model call made.
    for (let i = 0; i < 2400 && !ended && env.anthropic.messageRequests.length === 0 && (await env.runtime.slots.get('own-one')).running.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
    // Act
    const checked = assertCanStart({ projectId: 'own-one' }, { ...env.runtime, policy: env.runtime.policy }).then(() => undefined, (err: unknown) => err);
    const second = await env.runtime.run({ prompt: 'p', projectId: 'own-one' });
    await first.outcome;
    // Assess
    expect(await checked).toBeInstanceOf(ProjectAtCapacityError);
    expect(second.session).toMatchObject({ status: 'FAILED', error: 'ProjectAtCapacity' });
    expect(await env.runtime.repository.get(first.name)).toMatchObject({ status: 'TIMED_OUT' });
    expect((await env.runtime.slots.get('own-one')).running).toEqual([]);
    env.anthropic.respondByDefault({ kind: 'text' });
    expect((await env.runtime.run({ prompt: 'p', projectId: 'free-of-limits' })).session).toMatchObject({ status: 'COMPLETED' });
  });
});

describe('per-project caps, at the API', () => {
  it('answers 400 naming each field past its project\'s caps, and starts nothing', async () => {
    // Prepare
    const handler = createApiHandler({ repository: env.runtime.repository, milestones: env.runtime.milestones, starter: env.runtime, policy: env.runtime.policy });
    const server = await startLocalApiServer(handler, 0);
    const post = async (projectId: string, body: Record<string, unknown>) => {
      const res = await fetch(`${server.url}/projects/${projectId}/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'p', ...body }) });
      return { status: res.status, body: await res.json() as Record<string, any> };
    };
    try {
      // Act
      const over = await post('capped', { maxBudgetUsd: 1, timeoutSeconds: 60 });
      const runtime = await post('fargate-only', { runtime: 'lambda' });
      const within = await post('capped', { maxBudgetUsd: 0.01, timeoutSeconds: 2, sessionId: uuidv4() });
      // Assess
      expect(over).toEqual({ status: 400, body: { message: 'Invalid request', errors: [
        { field: 'maxBudgetUsd', message: `must be at most 0.01 for project capped ${CAP}` },
        { field: 'timeoutSeconds', message: `must be at most 2 for project capped ${CAP}` },
      ] } });
      expect(runtime).toEqual({ status: 400, body: { message: 'Invalid request', errors: [{ field: 'runtime', message: `must be fargate for project fargate-only ${CAP}, not lambda` }] } });
      expect(within.status).toBe(202);
      expect((await env.runtime.repository.listByProject('fargate-only')).items).toEqual([]);
      expect(env.runtime.inputOf(within.body.executionArn)).toBeDefined();
    } finally {
      await server.close();
    }
  });
});

describe('per-project caps, as settings', () => {
  it('reads PROJECT_LIMITS as the environment gives it, naming the variable, the project and the field of a bad one', () => {
    // A round trip: what the stack puts in CreateSession's and the API's environment reads back the same.
    expect(sessionPolicyFromEnv(sessionPolicyEnvironment({ projectLimits: LIMITS })).projectLimits).toEqual(LIMITS);
    expect(sessionPolicyFromEnv({ CLAUDE_SESSIONS_PROJECT_LIMITS: '{"demo":{"runtimes":["fargate"]}}' }, 'CLAUDE_SESSIONS_').projectLimits).toEqual({ demo: { runtimes: ['fargate'] } });
    expect(() => sessionPolicyFromEnv({ PROJECT_LIMITS: '{"demo":{"maxBudgetUsd":-1}}' })).toThrow('PROJECT_LIMITS: project demo: maxBudgetUsd must be above 0');
    expect(() => sessionPolicyFromEnv({ PROJECT_LIMITS: '{"demo":{"runtimes":["ec2"]}}' })).toThrow(/^PROJECT_LIMITS: project demo: runtimes\.0 must name runtimes of lambda, fargate$/);
    expect(() => sessionPolicyFromEnv({ PROJECT_LIMITS: '{"demo":{"budget":5}}' })).toThrow('PROJECT_LIMITS: project demo: budget is not a cap (maxBudgetUsd, timeoutSeconds, runtimes, permissionRules)');
    expect(() => sessionPolicyFromEnv({ PROJECT_LIMITS: '{"no project!":{}}' })).toThrow(/^PROJECT_LIMITS: project "no project!" is not a project id/);
    expect(() => sessionPolicyFromEnv({ CLAUDE_SESSIONS_PROJECT_LIMITS: 'demo=5' }, 'CLAUDE_SESSIONS_')).toThrow(/^CLAUDE_SESSIONS_PROJECT_LIMITS must be a JSON object of project id/);
  });

  describe('the stack', () => {
    const synth = (projectLimits: unknown, schedules: unknown[] = []) => new ClaudeSessionsStack(
      new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', { projectLimits: projectLimits as ProjectLimits, schedules: parseSchedules(schedules) },
    );
    const nightly = { name: 'nightly', expression: 'cron(0 3 * * ? *)', projectId: 'capped', prompt: 'Tidy up' };

    it('gives CreateSession and the API the caps as PROJECT_LIMITS', () => {
      // Act
      const template = Template.fromStack(synth(LIMITS, [{ ...nightly, timeoutSeconds: 2 }])).toJSON() as { Resources: Record<string, { Type: string; Properties: any }> };
      // Assess
      const environments = Object.entries(template.Resources)
        .filter(([id, r]) => r.Type === 'AWS::Lambda::Function' && /^(SessionCreator|Http)/.test(id))
        .map(([, r]) => r.Properties.Environment.Variables as Record<string, string>);
      expect(environments).toHaveLength(2);
      for (const variables of environments) expect(JSON.parse(variables.PROJECT_LIMITS!)).toEqual(LIMITS);
    });

    it('fails the synth naming the key and the project of a bad cap, or the schedule that asks past one', () => {
      expect(() => synth({ demo: { timeoutSeconds: 0 } })).toThrow(/^projectLimits: project demo: timeoutSeconds /);
      expect(() => synth({ ...LIMITS }, [{ ...nightly, maxBudgetUsd: 5 }])).toThrow(`schedule nightly: Invalid input: maxBudgetUsd must be at most 0.01 for project capped ${CAP}`);
      expect(() => synth({ ...LIMITS }, [{ ...nightly, projectId: 'fargate-only' }])).toThrow(/^schedule nightly: Invalid input: runtime must be fargate/);
      expect(() => synth({ ...LIMITS }, [{ ...nightly, projectId: 'fargate-only', runtime: 'fargate' }])).not.toThrow();
    });
  });
});

describe('a project\'s permission rules: the deployment\'s, narrowed, never widened', () => {
  // The deployment allows two commands unasked; `narrow` only one of them, `wide` says nothing.
  const DEPLOYMENT_RULES = ['Bash(node:*)', 'Bash(env)'];
  let shell: TestRuntime;
  useTestRuntime((started) => (shell = started), { permissionRules: DEPLOYMENT_RULES }, {
    policy: { allowedTools: [...DEFAULT_TOOLS, 'Bash'], shellOnLambda: true, projectLimits: { narrow: { permissionRules: ['Bash(env)'] } } },
  });
  const bash = (command: string) => ({ kind: 'tool_use' as const, name: 'Bash', input: { command } });

  /** What the session's Bash calls answered, as the model saw them. */
  async function toolResults(projectId: string): Promise<string> {
    shell.anthropic.respondWith(bash('node -e "console.log(\'node-ran-\' + 6 * 7)"'), bash('env'), { kind: 'text', text: 'done' });
    const before = shell.anthropic.messageRequests.length;
    const { session } = await shell.runtime.run({ prompt: 'Run the commands', projectId, tools: [...DEFAULT_TOOLS, 'Bash'] });
    expect(session).toMatchObject({ status: 'COMPLETED', result: 'done' });
    return shell.anthropic.messageRequests.slice(before + 1).map((r) => JSON.stringify((r.body.messages as { content: unknown }[]).at(-1)!.content)).join('\n');
  }

  it('passes a project\'s own subset to the CLI, and the deployment\'s rules to a project without one', async () => {
    // Act
    const narrow = await toolResults('narrow');
    const wide = await toolResults('wide');
    // Assess: env is allowed to both; node only where the project kept the deployment's rule
    expect(narrow).toContain('CLAUDE_CONFIG_DIR=');
    expect(narrow).not.toContain('node-ran-42');
    expect(wide).toContain('node-ran-42');
    expect(wide).toContain('CLAUDE_CONFIG_DIR=');
  });

  it('refuses a project rule the deployment does not allow, naming the project and the rule: at synth and when the engine starts', async () => {
    const synth = (permissionRules: string[] | undefined) => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', {
      permissionRules, projectLimits: { demo: { permissionRules: ['Bash(npm test:*)', 'Bash(rm:*)'] } },
    });
    expect(() => synth(['Bash(npm test:*)'])).toThrow(/^projectLimits: project demo: permissionRules names "Bash\(rm:\*\)", which the deployment's permissionRules do not allow \(Bash\(npm test:\*\)\): a project may narrow them, never widen them$/);
    expect(() => synth(undefined)).toThrow(/project demo: permissionRules names "Bash\(npm test:\*\)".*allow \(none\)/);
    expect(() => synth(['Bash(npm test:*)', 'Bash(rm:*)'])).not.toThrow();
    await expect(LocalRuntime.boot({ runner: { permissionRules: ['Bash(env)'] }, policy: { projectLimits: { demo: { permissionRules: ['Bash'] } } } }))
      .rejects.toThrow(/^CLAUDE_SESSIONS_PROJECT_LIMITS: project demo: permissionRules names "Bash"/);
    expect(() => sessionPolicyFromEnv({ PROJECT_LIMITS: '{"demo":{"permissionRules":"Bash"}}' })).toThrow(/^PROJECT_LIMITS: project demo: permissionRules must be an array of permission rules/);
    // …and the runner, whose rules are what the deployment approved, refuses a session state that would widen them
    const session = { sessionId: uuidv4(), mode: 'fresh' as const, timeoutSeconds: 60, permissionRules: ['Bash(rm:*)'] };
    expect(() => claudeProcessOptions(session, { endpoint: shell.anthropic.endpoint, permissionRules: ['Bash(env)'] }, session.sessionId, 'fresh'))
      .toThrow(/project permission rules name Bash\(rm:\*\), which this runner's permissionRules do not allow/);
  });
});

describe('per-project caps, in the local engine (CLAUDE_SESSIONS_PROJECT_LIMITS)', () => {
  let serve: ChildProcess | undefined;
  afterAll(async () => {
    if (serve && serve.exitCode === null) {
      serve.kill('SIGINT');
      await new Promise((r) => serve!.once('exit', r));
    }
  });

  it('refuses a run past its project\'s cap before any execution, exit 2 naming the field, with serve\'s own --max-concurrent-sessions', async () => {
    // Prepare: serve reads the caps from its environment; its flag sets one field of the policy, not all
    const home = await mkdtemp(join(tmpdir(), 'claude-sessions-caps-'));
    const env = cliEnvironment(home, { CLAUDE_SESSIONS_PROJECT_LIMITS: JSON.stringify({ demo: { timeoutSeconds: 60 } }) });
    serve = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--max-concurrent-sessions', '2'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      serve!.stderr!.on('data', (d) => (stderr += d) && /listening on/.test(stderr) && resolve());
      serve!.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
    });
    // Act: a run in the same state folder is a client of that serve
    const refused = await runCli(['run', 'Summarise the README', '--project', 'demo', '--timeout-seconds', '120'], env);
    const listed = await runCli(['list', '--project', 'demo', '--json'], env);
    // Assess
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`--timeout-seconds: must be at most 60 for project demo ${CAP}`);
    expect(refused.stderr).not.toContain('→ CreateSession');
    expect(JSON.parse(listed.stdout)).toEqual([]);
  });
});
