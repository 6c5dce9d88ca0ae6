import { afterEach, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { readRunnerEnvironment, runnerEnvironment } from '../lib/claude/runner-environment.js';
import { runSessionTask, type RunnerConfig } from '../lib/claude/run-session-task.js';
import { runnerConfigOf, splitRunnerConfig } from '../lib/claude/runner-config.js';
import { outcomeOf } from '../lib/claude/run-outcome.js';
import { recordOf } from '../lib/claude/task-record.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import {
  CLOSE_UPDATE, RECORD_ATTEMPT_UPDATE, RUNNER_CONTRACT, RUNNING_CONDITION, closeValues, forContract, type RunOutcome,
} from '../lib/sessions/session-item.js';
import { LEASE_CONDITION, RELEASE_AFTER_RUN_UPDATE, releaseAfterRunValues } from '../lib/sessions/milestone-item.js';
import { zeroUsage } from '../lib/sessions/usage.js';
import { invokeGrant } from '../lib/claude/model-provider.js';
import { App, Stack } from 'aws-cdk-lib';
import { ClaudeRunner } from '../cdk/claude-runner.js';
import { TranscriptBucket } from '../cdk/transcript-bucket.js';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

describe('the runner contract', () => {
  it('reads back exactly what the deployment wrote, defaults filled', () => {
    // Prepare: the environment cdk/claude-runner.ts gives the function
    Object.assign(process.env, runnerEnvironment({
      apiKeySecretArn: 'arn:secret', idleTimeoutMs: 60_000, tools: ['Read', 'Bash'], permissionMode: 'plan',
      gitTokenScopes: ['https://github.com/acme'], trustedSettingsRepositories: ['https://github.com/acme/tools.git'], maxCloneMiB: 512,
    }));
    // Act
    const read = readRunnerEnvironment();
    // Assess
    expect(read).toEqual({
      apiKeySecretArn: 'arn:secret', transcriptBucket: undefined, gitTokenSecretArn: undefined, idleTimeoutMs: 60_000, maxApiRetries: 2,
      tools: ['Read', 'Bash'], permissionMode: 'plan', heartbeatIntervalSeconds: 30, model: { provider: 'anthropic' }, modelRoleArn: undefined,
      gitTokenScopes: ['https://github.com/acme/'], trustedSettingsRepositories: ['https://github.com/acme/tools.git'],
      permissionRules: [], trustedInputsOnly: false, separateUser: false, sessionTable: undefined, maxCloneMiB: 512,
    });
  });

  it('carries a Bedrock deployment\'s models, per-project profiles and model role', () => {
    // Prepare
    const model = {
      provider: 'bedrock' as const, model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0', smallFastModel: 'us.anthropic.claude-haiku-4-5-20251001-v1:0',
      projectModels: { demo: 'arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123' },
    };
    Object.assign(process.env, runnerEnvironment({ model, modelRoleArn: 'arn:aws:iam::123456789012:role/model' }));
    // Act
    const read = readRunnerEnvironment();
    // Assess
    expect(read).toMatchObject({ model, modelRoleArn: 'arn:aws:iam::123456789012:role/model', apiKeySecretArn: undefined });
  });

  it('refuses a bad setting at start, naming its variable', () => {
    process.env.HEARTBEAT_INTERVAL_SECONDS = '0';
    expect(() => readRunnerEnvironment()).toThrow(/HEARTBEAT_INTERVAL_SECONDS must be a number above 0/);
    process.env.HEARTBEAT_INTERVAL_SECONDS = '30';
    process.env.CLAUDE_MAX_CLONE_MIB = '0.5';
    expect(() => readRunnerEnvironment()).toThrow(/CLAUDE_MAX_CLONE_MIB must be a whole number of MiB from 1, not 0.5/);
    process.env.CLAUDE_MAX_CLONE_MIB = '1024';
    process.env.CLAUDE_PERMISSION_MODE = 'yolo';
    expect(() => readRunnerEnvironment()).toThrow(/CLAUDE_PERMISSION_MODE must be one of/);
    process.env.CLAUDE_PERMISSION_MODE = 'plan';
    process.env.MODEL_PROVIDER = 'bedrock';
    expect(() => readRunnerEnvironment()).toThrow(/CLAUDE_MODEL is required with provider bedrock/);
    process.env.CLAUDE_MODEL = 'gpt-4';
    expect(() => readRunnerEnvironment()).toThrow(/CLAUDE_MODEL must be an Anthropic model id on Bedrock/);
    process.env.CLAUDE_MODEL = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';
    process.env.PROJECT_MODELS = '{"demo":"arn:aws:bedrock:us-east-1:123456789012:inference-profile/x"}';
    expect(() => readRunnerEnvironment()).toThrow(/PROJECT_MODELS\.demo must be an application inference profile ARN/);
  });
});

describe('one RunnerConfig for every runner', () => {
  it('gives a deployed runner the settings the local runtime hands its Fargate tasks, every one of them', () => {
    // Prepare: every setting away from its default, as the local runtime may be given them
    const given: RunnerConfig = {
      idleTimeoutMs: 45_000, maxRetries: 5, tools: ['Read', 'Bash'], permissionMode: 'plan', permissionRules: ['Bash(npm test:*)'],
      separateUser: true, gitTokenScopes: ['https://github.com/acme/'], trustedSettingsRepositories: ['https://github.com/acme/tools.git'], maxCloneMiB: 256,
      claudePath: '/opt/claude',
    };
    const { settings, platform } = splitRunnerConfig(given);
    // Act: through the environment, as a task reads it, and back into a config
    Object.assign(process.env, runnerEnvironment(settings));
    const deployed = runnerConfigOf(readRunnerEnvironment(), {});
    // Assess: each setting arrives; what is not a setting stays the platform's
    const { claudePath, ...settingsGiven } = given;
    expect(deployed).toEqual(settingsGiven);
    expect(platform).toEqual({ claudePath });
    expect(runnerConfigOf(settings, platform)).toEqual(given);
  });
});

describe('the outcome and the record of a run, from its facts alone', () => {
  const metered = { usage: { ...zeroUsage(), inputTokens: 42, outputTokens: 1 }, modelUsage: {}, totalCostUsd: 0.0002, messages: 0, unreadAnswers: 0 };
  const endpoint = { apiKey: 'sk-ant-unused' };

  it('closes a run its no-output watchdog killed TIMED_OUT, with what the gateway metered, and moves the totals once', () => {
    // Prepare
    const { session } = prepareSessionStart({ prompt: 'hi', projectId: 'p', sessionId: uuidv4() }, { executionArn: 'arn' });
    const run = { kind: 'timeout' as const, reason: 'no-output' as const, limitMs: 3_000, numTurns: 0, wallMs: 4_100, metered };
    // Act
    const outcome = outcomeOf(run, endpoint, { claudeSessionId: session.sessionId, endedAt: new Date('2026-12-05T00:00:00Z') });
    const result = recordOf(session, outcome, outcome, RUNNER_CONTRACT);
    // Assess
    expect(outcome).toMatchObject({
      status: 'TIMED_OUT', error: 'ClaudeTimeoutError', cause: 'the Claude CLI printed nothing for 3 s and was stopped',
      usage: { inputTokens: 42 }, totalCostUsd: 0.0002, durationMs: 4_100, provider: 'anthropic', attempts: 1,
    });
    expect(result.record).toMatchObject({ sessionId: session.sessionId, status: 'TIMED_OUT', totalCostUsd: 0.0002 });
    expect(Object.keys(result.values).sort()).toEqual(Object.keys(forContract(closeValues(outcome), RUNNER_CONTRACT, 'close')).sort());
    expect(result.totals?.update).toMatch(/ADD/);
    expect(result.next).toBeUndefined();
  });

  it('refuses a result for another conversation than the session\'s', () => {
    const result = { type: 'result', subtype: 'success', is_error: false, session_id: uuidv4(), num_turns: 1, duration_ms: 10, result: 'ok' };
    expect(() => outcomeOf({ kind: 'result', result, wallMs: 10, metered } as never, endpoint, { claudeSessionId: uuidv4(), endedAt: new Date() }))
      .toThrow(expect.objectContaining({ name: 'SessionIdMismatchError' }));
  });
});

describe('the runner and its prompt', () => {
  it('refuses a prompt that is not the one its session recorded, before Claude starts', async () => {
    // Prepare: a session whose hash is of another prompt; an endpoint nothing listens on
    const { session } = prepareSessionStart({ prompt: 'the real prompt', projectId: 'p', sessionId: uuidv4() }, { executionArn: 'arn' });
    // Act
    const run = runSessionTask(
      { session, prompt: 'a different prompt', milestone: { item: null }, retry: null },
      { endpoint: { apiKey: 'sk-ant-unused', baseUrl: 'http://127.0.0.1:9' } },
    );
    // Assess
    await expect(run).rejects.toMatchObject({ name: 'PromptMismatchError', message: expect.stringMatching(/SHA-256 differs\); Claude did not run/) });
  });
});

// An execution keeps the definition it started with while a deploy gives the runner function new
// code: each update expression must get exactly the values it uses, or DynamoDB refuses the write
// ("unused in expressions", or a missing value) and the close is lost.
describe('the write contract across a deploy', () => {
  // Contract 2's close, before the TTL attribute (contract 3, sessionRetentionDays).
  const CONTRACT_2 = {
    close: 'SET #status = :status, endedAt = :endedAt, claudeSessionId = :claudeSessionId, #usage = :usage, ' +
      'numTurns = :numTurns, totalCostUsd = :totalCostUsd, durationMs = :durationMs, modelUsage = :modelUsage, provider = :provider, model = :model, ' +
      'stopReason = :stopReason, #result = :result, #error = :error, #cause = :cause, attempts = :attempts, workspace = :workspace',
    attempt: RECORD_ATTEMPT_UPDATE, milestone: RELEASE_AFTER_RUN_UPDATE,
  };
  const CONTRACT_3 = { close: CLOSE_UPDATE, attempt: RECORD_ATTEMPT_UPDATE, milestone: RELEASE_AFTER_RUN_UPDATE };
  const CONDITIONS = { close: RUNNING_CONDITION, attempt: RUNNING_CONDITION, milestone: LEASE_CONDITION };
  const placeholders = (...expressions: string[]) => [...new Set(expressions.join(' ').match(/:[A-Za-z0-9]+/g))].sort();

  const outcome: RunOutcome = {
    status: 'COMPLETED', endedAt: '2026-11-28T00:00:00.000Z', claudeSessionId: uuidv4(), usage: zeroUsage(), modelUsage: {}, provider: 'bedrock',
    model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0', numTurns: 1, totalCostUsd: 0, durationMs: 1, stopReason: 'end_turn', result: 'ok',
    error: null, cause: null, attempts: 1, workspace: null,
  };
  const values = {
    close: closeValues(outcome),
    attempt: { ':running': 'RUNNING', ':usage': zeroUsage(), ':modelUsage': {}, ':numTurns': 0, ':totalCostUsd': 0, ':durationMs': 0, ':attempts': 1 },
    milestone: releaseAfterRunValues('arn:execution', uuidv4(), null, null, new Date()),
  };

  for (const update of ['close', 'attempt', 'milestone'] as const) {
    it(`${update}: contract 3 gets the values its expression uses, and an execution of contract 2 those of its own`, () => {
      expect(RUNNER_CONTRACT).toBe(3);
      expect(Object.keys(forContract(values[update], RUNNER_CONTRACT, update)).sort()).toEqual(placeholders(CONTRACT_3[update], CONDITIONS[update]));
      expect(Object.keys(forContract(values[update], 2, update)).sort()).toEqual(placeholders(CONTRACT_2[update], CONDITIONS[update]));
    });
  }

  it('the deployed definition passes its contract to the runner function and to the Fargate task', async () => {
    const { readFileSync } = await import('node:fs');
    const { inject } = await import('vitest');
    const template = JSON.parse(readFileSync(`${inject('cdkOut')}/ClaudeSessions.template.json`, 'utf8')) as { Resources: Record<string, { Type: string; Properties: { DefinitionString: unknown } }> };
    const machine = Object.values(template.Resources).find((r) => r.Type === 'AWS::StepFunctions::StateMachine')!;
    expect(JSON.stringify(machine.Properties.DefinitionString)).toContain(`\\"contract\\":${RUNNER_CONTRACT}`);
    expect(JSON.stringify(machine.Properties.DefinitionString)).toContain(`{\\"Name\\":\\"RUNNER_CONTRACT\\",\\"Value\\":\\"${RUNNER_CONTRACT}\\"}`);
  });
});

describe('what a deployment lets a session run', () => {
  it('carries permission rules as JSON (a rule may hold a comma or a space), and names a bad one', () => {
    Object.assign(process.env, runnerEnvironment({ permissionRules: ['Bash(npm test:*)', 'Bash(git diff --stat, HEAD:*)'] }));
    expect(readRunnerEnvironment().permissionRules).toEqual(['Bash(npm test:*)', 'Bash(git diff --stat, HEAD:*)']);
    expect(() => runnerEnvironment({ permissionRules: ['Bash(rm -rf /'] })).toThrow(/permissionRules must be permission rules such as Bash\(npm test:\*\)/);
    process.env.CLAUDE_PERMISSION_RULES = 'Bash(npm test:*)';
    expect(() => readRunnerEnvironment()).toThrow(/CLAUDE_PERMISSION_RULES must be a JSON array/);
  });

  it('takes bypassPermissions only from a deployment that runs trusted input only, at synth and in the runner', () => {
    expect(() => runnerEnvironment({ permissionMode: 'bypassPermissions' })).toThrow(/permissionMode bypassPermissions .*\(trustedInputsOnly\)/);
    expect(runnerEnvironment({ permissionMode: 'bypassPermissions', trustedInputsOnly: true })).toMatchObject({ CLAUDE_PERMISSION_MODE: 'bypassPermissions', TRUSTED_INPUTS_ONLY: 'true' });
    process.env.CLAUDE_PERMISSION_MODE = 'bypassPermissions';
    expect(() => readRunnerEnvironment()).toThrow(/CLAUDE_PERMISSION_MODE bypassPermissions .*\(trustedInputsOnly\)/);
    process.env.TRUSTED_INPUTS_ONLY = 'true';
    expect(readRunnerEnvironment()).toMatchObject({ permissionMode: 'bypassPermissions', trustedInputsOnly: true });
  });

  it('refuses a shell among the Lambda runner\'s own tools unless shellOnLambda says so', () => {
    const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ShellTools');
    const transcripts = new TranscriptBucket(stack, 'Transcripts');
    expect(() => new ClaudeRunner(stack, 'Runner', { transcripts, tools: ['Read', 'Bash'] })).toThrow(/tools names Bash for the Lambda runner/);
    expect(() => new ClaudeRunner(stack, 'Accepted', { transcripts, tools: ['Read', 'Bash'], shellOnLambda: true })).not.toThrow();
  });
});

describe('the Bedrock grant a model setting needs', () => {
  const at = { partition: 'aws', region: 'us-east-1', account: '123456789012' };
  it('grants a system profile in the deployment\'s region and its foundation model in any region, only through it (us., global., us-gov.)', () => {
    for (const [id, base] of [
      ['us.anthropic.claude-sonnet-4-5-20250929-v1:0', 'anthropic.claude-sonnet-4-5-20250929-v1:0'],
      ['global.anthropic.claude-sonnet-4-5-20250929-v1:0', 'anthropic.claude-sonnet-4-5-20250929-v1:0'],
      ['us-gov.anthropic.claude-3-5-sonnet-20240620-v1:0', 'anthropic.claude-3-5-sonnet-20240620-v1:0'],
    ] as const) {
      const profile = `arn:aws:bedrock:us-east-1:123456789012:inference-profile/${id}`;
      expect(invokeGrant([id], at)).toEqual({ resources: [profile], throughProfiles: { profileArns: [profile], resources: [`arn:aws:bedrock:*::foundation-model/${base}`] } });
    }
  });

  it('grants a base model in the region alone, and an application profile with whatever it routes to, only through it', () => {
    expect(invokeGrant(['anthropic.claude-3-haiku-20240307-v1:0'], at)).toEqual({
      resources: ['arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0'], throughProfiles: null,
    });
    const app = 'arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3';
    expect(invokeGrant([app], at)).toEqual({
      resources: [app],
      throughProfiles: { profileArns: [app], resources: ['arn:aws:bedrock:*::foundation-model/*', 'arn:aws:bedrock:*:*:inference-profile/*'] },
    });
  });
});
