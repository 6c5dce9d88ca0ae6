import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import type { FixedEndpointRunnerConfig } from '../lib/claude/run-session-task.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { standbyForSession, type StandbyClaude } from '../lib/claude/claude-process.js';

let env: TestRuntime;

useTestRuntime((started) => (env = started));

/** A fresh session's CLI, booted ahead as the engine boots one for its next `run`. */
function standbyFor(input: Record<string, unknown>, config: FixedEndpointRunnerConfig = env.runnerConfig, maxAgeMs?: number): Promise<StandbyClaude> {
  const { session: start } = prepareSessionStart(input, { executionArn: '', executionName: String(input.sessionId) });
  return standbyForSession(start, config, maxAgeMs);
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The CLI has booted once it has written its config in its HOME; after that it waits on stdin. */
async function booted(standby: StandbyClaude): Promise<void> {
  const config = join(standby.home, '.claude', '.claude.json');
  for (let i = 0; i < 200 && !existsSync(config); i++) await settle(25);
  expect(existsSync(config), `${config} was never written`).toBe(true);
}

describe('a Claude CLI booted ahead of its session (the engine\'s next `run`)', () => {
  // CLI fact: with --input-format stream-json the CLI boots and sends no Messages request before its user message arrives.
  it('sends no Messages request before its prompt, then runs the session it was started for', async () => {
    const sessionId = uuidv4();
    const input = { prompt: 'Summarise the README', projectId: 'p-ahead', sessionId };
    const standby = await standbyFor(input);
    await booted(standby);
    expect(env.anthropic.messageRequests).toEqual([]);

    const outcome = await env.runtime.startExecution(input, sessionId, { standby }).outcome;

    expect(outcome.status).toBe('SUCCEEDED');
    expect(standby.claimed).toBe(true);
    expect(env.anthropic.messageRequests.map((r) => r.sessionId)).toEqual([sessionId]);
    expect(await env.runtime.repository.get(sessionId)).toMatchObject({ status: 'COMPLETED', claudeSessionId: sessionId });
    expect(existsSync(standby.home)).toBe(false); // its HOME goes, as a run's own does
  });

  it('is stopped unused when the runner would start the CLI differently, and the session still runs', async () => {
    const sessionId = uuidv4();
    const standby = await standbyFor({ prompt: 'hi', projectId: 'p-ahead', sessionId }, { ...env.runnerConfig, maxRetries: 5 });
    const outcome = await env.runtime.startExecution({ prompt: 'hi', projectId: 'p-ahead', sessionId }, sessionId, { standby }).outcome;

    expect(outcome.status).toBe('SUCCEEDED');
    expect(standby.claimed).toBe(false);
    expect(standby.child.signalCode).toBe('SIGKILL');
    expect(existsSync(standby.home)).toBe(false);
    expect(env.anthropic.messageRequests).toHaveLength(1);
  });

  it('is stopped, having spent nothing, when the execution ends before its runner (bad input)', async () => {
    const sessionId = uuidv4();
    const standby = await standbyFor({ prompt: 'hi', projectId: 'p-ahead', sessionId });
    await booted(standby);
    const outcome = await env.runtime.startExecution({ prompt: 'hi', projectId: 'p ahead', sessionId }, sessionId, { standby }).outcome;

    expect(outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInputError' });
    expect(standby.claimed).toBe(false);
    expect(standby.child.exitCode !== null || standby.child.signalCode !== null).toBe(true);
    expect(existsSync(standby.home)).toBe(false);
    expect(env.anthropic.messageRequests).toEqual([]);
    expect(await env.runtime.repository.get(sessionId)).toBeUndefined();
  });

  // CLI fact: with -p a text prompt on stdin is given up after 3 s ("no stdin data received in 3s"); stream-json input waits.
  it('waits for its prompt past the 3 s the CLI gives a text prompt on stdin, and answers it', async () => {
    const sessionId = uuidv4();
    const input = { prompt: 'hi', projectId: 'p-ahead', sessionId };
    const standby = await standbyFor(input);
    await settle(4_000); // the wait is what is under test: a text prompt would be given up after 3 s
    const outcome = await env.runtime.startExecution(input, sessionId, { standby }).outcome;

    expect(outcome.status).toBe('SUCCEEDED');
    expect(standby.claimed).toBe(true);
    expect(await env.runtime.repository.get(sessionId)).toMatchObject({ status: 'COMPLETED', numTurns: 1 });
  });

  it('is not used once older than its age limit: the runner starts its own', async () => {
    const sessionId = uuidv4();
    const input = { prompt: 'hi', projectId: 'p-ahead', sessionId };
    const standby = await standbyFor(input, env.runnerConfig, 500);
    await settle(700); // its age is what is under test: past the limit the runner must not use it
    expect(standby.usable).toBe(false);
    const outcome = await env.runtime.startExecution(input, sessionId, { standby }).outcome;

    expect(outcome.status).toBe('SUCCEEDED');
    expect(standby.claimed).toBe(false);
    expect(env.anthropic.messageRequests.map((r) => r.sessionId)).toEqual([sessionId]);
  });

  it('is never started for a milestone task, whose transcript must be in place first', async () => {
    const milestoneId = uuidv4();
    await expect(standbyFor({ prompt: 'hi', projectId: 'p-ahead', sessionId: uuidv4(), milestoneId })).rejects.toThrow(/fresh/);
  });
});
