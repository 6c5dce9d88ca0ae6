import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

/** One finding of cfn-lint: its rule id (E…, W…, I…), what it says, where in the template. */
export interface CfnLintFinding {
  rule: string;
  message: string;
  /** Slash-joined path in the template, e.g. `Resources/MyFunction/DependsOn/1`. */
  path?: string;
}

export interface CfnLintResult {
  /** cfn-lint's exit code: a bit mask of 2 (errors), 4 (warnings), 8 (informational). */
  status: number | null;
  findings: CfnLintFinding[];
  /** cfn-lint's stdout as printed, for failure messages. */
  raw: string;
}

export interface CfnLintOptions {
  /** Rule id -> why the rule does not apply: the reason is the documentation, cfn-lint gets the ids. */
  ignore?: Record<string, string>;
}

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
interface TemplateResource {
  Type: string;
  Properties?: JsonObject;
}

// A fixed, well-formed environment, so that resolved ARNs match the patterns cfn-lint checks.
const PARTITION = 'aws';
const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
const URL_SUFFIX = 'amazonaws.com';
const STACK_NAME = 'ClaudeSessions';

const PSEUDO_PARAMETERS: Record<string, string> = {
  'AWS::Partition': PARTITION,
  'AWS::Region': REGION,
  'AWS::AccountId': ACCOUNT,
  'AWS::URLSuffix': URL_SUFFIX,
  'AWS::StackName': STACK_NAME,
  'AWS::StackId': `arn:${PARTITION}:cloudformation:${REGION}:${ACCOUNT}:stack/${STACK_NAME}/0f6f3c2e-1111-4c4c-8888-0123456789ab`,
};

const arn = (service: string, resource: string, region = REGION, account = ACCOUNT) => `arn:${PARTITION}:${service}:${region}:${account}:${resource}`;

/**
 * What Ref and each Fn::GetAtt return for a resource type (per CloudFormation's "Return values"),
 * as placeholders shaped like the real thing. A type or attribute not listed resolves to the logical id.
 */
const RETURN_VALUES: Record<string, (id: string) => { ref: string; attributes?: Record<string, string> }> = {
  'AWS::Lambda::Function': (id) => ({ ref: id, attributes: { Arn: arn('lambda', `function:${id}`) } }),
  'AWS::DynamoDB::Table': (id) => ({
    ref: id,
    attributes: { Arn: arn('dynamodb', `table/${id}`), StreamArn: arn('dynamodb', `table/${id}/stream/2024-01-01T00:00:00.000`) },
  }),
  'AWS::ECS::Cluster': (id) => ({ ref: id, attributes: { Arn: arn('ecs', `cluster/${id}`) } }),
  'AWS::ECS::TaskDefinition': (id) => ({ ref: arn('ecs', `task-definition/${id}:1`), attributes: { TaskDefinitionArn: arn('ecs', `task-definition/${id}:1`) } }),
  'AWS::EC2::VPC': () => ({ ref: 'vpc-0123456789abcdef0', attributes: { VpcId: 'vpc-0123456789abcdef0', CidrBlock: '10.0.0.0/16' } }),
  'AWS::EC2::Subnet': () => ({ ref: 'subnet-0123456789abcdef0', attributes: { SubnetId: 'subnet-0123456789abcdef0' } }),
  'AWS::EC2::SecurityGroup': () => ({ ref: 'sg-0123456789abcdef0', attributes: { GroupId: 'sg-0123456789abcdef0' } }),
  'AWS::IAM::Role': (id) => ({ ref: id, attributes: { Arn: arn('iam', `role/${id}`, ''), RoleId: 'AROA0123456789EXAMPLE' } }),
  'AWS::S3::Bucket': (id) => {
    const name = id.toLowerCase(); // bucket names are lower case
    return { ref: name, attributes: { Arn: `arn:${PARTITION}:s3:::${name}`, DomainName: `${name}.s3.${URL_SUFFIX}` } };
  },
  'AWS::SQS::Queue': (id) => ({
    ref: `https://sqs.${REGION}.${URL_SUFFIX}/${ACCOUNT}/${id}`,
    attributes: { Arn: arn('sqs', id), QueueName: id, QueueUrl: `https://sqs.${REGION}.${URL_SUFFIX}/${ACCOUNT}/${id}` },
  }),
  'AWS::SNS::Topic': (id) => ({ ref: arn('sns', id), attributes: { TopicArn: arn('sns', id), TopicName: id } }),
  'AWS::SecretsManager::Secret': (id) => ({ ref: arn('secretsmanager', `secret:${id}-AbCdEf`), attributes: { Id: arn('secretsmanager', `secret:${id}-AbCdEf`) } }),
  'AWS::Events::EventBus': (id) => ({ ref: id, attributes: { Arn: arn('events', `event-bus/${id}`), Name: id } }),
  'AWS::StepFunctions::StateMachine': (id) => ({ ref: arn('states', `stateMachine:${id}`), attributes: { Arn: arn('states', `stateMachine:${id}`), Name: id } }),
  'AWS::Logs::LogGroup': (id) => ({ ref: id, attributes: { Arn: arn('logs', `log-group:${id}:*`) } }),
};

function placeholderFor(resources: Record<string, TemplateResource>, logicalId: string, attribute?: string): string {
  const resource = resources[logicalId];
  const values = resource && RETURN_VALUES[resource.Type]?.(logicalId);
  if (!values) return logicalId;
  return attribute === undefined ? values.ref : (values.attributes?.[attribute] ?? logicalId);
}

/** The placeholder string for one intrinsic inside a DefinitionString. */
function resolveIntrinsic(template: { Resources: Record<string, TemplateResource>; Parameters?: JsonObject }, value: Json): string {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`not a string or intrinsic: ${JSON.stringify(value)}`);
  const [fn, ...others] = Object.keys(value);
  if (fn === undefined || others.length > 0) throw new Error(`not an intrinsic: ${JSON.stringify(value)}`);
  const args = value[fn]!;
  switch (fn) {
    case 'Fn::Join': {
      const [separator, parts] = args as [string, Json[]];
      return parts.map((part) => resolveIntrinsic(template, part)).join(separator);
    }
    case 'Ref': {
      const name = args as string;
      if (name in PSEUDO_PARAMETERS) return PSEUDO_PARAMETERS[name]!;
      const parameter = template.Parameters?.[name] as JsonObject | undefined;
      if (parameter) return typeof parameter.Default === 'string' ? parameter.Default : name;
      return placeholderFor(template.Resources, name);
    }
    case 'Fn::GetAtt': {
      const [logicalId, attribute] = typeof args === 'string' ? (args.split(/\.(.*)/s) as [string, string]) : (args as [string, string]);
      return placeholderFor(template.Resources, logicalId, attribute);
    }
    case 'Fn::Sub': {
      const [text, variables] = typeof args === 'string' ? [args, {}] : (args as [string, JsonObject]);
      return text.replace(/\$\{([^!}][^}]*)\}/g, (_, name: string) => {
        if (name in variables) return resolveIntrinsic(template, variables[name]!);
        const [logicalId, attribute] = name.split(/\.(.*)/s) as [string, string | undefined];
        return resolveIntrinsic(template, attribute ? { 'Fn::GetAtt': [logicalId, attribute] } : { Ref: logicalId });
      });
    }
    default:
      // Better to fail than to skip: a skipped definition is one cfn-lint silently stops checking.
      throw new Error(`resolveDefinitions: no placeholder for ${fn} (${JSON.stringify(value)}); teach test/support/cfn-lint.ts about it`);
  }
}

/** A string resolved from intrinsics, escaped to sit inside the JSON string literal it was cut from. */
function asJsonFragment(template: Parameters<typeof resolveIntrinsic>[0], part: Json): string {
  return typeof part === 'string' ? part : JSON.stringify(resolveIntrinsic(template, part)).slice(1, -1);
}

/**
 * A copy of the template where each state machine's DefinitionString is plain JSON, its intrinsics
 * replaced by well-formed placeholders: cfn-lint validates the ASL (E3601) only when it is a string.
 */
export function resolveDefinitions<T extends object>(template: T): T {
  const copy = structuredClone(template) as unknown as { Resources: Record<string, TemplateResource>; Parameters?: JsonObject };
  for (const [logicalId, resource] of Object.entries(copy.Resources ?? {})) {
    if (resource.Type !== 'AWS::StepFunctions::StateMachine' || !resource.Properties) continue;
    const definition = resource.Properties.DefinitionString;
    if (definition === undefined || typeof definition === 'string') continue;
    const join = (definition as JsonObject)['Fn::Join'] as [string, Json[]] | undefined;
    let text = join ? join[1].map((part) => asJsonFragment(copy, part)).join(join[0]) : resolveIntrinsic(copy, definition);
    // DefinitionSubstitutions fill ${name} in the definition at deploy time: fill them here too.
    const substitutions = resource.Properties.DefinitionSubstitutions as JsonObject | undefined;
    for (const [name, value] of Object.entries(substitutions ?? {})) {
      text = text.split(`\${${name}}`).join(JSON.stringify(resolveIntrinsic(copy, value)).slice(1, -1));
    }
    delete resource.Properties.DefinitionSubstitutions;
    try {
      JSON.parse(text);
    } catch (error) {
      throw new Error(`resolveDefinitions: ${logicalId}'s resolved DefinitionString is not JSON: ${(error as Error).message}`);
    }
    resource.Properties.DefinitionString = text;
  }
  return copy as unknown as T;
}

const INSTALL_HINT = 'cfn-lint is not on PATH: install it with `python3 -m pip install cfn-lint` (pip install cfn-lint)';

/** The cfn-lint executable on PATH, as a shell would find it. */
function findCfnLint(): string {
  const names = process.platform === 'win32' ? ['cfn-lint.exe', 'cfn-lint.cmd', 'cfn-lint'] : ['cfn-lint'];
  for (const directory of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    for (const name of names) {
      const candidate = join(directory, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here: try the next directory
      }
    }
  }
  throw new Error(INSTALL_HINT);
}

interface CfnLintJsonMatch {
  Rule: { Id: string };
  Message: string;
  Location?: { Path?: (string | number)[] | null };
}

/** Runs cfn-lint on one template and returns what it found, without any rule being ignored unless named with a reason. */
export function runCfnLint(templatePath: string, options: CfnLintOptions = {}): CfnLintResult {
  const ignored = Object.keys(options.ignore ?? {});
  const args = ['--format', 'json'];
  // One `--ignore-checks=A,B` argument: the option takes several values and would swallow the template path.
  if (ignored.length > 0) args.push(`--ignore-checks=${ignored.join(',')}`);
  args.push('--', templatePath);
  const lint = spawnSync(findCfnLint(), args, { cwd: dirname(templatePath), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (lint.error) {
    if ((lint.error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(INSTALL_HINT);
    throw lint.error;
  }
  // Any exit code outside the 2|4|8 mask (1 is "cfn-lint itself failed") leaves no findings to read.
  if (lint.status === null || (lint.status & ~(2 | 4 | 8)) !== 0) {
    throw new Error(`cfn-lint failed (exit ${lint.status ?? lint.signal}):\n${lint.stderr}\n${lint.stdout}`);
  }
  let matches: CfnLintJsonMatch[];
  try {
    matches = JSON.parse(lint.stdout) as CfnLintJsonMatch[];
  } catch {
    throw new Error(`cfn-lint printed no JSON (exit ${lint.status}):\n${lint.stderr}\n${lint.stdout}`);
  }
  const findings = matches.map((match): CfnLintFinding => {
    const path = match.Location?.Path;
    return { rule: match.Rule.Id, message: match.Message, ...(path && path.length > 0 ? { path: path.join('/') } : {}) };
  });
  return { status: lint.status, findings, raw: lint.stdout };
}
