import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LONGEST_TIMER_SECONDS, withStepFunctionsTaskTimeouts } from '../lib/local/asl-patches.js';
import { loadWorkflowDefinition } from '../lib/local/workflow-definition.js';

// aws-local-stepfunctions fails a Task with no TimeoutSeconds after 60 s; Step Functions waits.
const EMULATOR_DEFAULT_TASK_SECONDS = 60;
const LAMBDA_RUNNER_LIMIT_SECONDS = 15 * 60;

describe('the definition the local runtime runs', () => {
  it('lets a Task with no timeout of its own run as long as Step Functions would, not the emulator\'s 60 s', async () => {
    const definition = await loadWorkflowDefinition(join(process.cwd(), '.claude-sessions', 'cache'));
    const tasks = Object.entries(definition.asl.States).filter(([, state]) => state.Type === 'Task');
    const unbounded = tasks.filter(([, state]) => state.TimeoutSeconds === undefined).map(([name]) => name);
    expect(unbounded).toContain('RunClaude');

    const patched = withStepFunctionsTaskTimeouts(definition.asl).States;
    for (const name of unbounded) {
      expect(patched[name]?.TimeoutSeconds, name).toBe(LONGEST_TIMER_SECONDS);
      expect(LONGEST_TIMER_SECONDS).toBeGreaterThan(LAMBDA_RUNNER_LIMIT_SECONDS);
      expect(LONGEST_TIMER_SECONDS).not.toBe(EMULATOR_DEFAULT_TASK_SECONDS);
    }
    // The Fargate task's limit is a path the emulator reads wrongly: LocalTaskCallbacks enforces it.
    expect(definition.asl.States.RunClaudeOnFargate?.TimeoutSecondsPath).toBe('$.session.platformTimeoutSeconds');
    expect(patched.RunClaudeOnFargate?.TimeoutSecondsPath).toBeUndefined();
    // A larger delay makes setTimeout fire at once.
    expect(LONGEST_TIMER_SECONDS * 1000).toBeLessThanOrEqual(2 ** 31 - 1);
  });
});
