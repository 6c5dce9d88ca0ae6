import { v4 as uuidv4 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { runSessionTask } from '../lib/claude/run-session-task.js';
import { prepareSession } from '../lib/sessions/session-creation.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

// Step Functions retries RunClaude on Lambda service errors that can arrive while the first
// invocation still runs (Lambda.ServiceException, ClientExecutionTimeoutException): the second
// invocation of the same attempt must not start a second Claude.

let env: TestRuntime;
useTestRuntime((started) => (env = started));

async function until(check: () => boolean, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; !check() && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
}

describe('one Claude per attempt', () => {
  it('runs Claude once for a RunClaude delivered twice, the second while the first runs', async () => {
    // Prepare: the first invocation's Claude is mid-reply
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 7, output_tokens: 1 } });
    const sessionId = uuidv4();
    const input = { prompt: 'a long job', projectId: 'once', sessionId };
    const execution = env.runtime.startExecution(input, sessionId);
    await until(() => env.anthropic.messageRequests.length === 1);
    // Act: the same attempt's input again, as the retried invoke delivers it, to the same runner code with its own invocation id
    const again = prepareSession({ input, executionArn: execution.executionArn, executionName: sessionId });
    const second = runSessionTask(again, {
      ...env.runnerConfig,
      watch: {
        status: async () => 'RUNNING',
        recordStopped: async () => undefined,
        claimAttempt: (start, attempt) => env.runtime.repository.claimAttempt(start, attempt, 'the-retried-invoke'),
      },
    });
    // Assess: refused before Claude started; the first still runs, and is the only one that reached the model
    await expect(second).rejects.toMatchObject({ name: 'AttemptAlreadyStartedError' });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(env.anthropic.messageRequests).toHaveLength(1);
    expect(await env.runtime.repository.get(sessionId)).toMatchObject({ status: 'RUNNING' });
    // ...and a later attempt of the same session may claim it (a transient failure's retry)
    expect(await env.runtime.repository.claimAttempt(again.session, 2, 'the-next-attempt')).toBe(true);
    execution.abort();
    await execution.outcome;
  });
});
