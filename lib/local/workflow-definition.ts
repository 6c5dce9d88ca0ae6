import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { StateMachine } from 'aws-local-stepfunctions';
import { PROJECT_LOCK_FILE, PROJECT_ROOT } from '../project-root.js';


export type FunctionRole = 'create-session' | 'runner';

/** What the embedded runtime takes from the synthesized template: nothing is copied by hand. */
export interface WorkflowDefinition {
  /** The state machine's ASL, with CloudFormation references resolved to local names. */
  asl: { StartAt: string; States: Record<string, Record<string, unknown>>; TimeoutSeconds?: number };
  /** The session table's CreateTable input (keys, attributes, indexes). */
  table: {
    KeySchema: unknown[];
    AttributeDefinitions: unknown[];
    GlobalSecondaryIndexes?: unknown[];
  };
  /** Lambda ARN (as resolved locally) -> which of our functions it is. */
  functions: Record<string, FunctionRole>;
}

export const LOCAL_TABLE_NAME = 'claude-sessions';
const LOCAL_ACCOUNT = '000000000000';
const LOCAL_REGION = 'us-east-1';

/**
 * The workflow as `cdk synth` renders it. Synthesizing costs seconds, so the result is
 * cached under the state directory, keyed by a hash of every source file it comes from.
 */
export async function loadWorkflowDefinition(cacheDir: string): Promise<WorkflowDefinition> {
  const key = await sourceHash();
  const cacheFile = join(cacheDir, `workflow-${key}.json`);
  try {
    return JSON.parse(await readFile(cacheFile, 'utf8')) as WorkflowDefinition;
  } catch {
    // not cached yet
  }
  const definition = await synthesizeDefinition();
  assertValidAsl(definition.asl);
  await mkdir(cacheDir, { recursive: true });
  const partial = `${cacheFile}.${process.pid}.tmp`;
  await writeFile(partial, JSON.stringify(definition));
  await rename(partial, cacheFile); // atomic: a concurrent reader never sees half a file
  return definition;
}

/**
 * Validated once, when the definition is synthesized: the runtime then skips
 * aws-local-stepfunctions' own check, whose schema compile costs ~0.45 s per process.
 */
export function assertValidAsl(asl: WorkflowDefinition['asl']): void {
  new StateMachine(asl as never, { validationOptions: { checkArn: false } }); // throws, naming each error
}

async function sourceHash(): Promise<string> {
  const hash = createHash('sha256');
  const files = [...(await listFiles(join(PROJECT_ROOT, 'cdk'))), ...(await listFiles(join(PROJECT_ROOT, 'lib')))]
    .filter((f) => f.endsWith('.ts'))
    .sort();
  for (const file of [...files, PROJECT_LOCK_FILE]) {
    hash.update(relative(PROJECT_ROOT, file));
    hash.update(await readFile(file));
  }
  return hash.digest('hex').slice(0, 16);
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

export async function synthesizeDefinition(): Promise<WorkflowDefinition> {
  const [{ App }, { ClaudeSessionsStack }] = await Promise.all([
    import('aws-cdk-lib'),
    import('../../cdk/claude-sessions-stack.js'),
  ]);
  const outdir = await mkdtemp(join(tmpdir(), 'claude-sessions-synth-'));
  try {
    // No asset bundling: the local runtime runs lib/ in-process, not the bundles.
    const app = new App({ outdir, context: { 'aws:cdk:bundling-stacks': [] } });
    const stack = new ClaudeSessionsStack(app, 'ClaudeSessions');
    const template = app.synth().getStackByName(stack.stackName).template as CfnTemplate;
    const logicalId = (fn: { node: { defaultChild?: unknown } }) => stack.getLogicalId(fn.node.defaultChild as never);
    return fromTemplate(template, {
      [logicalId(stack.runner.function)]: 'runner',
      [logicalId(stack.creator.function)]: 'create-session',
    });
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
}

interface CfnTemplate {
  Resources: Record<string, { Type: string; Properties?: Record<string, any>; Metadata?: Record<string, unknown> }>;
}

export function fromTemplate(template: CfnTemplate, roles: Record<string, FunctionRole>): WorkflowDefinition {
  const resources = Object.entries(template.Resources);
  const only = (type: string) => {
    const found = resources.filter(([, r]) => r.Type === type);
    if (found.length !== 1) throw new Error(`expected one ${type} in the template, found ${found.length}`);
    return found[0]!;
  };
  const [tableId, table] = only('AWS::DynamoDB::Table');
  const [, machine] = only('AWS::StepFunctions::StateMachine');

  const functions = Object.fromEntries(Object.entries(roles).map(([id, role]) => [functionArn(id), role]));
  const refs: Record<string, string> = { [tableId]: LOCAL_TABLE_NAME };
  const asl = JSON.parse(String(resolve(machine.Properties!.DefinitionString, refs)));
  const { KeySchema, AttributeDefinitions, GlobalSecondaryIndexes } = table.Properties!;
  return { asl, table: { KeySchema, AttributeDefinitions, GlobalSecondaryIndexes }, functions };
}

function functionArn(logicalId: string): string {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${logicalId}`;
}

/** Resolves the intrinsics CDK uses in a definition string (Fn::Join, Ref, Fn::GetAtt). */
function resolve(value: unknown, refs: Record<string, string>): unknown {
  if (Array.isArray(value)) return value.map((v) => resolve(v, refs));
  if (value === null || typeof value !== 'object') return value;
  const obj = value as Record<string, any>;
  if ('Fn::Join' in obj) {
    const [separator, parts] = obj['Fn::Join'] as [string, unknown[]];
    return parts.map((p) => resolve(p, refs)).join(separator);
  }
  if ('Ref' in obj) {
    const ref = String(obj.Ref);
    if (ref === 'AWS::Partition') return 'aws';
    if (ref === 'AWS::Region') return LOCAL_REGION;
    if (ref === 'AWS::AccountId') return LOCAL_ACCOUNT;
    if (ref === 'AWS::URLSuffix') return 'amazonaws.com';
    return refs[ref] ?? ref;
  }
  if ('Fn::GetAtt' in obj) {
    const [id, attribute] = obj['Fn::GetAtt'] as [string, string];
    if (attribute === 'Arn') return functionArn(id);
    return `${id}.${attribute}`;
  }
  return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, resolve(v, refs)]));
}
