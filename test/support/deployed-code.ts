import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { PROJECT_ROOT } from '../../lib/project-root.js';

// The code a deploy ships, as the cloud assembly in cdk.out holds it, started the way its
// runtime starts it: in a fresh Node process that sees only what that runtime provides.

import type { CfnTemplate } from './template-resolver.js';

export interface CloudAssembly {
  dir: string;
  template: CfnTemplate;
}

export function readAssembly(cdkOut: string): CloudAssembly {
  return { dir: cdkOut, template: JSON.parse(readFileSync(join(cdkOut, 'ClaudeSessions.template.json'), 'utf8')) as CfnTemplate };
}

/** One Lambda function of the template, with the asset that holds its code. */
export interface DeployedFunction {
  logicalId: string;
  /** The logical id of its execution role. */
  role: string;
  kind: 'zip' | 'image';
  /** The asset folder in cdk.out. */
  codeDir: string;
  /** The module file and export the runtime calls (Handler, or the image's CMD). */
  module: string;
  exportName: string;
  /** Its environment as the template sets it (intrinsics unresolved). */
  environment: Record<string, unknown>;
}

export function deployedFunctions(assembly: CloudAssembly): DeployedFunction[] {
  return Object.entries(assembly.template.Resources)
    .filter(([, r]) => r.Type === 'AWS::Lambda::Function')
    .map(([logicalId, r]) => {
      const p = r.Properties as Record<string, any>;
      const role = String(p.Role['Fn::GetAtt'][0]);
      const environment = (p.Environment?.Variables ?? {}) as Record<string, unknown>;
      if (p.PackageType === 'Image') {
        const codeDir = imageAssetDir(assembly, JSON.stringify(p.Code.ImageUri));
        const cmd = /^CMD \["([^"]+)"\]/m.exec(readFileSync(join(codeDir, 'Dockerfile'), 'utf8'))?.[1];
        if (!cmd) throw new Error(`${logicalId}: the image's Dockerfile has no CMD ["module.export"]`);
        const [file, exportName] = cmd.split('.') as [string, string];
        return { logicalId, role, kind: 'image', codeDir, module: `${file}.mjs`, exportName, environment };
      }
      const codeDir = join(assembly.dir, String((r.Metadata as Record<string, unknown> | undefined)?.['aws:asset:path']));
      const [file, exportName] = String(p.Handler).split('.') as [string, string];
      const module = ['.mjs', '.js', '.cjs'].map((ext) => file + ext).find((f) => existsSync(join(codeDir, f)));
      if (!module) throw new Error(`${logicalId}: no ${file}.mjs/.js/.cjs in its asset ${codeDir}`);
      return { logicalId, role, kind: 'zip', codeDir, module, exportName, environment };
    });
}

/** The Fargate task's one container: the runner image, started as its EntryPoint + Command. */
export interface DeployedContainer {
  taskRole: string;
  codeDir: string;
  command: string[];
  environment: Record<string, unknown>;
}

export function deployedContainer(assembly: CloudAssembly): DeployedContainer {
  const [, taskDef] = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::ECS::TaskDefinition')!;
  const p = taskDef.Properties as Record<string, any>;
  const [container] = p.ContainerDefinitions as Record<string, any>[];
  return {
    taskRole: String(p.TaskRoleArn['Fn::GetAtt'][0]),
    codeDir: imageAssetDir(assembly, JSON.stringify(container!.Image)),
    command: [...(container!.EntryPoint ?? []), ...(container!.Command ?? [])],
    environment: Object.fromEntries((container!.Environment ?? []).map((e: { Name: string; Value: unknown }) => [e.Name, e.Value])),
  };
}

/** The image asset whose tag a reference (ImageUri, Image) names. */
function imageAssetDir(assembly: CloudAssembly, reference: string): string {
  const assets = JSON.parse(readFileSync(join(assembly.dir, 'ClaudeSessions.assets.json'), 'utf8')) as {
    dockerImages: Record<string, { source: { directory: string } }>;
  };
  const hit = Object.entries(assets.dockerImages).find(([hash]) => reference.includes(hash));
  if (!hit) throw new Error(`no image asset of cdk.out is named by ${reference}`);
  return join(assembly.dir, hit[1].source.directory);
}

/**
 * A task root as the runtime lays it out, in a temp folder: the asset copied to task/, and
 * beside it node_modules with only what that runtime provides: for a zip function the AWS
 * SDK v3 (the Lambda Node.js runtime's), for the runner image the Claude CLI it installs.
 */
export function taskRoot(codeDir: string, provides: 'aws-sdk' | 'claude-code'): string {
  const root = mkdtempSync(join(tmpdir(), 'task-root-'));
  const task = join(root, 'task');
  cpSync(codeDir, task, { recursive: true });
  const modules = provides === 'aws-sdk' ? join(root, 'node_modules') : join(task, 'node_modules');
  const packages = provides === 'aws-sdk' ? sdkClosure() : claudeCodePackages();
  for (const [name, dir] of packages) {
    mkdirSync(dirname(join(modules, name)), { recursive: true });
    symlinkSync(dir, join(modules, name), 'dir');
  }
  return task;
}

const nodeModules = join(PROJECT_ROOT, 'node_modules');

/** @aws-sdk/* and every package they depend on, as installed here: name -> folder. */
function sdkClosure(): Map<string, string> {
  const found = new Map<string, string>();
  const visit = (name: string, from: string) => {
    if (found.has(name)) return;
    const dir = packageDir(name, from);
    if (!dir) return; // an optional dependency not installed
    found.set(name, dir);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, dir);
  };
  for (const name of readdirSync(join(nodeModules, '@aws-sdk'))) visit(`@aws-sdk/${name}`, PROJECT_ROOT);
  return found;
}

function claudeCodePackages(): Map<string, string> {
  const found = new Map<string, string>();
  for (const name of readdirSync(join(nodeModules, '@anthropic-ai'))) found.set(`@anthropic-ai/${name}`, join(nodeModules, '@anthropic-ai', name));
  return found;
}

/** Node's own lookup: the nearest node_modules/<name> from a folder upwards. */
function packageDir(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/** What the Lambda service sets in every function's environment, for one function. */
export function lambdaEnvironment(functionName: string, taskRootDir: string): Record<string, string> {
  return {
    PATH: '/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin'.concat(':', dirname(process.execPath)),
    LANG: 'en_US.UTF-8',
    TZ: ':UTC',
    AWS_REGION: 'us-east-1',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs24.x',
    AWS_LAMBDA_FUNCTION_NAME: functionName,
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
    AWS_LAMBDA_LOG_GROUP_NAME: `/aws/lambda/${functionName}`,
    AWS_LAMBDA_LOG_STREAM_NAME: '2026/01/01/[$LATEST]0123456789abcdef',
    LAMBDA_TASK_ROOT: taskRootDir,
    _HANDLER: 'index.handler',
    AWS_XRAY_CONTEXT_MISSING: 'LOG_ERROR',
    _X_AMZN_TRACE_ID: 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0',
  };
}

export interface Invocation {
  /** The handler's return value, when it returned. */
  result?: unknown;
  /** The error it threw, as Lambda reports it (errorType, errorMessage). */
  error?: { errorType: string; errorMessage: string };
  /** Exit code of the process; 0 when the handler answered (returned or threw). */
  exitCode: number | null;
  output: string;
  /** The names in the process's environment before its module loaded and after the handler answered. */
  envKeys?: { before: string[]; after: string[] };
}

/**
 * A command the fresh Node process is started under (a sandbox such as bwrap), which shows
 * the process the files at paths of its own.
 */
export interface Wrap {
  /** The program and its arguments, up to where node's own argv begins (bwrap's end with '--'). Spawned as an argument array, never through a shell. */
  command: string[];
  /** The task root's path as the wrapped process sees it (bwrap: where it binds the task root). */
  taskRoot: string;
  /** A host folder the wrapped process can write, for the event and result files, and its path inside. */
  io: { host: string; inside: string };
}

const INVOKER = `
import { readFileSync, writeFileSync } from 'node:fs';
const { INVOKE_MODULE, INVOKE_EXPORT, INVOKE_EVENT, INVOKE_EVENTS, INVOKE_RESULT, AWS_LAMBDA_FUNCTION_NAME } = process.env;
let started = Date.now();
const context = {
  functionName: AWS_LAMBDA_FUNCTION_NAME, functionVersion: '$LATEST', memoryLimitInMB: '256',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:' + AWS_LAMBDA_FUNCTION_NAME,
  awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678', logGroupName: '/aws/lambda/' + AWS_LAMBDA_FUNCTION_NAME, logStreamName: 'test',
  callbackWaitsForEmptyEventLoop: true, getRemainingTimeInMillis: () => 900000 - (Date.now() - started),
};
const envKeys = [Object.keys(process.env)];
const mod = await import(INVOKE_MODULE);
if (INVOKE_EVENTS !== undefined) {
  // One warm environment, invoked once per event in turn, as Lambda reuses it.
  const results = [];
  for (const [i, event] of JSON.parse(readFileSync(INVOKE_EVENTS, 'utf8')).entries()) {
    started = Date.now();
    try {
      results.push({ result: (await mod[INVOKE_EXPORT](event, { ...context, awsRequestId: context.awsRequestId.slice(0, -2) + String(i).padStart(2, '0') })) ?? null });
    } catch (err) {
      results.push({ error: { errorType: err?.name ?? 'Error', errorMessage: err?.message ?? String(err) } });
    }
  }
  writeFileSync(INVOKE_RESULT, JSON.stringify({ results }));
  process.exit(0);
}
if (INVOKE_EVENT === undefined) { writeFileSync(INVOKE_RESULT, JSON.stringify({ exports: Object.keys(mod), type: typeof mod[INVOKE_EXPORT] })); process.exit(0); }
try {
  const result = await mod[INVOKE_EXPORT](JSON.parse(readFileSync(INVOKE_EVENT, 'utf8')), context);
  envKeys.push(Object.keys(process.env));
  writeFileSync(INVOKE_RESULT, JSON.stringify({ result: result ?? null, envKeys }));
} catch (err) {
  envKeys.push(Object.keys(process.env));
  writeFileSync(INVOKE_RESULT, JSON.stringify({ error: { errorType: err?.name ?? 'Error', errorMessage: err?.message ?? String(err) }, envKeys }));
}
// What the handler sent as it returned (an X-Ray subsegment over UDP) goes out before the process does.
if (process.env.INVOKE_SETTLE_MS) await new Promise((resolve) => setTimeout(resolve, Number(process.env.INVOKE_SETTLE_MS)));
process.exit(0);
`;

/**
 * Imports a handler module in a fresh Node process with exactly `env` (nothing inherited),
 * and, with an event, invokes its export once as the Lambda runtime would. With `wrap`, that
 * process is started under the wrap's command, and given the paths it sees inside.
 */
export async function invokeHandler(
  task: string,
  module: string,
  exportName: string,
  env: Record<string, string>,
  event?: unknown,
  wrap?: Wrap,
): Promise<Invocation & { exports?: string[]; exportType?: string }> {
  const { exitCode, output, answer } = await runInvoker(task, module, exportName, env, event !== undefined ? { INVOKE_EVENT: event } : {}, wrap);
  if (!answer) return { exitCode, output };
  const { result, error, exports, type, envKeys: keys } = answer as {
    result?: unknown; error?: Invocation['error']; exports?: string[]; type?: string; envKeys?: [string[], string[]];
  };
  const envKeys = keys && { before: keys[0], after: keys[1] };
  return { exitCode, output, result, error, envKeys, exports, exportType: type };
}

/** Invokes a handler once per event, in turn, in one fresh process: a warm Lambda environment reused. */
export async function invokeWarm(
  task: string,
  module: string,
  exportName: string,
  env: Record<string, string>,
  events: unknown[],
  wrap?: Wrap,
): Promise<{ exitCode: number | null; output: string; results?: Pick<Invocation, 'result' | 'error'>[] }> {
  const { exitCode, output, answer } = await runInvoker(task, module, exportName, env, { INVOKE_EVENTS: events }, wrap);
  return { exitCode, output, results: (answer as { results?: Pick<Invocation, 'result' | 'error'>[] } | undefined)?.results };
}

/** Runs INVOKER in a fresh process with exactly `env`, each of `files` written as JSON and named by its variable; returns what it wrote. */
async function runInvoker(
  task: string, module: string, exportName: string, env: Record<string, string>, files: Record<string, unknown>, wrap?: Wrap,
): Promise<{ exitCode: number | null; output: string; answer?: unknown }> {
  const io = wrap ? mkdtempSync(join(wrap.io.host, 'invoke-')) : mkdtempSync(join(tmpdir(), 'invoke-'));
  // The same files, by the paths the process sees (inside the wrap's, when wrapped).
  const inside = (hostPath: string) => (wrap ? join(wrap.io.inside, relative(wrap.io.host, hostPath)) : hostPath);
  const resultFile = join(io, 'result.json');
  const named: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) {
    const file = join(io, `${name.toLowerCase()}.json`);
    writeFileSync(file, JSON.stringify(content));
    named[name] = inside(file);
  }
  const node = [process.execPath, '--input-type=module', '-e', INVOKER];
  const [program, ...args] = wrap ? [...wrap.command, ...node] : node;
  const child = spawn(program!, args, {
    cwd: task,
    env: { ...env, INVOKE_MODULE: join(wrap?.taskRoot ?? task, module), INVOKE_EXPORT: exportName, INVOKE_RESULT: inside(resultFile), ...named },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.once('close', resolve));
  if (!existsSync(resultFile)) return { exitCode, output };
  return { exitCode, output, answer: JSON.parse(readFileSync(resultFile, 'utf8')) };
}

/** Starts a container command (the Fargate task) in a fresh process with exactly `env`. */
export async function runCommand(task: string, command: string[], env: Record<string, string>): Promise<{ exitCode: number | null; output: string }> {
  // The image's paths (/var/task/...) are the task root's here.
  const [program, ...args] = command.map((part) => part.replace(/^\/var\/task(?=\/|$)/, task));
  const child = spawn(program === 'node' ? process.execPath : program!, args, { cwd: task, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const exitCode = await new Promise<number | null>((resolve) => child.once('close', resolve));
  return { exitCode, output };
}

