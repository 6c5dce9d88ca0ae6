import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AnthropicStandIn } from '../../lib/local/anthropic-stand-in.js';
import { LocalRuntime, type LocalRuntimeOptions } from '../../lib/local/local-runtime.js';
import type { FixedEndpointRunnerConfig, RunnerConfig } from '../../lib/claude/run-session-task.js';
import type { ModelProvider } from '../../lib/claude/claude-process.js';

export interface TestRuntime {
  runtime: LocalRuntime;
  anthropic: AnthropicStandIn;
  /** What the runtime's runner runs Claude with. */
  runnerConfig: FixedEndpointRunnerConfig;
  close(): Promise<void>;
}

export type TestRuntimeOptions = Pick<LocalRuntimeOptions, 'fargateHeartbeatSeconds' | 'policy' | 'fargateRefusals' | 'fargateSeparateUser' | 'runnerConcurrency'> & {
  /** Which of the stand-in's APIs the CLI talks to. @default 'anthropic' */
  provider?: ModelProvider;
  /** Bedrock: the small model (a subagent's `haiku`). @default the main model */
  smallFastModel?: string;
};

/** The real runtime on in-memory dynalite, the real CLI talking to a stand-in the test steers. */
export async function startTestRuntime(
  runner: Omit<RunnerConfig, 'endpoint'> = {},
  { provider = 'anthropic', smallFastModel, ...options }: TestRuntimeOptions = {},
): Promise<TestRuntime> {
  const anthropic = await new AnthropicStandIn().start();
  const runnerConfig: FixedEndpointRunnerConfig = {
    idleTimeoutMs: 30_000, maxRetries: 0, ...runner, endpoint: provider === 'bedrock' ? { ...anthropic.bedrockEndpoint(), smallFastModel } : anthropic.endpoint,
  };
  const runtime = await LocalRuntime.boot({ endpoint: runnerConfig.endpoint, runner: runnerConfig, ...options });
  return {
    runtime,
    anthropic,
    runnerConfig,
    async close() {
      await runtime.close();
      await anthropic.close();
    },
  };
}

/**
 * A stand-in for the external `claude` executable, for faults the real CLI cannot be
 * made to show (a wrong session id, output that is not JSON). Our code is never faked.
 */
export async function fakeClaude(script: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fake-claude-'));
  const path = join(dir, 'claude');
  await writeFile(path, `#!/usr/bin/env node\n${script}\n`);
  await chmod(path, 0o755);
  return path;
}

/**
 * One runtime for a test file: started before its tests, closed after them, the stand-in
 * reset before each. `use` receives it (assign it to the file's variable).
 */
export function useTestRuntime(
  use: (env: TestRuntime) => void,
  runner: Omit<RunnerConfig, 'endpoint'> = {},
  options: TestRuntimeOptions = {},
): void {
  let env: TestRuntime | undefined;
  beforeAll(async () => {
    env = await startTestRuntime(runner, options);
    use(env);
  });
  afterAll(async () => {
    await env?.close();
  });
  beforeEach(() => env?.anthropic.reset());
}
