import { describe, expect, inject, it } from 'vitest';
import {
  deployedContainer, deployedFunctions, invokeHandler, lambdaEnvironment, readAssembly, runCommand, taskRoot,
} from './support/deployed-code.js';
import { templateResolver } from './support/template-resolver.js';

// What ships is what is tested: the handlers `cdk synth` put in cdk.out, loaded the way
// their runtime loads them, with only what that runtime provides.
const assembly = readAssembly(inject('cdkOut'));
const functions = deployedFunctions(assembly);

describe('every function in the synthesized template', () => {
  it('finds the seven functions the stack deploys', () => {
    expect(functions.map((f) => f.logicalId).sort()).toEqual([
      expect.stringMatching(/^EventsServiceFunction/),
      expect.stringMatching(/^HttpServiceFunction/),
      expect.stringMatching(/^ReaperServiceFunction/),
      expect.stringMatching(/^RunnerFunction/),
      expect.stringMatching(/^SessionCreatorServiceFunction/),
      expect.stringMatching(/^SweeperServiceFunction/),
      expect.stringMatching(/^TaskStopWatchServiceFunction/),
    ]);
  });

  it.each(functions.map((f) => [f.logicalId, f] as const))('%s: its handler module loads in a fresh runtime and exports a function', async (_, fn) => {
    // Prepare: the asset as the runtime lays it out, the function's own environment
    const task = taskRoot(fn.codeDir, fn.kind === 'zip' ? 'aws-sdk' : 'claude-code');
    const env = { ...lambdaEnvironment(fn.logicalId, task), ...resolveEnvironment(fn.environment) };
    // Act
    const loaded = await invokeHandler(task, fn.module, fn.exportName, env);
    // Assess
    expect(loaded.output).not.toMatch(/Error/);
    expect(loaded, loaded.output).toMatchObject({ exitCode: 0, exportType: 'function' });
  });

  it.each(functions.map((f) => [f.logicalId, f] as const))('%s: loads without its environment too (it reads it at its first invocation)', async (_, fn) => {
    const task = taskRoot(fn.codeDir, fn.kind === 'zip' ? 'aws-sdk' : 'claude-code');
    const loaded = await invokeHandler(task, fn.module, fn.exportName, lambdaEnvironment(fn.logicalId, task));
    expect(loaded, loaded.output).toMatchObject({ exitCode: 0, exportType: 'function' });
  });

  it('fails an invocation without TABLE_NAME, naming the variable', async () => {
    // Prepare
    const creator = functions.find((f) => f.logicalId.startsWith('SessionCreator'))!;
    const task = taskRoot(creator.codeDir, 'aws-sdk');
    // Act
    const invoked = await invokeHandler(task, creator.module, creator.exportName, lambdaEnvironment(creator.logicalId, task), {
      input: { prompt: 'p', projectId: 'p' }, executionArn: 'arn:aws:states:us-east-1:123456789012:execution:m:e', executionName: 'e',
    });
    // Assess
    expect(invoked.error, invoked.output).toMatchObject({ errorMessage: 'Environment variable TABLE_NAME is required' });
  });
});

describe('the Fargate task of the synthesized template', () => {
  it('starts its container command and fails only for want of its input', async () => {
    // Prepare
    const container = deployedContainer(assembly);
    const task = taskRoot(container.codeDir, 'claude-code');
    // Act
    const run = await runCommand(task, container.command, { PATH: process.env.PATH!, AWS_REGION: 'us-east-1', ...resolveEnvironment(container.environment) });
    // Assess: exit 2 is the entry point's own "no input" answer, after every module loaded
    expect(run.exitCode, run.output).toBe(2);
    expect(run.output).toMatch(/SESSION_JSON and TASK_TOKEN must be set/);
  });
});

function resolveEnvironment(environment: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(environment).map(([name, value]) => [name, String(templateResolver(assembly.template).resolve(value))]));
}
