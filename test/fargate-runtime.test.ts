import { Match } from 'aws-cdk-lib/assertions';
import { RUNNER_CONTRACT } from '../lib/sessions/session-item.js';
import { describe, expect, it } from 'vitest';
import { synthesizedTemplate } from './support/synthesized.js';
import { v4 as uuidv4 } from 'uuid';
import { fromTemplate } from '../lib/local/workflow-definition.js';
import { parseExecutionInput } from '../lib/sessions/execution-input.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
useTestRuntime((started) => (env = started), {}, { fargateHeartbeatSeconds: 3 });

describe('RunTask refused before a task starts', () => {
  let refused: TestRuntime;
  useTestRuntime((started) => (refused = started), {}, { fargateHeartbeatSeconds: 3, fargateRefusals: ['ECS.AmazonECSException', 'AmazonECS.Unknown'] });

  it('is asked again (capacity unavailable, a failures list): the session runs once and completes', async () => {
    refused.anthropic.respondWith({ kind: 'text', text: 'ran after the refusals', usage: { input_tokens: 5, output_tokens: 1 } });
    const { outcome, session } = await refused.runtime.run({ prompt: 'refactor', projectId: 'fg-capacity', runtime: 'fargate' });
    expect(outcome.status).toBe('SUCCEEDED');
    expect(session).toMatchObject({ status: 'COMPLETED', result: 'ran after the refusals', attempts: 1 });
    expect(refused.anthropic.messageRequests).toHaveLength(1);
  });
});

describe('the fargate runtime, as a separate task process reporting on its task token', () => {
  it('completes with the exact usage, through heartbeats and SendTaskSuccess', async () => {
    env.anthropic.respondWith({ kind: 'text', text: 'long work done', usage: { input_tokens: 4321, output_tokens: 123, cache_creation_input_tokens: 50 } });
    const sessionId = uuidv4();
    const { outcome, session } = await env.runtime.run({ prompt: 'refactor', projectId: 'fg-ok', runtime: 'fargate', sessionId });
    expect(outcome.status).toBe('SUCCEEDED');
    expect(session).toMatchObject({
      runtime: 'fargate', status: 'COMPLETED', claudeSessionId: sessionId, result: 'long work done',
      usage: { inputTokens: 4321, outputTokens: 123, cacheReadInputTokens: 0, cacheCreationInputTokens: 50 },
    });
    expect(env.anthropic.messageRequests.map((r) => r.sessionId)).toEqual([sessionId]);
  });

  it('runs milestone tasks too: a lambda task, then a fargate task resuming the same conversation from S3', async () => {
    env.anthropic.respondWith(
      { kind: 'text', text: 'planned on lambda', usage: { input_tokens: 10, output_tokens: 1 } },
      { kind: 'text', text: 'continued on fargate', usage: { input_tokens: 20, output_tokens: 2 } },
    );
    const milestone = await env.runtime.milestones.open('fg-ms');
    const first = await env.runtime.run({ prompt: 'plan (ON-LAMBDA)', projectId: 'fg-ms', milestoneId: milestone.milestoneId });
    const second = await env.runtime.run({ prompt: 'continue', projectId: 'fg-ms', milestoneId: milestone.milestoneId, runtime: 'fargate' });
    expect(first.session).toMatchObject({ status: 'COMPLETED', runtime: 'lambda' });
    expect(second.session).toMatchObject({ status: 'COMPLETED', runtime: 'fargate', claudeSessionId: milestone.milestoneId, usage: { inputTokens: 20, outputTokens: 2 } });
    expect(JSON.stringify(env.anthropic.messageRequests[1]!.body.messages)).toContain('planned on lambda');
    expect((await env.runtime.milestones.get(milestone.milestoneId))!.lastSessionId).toBe(second.session!.sessionId);
  });

  it('closes TIMED_OUT within seconds at timeoutSeconds, keeping the tokens reported before the stall', async () => {
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 777, output_tokens: 1 } });
    const started = Date.now();
    const { session } = await env.runtime.run({ prompt: 'stalls', projectId: 'fg-timeout', runtime: 'fargate', timeoutSeconds: 5 });
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(session).toMatchObject({
      status: 'TIMED_OUT', error: 'ClaudeTimeoutError', cause: expect.stringMatching(/past its 5 s limit/), usage: { inputTokens: 777 },
    });
  });

  /** Starts a Fargate session whose task is killed (and the CLI it started) once Claude is waiting on the API, as a lost Fargate task. */
  async function killedTask(projectId: string) {
    env.anthropic.respondByDefault({ kind: 'stall' });
    const sessionId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'doomed', projectId, runtime: 'fargate', sessionId }, sessionId);
    for (let i = 0; i < 200 && env.anthropic.messageRequests.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const task = env.runtime.fargateTasks.get(sessionId);
    expect(task?.pid).toBeDefined();
    process.kill(-task!.pid!, 'SIGKILL');
    return { sessionId, outcome: await execution.outcome };
  }

  it('fails the state with ECS.TaskStopped when ECS says the task stopped, and closes the session FAILED naming why', async () => {
    const { sessionId, outcome } = await killedTask('fg-stopped');
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'ECS.TaskStopped' });
    expect(await env.runtime.repository.get(sessionId)).toMatchObject({
      status: 'FAILED', error: 'ECS.TaskStopped', cause: expect.stringMatching(/^the Fargate task stopped before it reported: EssentialContainerExited: .*runner did not run \(killed by SIGKILL\)/),
    });
    expect(await env.runtime.repository.listRunning('fg-stopped')).toEqual([]);
  });

  it('fails the state with States.HeartbeatTimeout when the task dies and its stop event is lost, and closes the session FAILED', async () => {
    env.runtime.dropTaskEvents = true;
    try {
      const { sessionId, outcome } = await killedTask('fg-killed');
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'States.HeartbeatTimeout' });
      expect(await env.runtime.repository.get(sessionId)).toMatchObject({ status: 'FAILED', error: 'States.HeartbeatTimeout' });
      expect(await env.runtime.repository.listRunning('fg-killed')).toEqual([]);
    } finally {
      env.runtime.dropTaskEvents = false;
    }
  });

  it('runs on after an abort, as ECS does with a task token, then stops Claude itself and records what it spent', async () => {
    // Prepare: the task's Claude is streaming a reply (1,187 input tokens reported) when the execution is aborted
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 1187, output_tokens: 3 } });
    const sessionId = uuidv4();
    const execution = env.runtime.startExecution({ prompt: 'long job', projectId: 'fg-abort', runtime: 'fargate', sessionId }, sessionId);
    for (let i = 0; i < 400 && env.anthropic.openStreams === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const task = env.runtime.fargateTasks.get(sessionId);
    expect(task?.pid).toBeDefined();
    // Act
    execution.abort();
    expect((await execution.outcome).status).toBe('ABORTED');
    // Assess: Step Functions stops no task it waits on with a token; this one is still running…
    expect(task!.exitCode).toBeNull();
    expect(env.runtime.fargateTasks.get(sessionId)).toBe(task);
    // …until its watch sees the execution ended: it stops Claude, records the spend and exits
    const exited = await new Promise<number | null>((resolve) => task!.once('exit', (code) => resolve(code)));
    expect(exited).toBe(0);
    expect(env.anthropic.openStreams).toBe(0);
    const session = await env.runtime.repository.get(sessionId);
    const served = env.anthropic.messageRequests[0]!.served!;
    expect(session).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted', usage: { inputTokens: 1187, outputTokens: served.output_tokens }, numTurns: 1 });
  });

  it('runs a prompt far over the 8 KiB of ECS overrides, quotes and newlines included: the task reads it from the execution', async () => {
    // Prepare: 60,000 characters that JSON escapes (each quote and newline doubles), with a 2,048-character token
    const prompt = `Refactor "this"\n${'line with "quotes" and \\ back\\slashes\n'.repeat(1_500)}`;
    env.anthropic.respondWith({ kind: 'text', text: 'read it all', usage: { input_tokens: 9, output_tokens: 1 } });
    // Act
    const { outcome, session } = await env.runtime.run({ prompt, projectId: 'fg-large', runtime: 'fargate' });
    // Assess: the prompt reached the API byte for byte, and the session kept only its hash and length
    expect(outcome.status).toBe('SUCCEEDED');
    expect(prompt.length).toBeGreaterThan(50_000);
    expect(session).toMatchObject({ status: 'COMPLETED', runtime: 'fargate' });
    expect(JSON.stringify(env.anthropic.messageRequests[0]!.body.messages)).toContain(JSON.stringify(prompt).slice(1, -1));
  });

  it('refuses a prompt over 192 KiB as JSON in UTF-8 on any runtime, naming the field; the timeout limit stays per runtime', () => {
    // 70,000 CJK characters: under the character limit, 210 KB of UTF-8
    expect(() => parseExecutionInput({ prompt: '漢'.repeat(70_000), projectId: 'p', runtime: 'lambda' })).toThrow(/prompt must be at most 196608 bytes/);
    expect(() => parseExecutionInput({ prompt: '漢'.repeat(60_000), projectId: 'p', runtime: 'fargate' })).not.toThrow();
    expect(() => parseExecutionInput({ prompt: 'x', projectId: 'p', runtime: 'fargate', timeoutSeconds: 28_800 })).not.toThrow();
    expect(() => parseExecutionInput({ prompt: 'x', projectId: 'p', runtime: 'fargate', timeoutSeconds: 28_801 })).toThrow(/timeoutSeconds must be at most 28800/);
  });
});

describe('the fargate runtime on AWS', () => {
  const template = synthesizedTemplate();
  const states = fromTemplate(template.toJSON() as never, {}).asl.States;

  it('chooses the runtime after CreateSession, and both runners lead to the same outcome states', () => {
    const runtime = { Variable: '$.session.runtime', StringEquals: 'fargate', Next: 'RunClaudeOnFargate' };
    expect(states.CreateSession!.Next).toBe('ChooseFirstStep');
    expect(states.ChooseFirstStep).toMatchObject({
      Choices: [
        // A milestone task takes its lease first, a limited session its slot, then each runs.
        { Variable: '$.session.milestoneId', IsPresent: true, Next: 'AcquireMilestone' },
        { Variable: '$.session.concurrencyLimit', IsPresent: true, Next: 'AcquireSlot' },
        runtime,
      ],
      Default: 'RunClaude',
    });
    expect(states.AcquireMilestone!.Next).toBe('ChooseStepAfterLease');
    expect(states.ChooseStepAfterLease).toMatchObject({
      Choices: [{ Variable: '$.session.concurrencyLimit', IsPresent: true, Next: 'AcquireSlot' }, runtime],
      Default: 'RunClaude',
    });
    expect(states.AcquireSlot!.Next).toBe('ChooseRuntime');
    expect(states.ChooseRuntime).toMatchObject({ Choices: [runtime], Default: 'RunClaude' });
    expect(states.RunClaude!.Next).toBe('ClaudeSucceeded');
    expect(states.RunClaudeOnFargate!.Next).toBe('ClaudeSucceeded');
  });

  it('runs the task with a task token, heartbeats, the input\'s timeout and the input as overrides', () => {
    expect(states.RunClaudeOnFargate).toMatchObject({
      Resource: 'arn:aws:states:::ecs:runTask.waitForTaskToken',
      HeartbeatSeconds: 300,
      TimeoutSecondsPath: '$.session.platformTimeoutSeconds',
      ResultPath: '$.run',
      Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.failure', Next: 'CloseFailed' }],
      Parameters: {
        LaunchType: 'FARGATE',
        Overrides: {
          ContainerOverrides: [
            {
              Name: 'Runner',
              Environment: [
                { Name: 'SESSION_JSON', 'Value.$': 'States.JsonToString($.session)' },
                { Name: 'MILESTONE_JSON', 'Value.$': 'States.JsonToString($.milestone)' },
                { Name: 'RETRY_JSON', 'Value.$': 'States.JsonToString($.retry)' },
                { Name: 'TASK_TOKEN', 'Value.$': '$$.Task.Token' },
                // Which values the task's runner returns: the family's newest image also serves executions started before a deploy.
                { Name: 'RUNNER_CONTRACT', Value: String(RUNNER_CONTRACT) },
              ],
            },
          ],
        },
      },
    });
  });

  it('runs the runner image with node as entry point, and its task role may only answer task tokens, read its execution and record a stopped run', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ EntryPoint: ['node'], Command: ['/var/task/task.mjs'] })],
    });
    const policies = Object.values(template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^FargateTaskTaskRole') }] },
    }));
    const actions = policies.flatMap((p: any) => p.Properties.PolicyDocument.Statement).flatMap((s: any) => [s.Action].flat());
    // The attempt claim and the spend of a run its execution ended under (execution-watch.ts) on its SESSION# item, that
    // spend's share of the TOTALS# items, GetItem of its session when that record is refused: asserted in security.cdk.test.ts.
    expect(actions.filter((a: string) => a.startsWith('dynamodb:'))).toEqual(['dynamodb:UpdateItem', 'dynamodb:GetItem', 'dynamodb:UpdateItem']);
    expect(actions.filter((a: string) => a.startsWith('states:')).sort()).toEqual([
      'states:DescribeExecution', 'states:SendTaskFailure', 'states:SendTaskHeartbeat', 'states:SendTaskSuccess',
    ]);
  });
});
