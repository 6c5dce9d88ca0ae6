import { afterEach, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { readRunnerEnvironment, runnerEnvironment } from '../lib/claude/runner-environment.js';
import { runSessionTask } from '../lib/claude/run-session-task.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';

const saved = { ...process.env };
afterEach(() => {
  process.env = { ...saved };
});

describe('the runner contract', () => {
  it('reads back exactly what the deployment wrote, defaults filled', () => {
    // Prepare: the environment cdk/claude-runner.ts gives the function
    Object.assign(process.env, runnerEnvironment({ apiKeySecretArn: 'arn:secret', idleTimeoutMs: 60_000, tools: ['Read', 'Bash'], permissionMode: 'plan' }));
    // Act
    const read = readRunnerEnvironment();
    // Assess
    expect(read).toEqual({
      apiKeySecretArn: 'arn:secret', transcriptBucket: undefined, idleTimeoutMs: 60_000, maxApiRetries: 2, tools: ['Read', 'Bash'],
      permissionMode: 'plan', heartbeatIntervalSeconds: 30,
    });
  });

  it('refuses a bad setting at start, naming its variable', () => {
    process.env.HEARTBEAT_INTERVAL_SECONDS = '0';
    expect(() => readRunnerEnvironment()).toThrow(/HEARTBEAT_INTERVAL_SECONDS must be a number above 0/);
    process.env.HEARTBEAT_INTERVAL_SECONDS = '30';
    process.env.CLAUDE_PERMISSION_MODE = 'yolo';
    expect(() => readRunnerEnvironment()).toThrow(/CLAUDE_PERMISSION_MODE must be one of/);
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
