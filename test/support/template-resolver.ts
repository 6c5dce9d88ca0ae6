import { createHash } from 'node:crypto';

/**
 * Resolves the intrinsics of a synthesized CloudFormation template to the values a deploy
 * to one fixed account would produce, so tests name resources exactly as the template's
 * IAM policies do: a function given its resolved environment calls the table the policy names.
 */

export const ACCOUNT = '123456789012';
export const REGION = 'us-east-1';
export const PARTITION = 'aws';
export const URL_SUFFIX = 'amazonaws.com';
export const STACK_NAME = 'ClaudeSessions';
/** The six characters Secrets Manager appends to a secret's name in its ARN. */
export const SECRET_SUFFIX = 'AbCdEf';
/** A stream label of the fixed form DynamoDB gives (a creation timestamp). */
export const STREAM_LABEL = '2026-01-01T00:00:00.000';
/** Every task definition is taken at its first revision. */
export const TASK_DEFINITION_REVISION = 1;

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Parameters?: Record<string, { Default?: unknown }>;
  Outputs?: Record<string, { Value: unknown; [key: string]: unknown }>;
  Mappings?: Record<string, Record<string, Record<string, unknown>>>;
  [key: string]: unknown;
}

export interface TemplateResolver {
  /** A value with every intrinsic replaced by what CloudFormation would make of it. */
  resolve(value: unknown): unknown;
  /** The name AWS knows the resource by (table, function, bucket, queue, role, log group...). */
  physicalName(logicalId: string): string;
  /** What `Fn::GetAtt [logicalId, Arn]` gives (for a secret or a state machine: its Ref). */
  arnOf(logicalId: string): string;
  /** What `Ref logicalId` gives. */
  ref(logicalId: string): string;
  /** What `Fn::GetAtt [logicalId, attribute]` gives. */
  getAtt(logicalId: string, attribute: string): string;
}

const PSEUDO_PARAMETERS: Record<string, string> = {
  'AWS::Partition': PARTITION,
  'AWS::Region': REGION,
  'AWS::AccountId': ACCOUNT,
  'AWS::URLSuffix': URL_SUFFIX,
  'AWS::StackName': STACK_NAME,
  'AWS::StackId': `arn:${PARTITION}:cloudformation:${REGION}:${ACCOUNT}:stack/${STACK_NAME}/${uuidOf(STACK_NAME)}`,
};

/** Marks an `AWS::NoValue`: the property or list element is dropped. */
const NO_VALUE = Symbol('AWS::NoValue');

/** `arn:aws:<service>:<region>:<account>:<resource>`; S3 and IAM leave region (and S3 account) empty. */
export function arn(service: string, resource: string, region: string = REGION, account: string = ACCOUNT): string {
  return `arn:${PARTITION}:${service}:${region}:${account}:${resource}`;
}

/** Deterministic ids (vpc-..., API ids, key ids) from a logical id: stable across runs. */
function hexOf(seed: string, length: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, length);
}

function uuidOf(seed: string): string {
  const h = hexOf(seed, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A resource as the rules see it: its logical id, physical name and resolved property reader. */
interface Physical {
  id: string;
  name: string;
  prop(name: string): unknown;
}

interface TypeRule {
  /** The property that names the resource, when the template gives one. */
  nameProperty?: string;
  /** The name used when the template gives none (AWS would generate one from the logical id). */
  defaultName?: (logicalId: string, prop: (name: string) => unknown) => string;
  ref: (r: Physical) => string;
  attributes: Record<string, (r: Physical) => string>;
}

const ec2Id = (prefix: string) => (r: Physical) => `${prefix}-${hexOf(r.id, 17)}`;
const apiId = (r: Physical) => hexOf(r.id, 10);
const tableArn = (r: Physical) => arn('dynamodb', `table/${r.name}`);
const queueUrl = (r: Physical) => `https://sqs.${REGION}.${URL_SUFFIX}/${ACCOUNT}/${r.name}`;
const functionArn = (r: Physical) => arn('lambda', `function:${r.name}`);
const stateMachineArn = (r: Physical) => arn('states', `stateMachine:${r.name}`);
const secretArn = (r: Physical) => arn('secretsmanager', `secret:${r.name}-${SECRET_SUFFIX}`);
const roleArn = (r: Physical) => arn('iam', `role${String(r.prop('Path') ?? '/')}${r.name}`, '');
const managedPolicyArn = (r: Physical) => arn('iam', `policy${String(r.prop('Path') ?? '/')}${r.name}`, '');
const taskDefinitionArn = (r: Physical) => arn('ecs', `task-definition/${r.name}:${TASK_DEFINITION_REVISION}`);
const topicArn = (r: Physical) => arn('sns', r.name);
const keyArn = (r: Physical) => arn('kms', `key/${uuidOf(r.id)}`);
const ruleArn = (r: Physical) => {
  const bus = r.prop('EventBusName');
  return arn('events', bus && bus !== 'default' ? `rule/${String(bus)}/${r.name}` : `rule/${r.name}`);
};

/** The resource types this project's templates reference, with AWS's own name and ARN formats. */
const RULES: Record<string, TypeRule> = {
  'AWS::DynamoDB::Table': {
    nameProperty: 'TableName',
    ref: (r) => r.name,
    attributes: { Arn: tableArn, StreamArn: (r) => `${tableArn(r)}/stream/${STREAM_LABEL}` },
  },
  'AWS::S3::Bucket': {
    nameProperty: 'BucketName',
    defaultName: (id) => id.toLowerCase(),
    ref: (r) => r.name,
    attributes: {
      Arn: (r) => `arn:${PARTITION}:s3:::${r.name}`,
      DomainName: (r) => `${r.name}.s3.${URL_SUFFIX}`,
      RegionalDomainName: (r) => `${r.name}.s3.${REGION}.${URL_SUFFIX}`,
      DualStackDomainName: (r) => `${r.name}.s3.dualstack.${REGION}.${URL_SUFFIX}`,
      WebsiteURL: (r) => `http://${r.name}.s3-website-${REGION}.${URL_SUFFIX}`,
    },
  },
  'AWS::S3::BucketPolicy': { ref: (r) => r.id, attributes: {} },
  'AWS::SQS::Queue': {
    nameProperty: 'QueueName',
    // A FIFO queue's generated name must end in .fifo too.
    defaultName: (id, prop) => (prop('FifoQueue') === true || prop('FifoQueue') === 'true' ? `${id}.fifo` : id),
    ref: queueUrl,
    attributes: { Arn: (r) => arn('sqs', r.name), QueueName: (r) => r.name, QueueUrl: queueUrl },
  },
  'AWS::SQS::QueuePolicy': { ref: (r) => r.id, attributes: {} },
  'AWS::SNS::Topic': {
    nameProperty: 'TopicName',
    ref: topicArn,
    attributes: { TopicArn: topicArn, TopicName: (r) => r.name },
  },
  'AWS::Lambda::Function': {
    nameProperty: 'FunctionName',
    ref: (r) => r.name,
    attributes: { Arn: functionArn },
  },
  'AWS::Lambda::EventSourceMapping': { ref: (r) => uuidOf(r.id), attributes: { Id: (r) => uuidOf(r.id) } },
  'AWS::StepFunctions::StateMachine': {
    nameProperty: 'StateMachineName',
    ref: stateMachineArn,
    attributes: { Arn: stateMachineArn, Name: (r) => r.name, StateMachineRevisionId: stateMachineArn },
  },
  'AWS::IAM::Role': {
    nameProperty: 'RoleName',
    ref: (r) => r.name,
    attributes: { Arn: roleArn, RoleId: (r) => `AROA${hexOf(r.id, 17).toUpperCase()}` },
  },
  'AWS::IAM::Policy': { nameProperty: 'PolicyName', ref: (r) => r.name, attributes: {} },
  'AWS::IAM::ManagedPolicy': {
    nameProperty: 'ManagedPolicyName',
    ref: managedPolicyArn,
    attributes: { PolicyArn: managedPolicyArn },
  },
  'AWS::SecretsManager::Secret': { nameProperty: 'Name', ref: secretArn, attributes: { Id: secretArn } },
  'AWS::Logs::LogGroup': {
    nameProperty: 'LogGroupName',
    ref: (r) => r.name,
    // CloudFormation's Arn of a log group ends in ":*" (it covers the group's streams).
    attributes: { Arn: (r) => arn('logs', `log-group:${r.name}:*`) },
  },
  'AWS::ECS::Cluster': {
    nameProperty: 'ClusterName',
    ref: (r) => r.name,
    attributes: { Arn: (r) => arn('ecs', `cluster/${r.name}`) },
  },
  'AWS::ECS::TaskDefinition': {
    nameProperty: 'Family',
    ref: taskDefinitionArn,
    attributes: { TaskDefinitionArn: taskDefinitionArn },
  },
  'AWS::EC2::VPC': {
    ref: ec2Id('vpc'),
    attributes: {
      VpcId: ec2Id('vpc'),
      CidrBlock: (r) => String(r.prop('CidrBlock')),
      DefaultSecurityGroup: ec2Id('sg'),
      DefaultNetworkAcl: ec2Id('acl'),
    },
  },
  'AWS::EC2::Subnet': {
    ref: ec2Id('subnet'),
    attributes: {
      SubnetId: ec2Id('subnet'),
      AvailabilityZone: (r) => String(r.prop('AvailabilityZone')),
      VpcId: (r) => String(r.prop('VpcId')),
    },
  },
  'AWS::EC2::RouteTable': { ref: ec2Id('rtb'), attributes: { RouteTableId: ec2Id('rtb') } },
  'AWS::EC2::InternetGateway': { ref: ec2Id('igw'), attributes: { InternetGatewayId: ec2Id('igw') } },
  'AWS::EC2::SecurityGroup': {
    ref: ec2Id('sg'),
    attributes: { GroupId: ec2Id('sg'), VpcId: (r) => String(r.prop('VpcId')) },
  },
  'AWS::EC2::FlowLog': { ref: ec2Id('fl'), attributes: { Id: ec2Id('fl') } },
  'AWS::ApiGateway::RestApi': {
    ref: apiId,
    attributes: { RestApiId: apiId, RootResourceId: (r) => hexOf(`${r.id}/`, 10) },
  },
  'AWS::ApiGateway::Deployment': { ref: apiId, attributes: { DeploymentId: apiId } },
  'AWS::ApiGateway::Stage': { nameProperty: 'StageName', ref: (r) => r.name, attributes: {} },
  'AWS::ApiGateway::Resource': { ref: apiId, attributes: { ResourceId: apiId } },
  'AWS::Events::Rule': { nameProperty: 'Name', ref: (r) => r.name, attributes: { Arn: ruleArn } },
  'AWS::Events::EventBus': {
    nameProperty: 'Name',
    ref: (r) => r.name,
    attributes: { Arn: (r) => arn('events', `event-bus/${r.name}`), Name: (r) => r.name },
  },
  'AWS::Scheduler::ScheduleGroup': {
    nameProperty: 'Name',
    ref: (r) => r.name,
    attributes: { Arn: (r) => arn('scheduler', `schedule-group/${r.name}`) },
  },
  'AWS::Scheduler::Schedule': {
    nameProperty: 'Name',
    ref: (r) => r.name,
    attributes: { Arn: (r) => arn('scheduler', `schedule/${String(r.prop('GroupName') ?? 'default')}/${r.name}`) },
  },
  'AWS::KMS::Key': { ref: (r) => uuidOf(r.id), attributes: { Arn: keyArn, KeyId: (r) => uuidOf(r.id) } },
  'AWS::CloudWatch::Alarm': {
    nameProperty: 'AlarmName',
    ref: (r) => r.name,
    attributes: { Arn: (r) => arn('cloudwatch', `alarm:${r.name}`) },
  },
  'AWS::CloudWatch::Dashboard': { nameProperty: 'DashboardName', ref: (r) => r.name, attributes: {} },
};

const AVAILABILITY_ZONES = ['a', 'b', 'c', 'd', 'e', 'f'].map((z) => `${REGION}${z}`);

/** The resolver of one template; every name and ARN it gives is derived the same way. */
export function templateResolver(template: CfnTemplate): TemplateResolver {
  const resolving = new Set<string>();

  function resourceOf(logicalId: string): { resource: CfnResource; rule: TypeRule } {
    const resource = template.Resources[logicalId];
    if (!resource) throw new Error(`no resource ${logicalId} in the template`);
    const rule = RULES[resource.Type];
    if (!rule) throw new Error(`template-resolver: no name/ARN rule for ${resource.Type} (${logicalId}); add one`);
    return { resource, rule };
  }

  function physical(logicalId: string): Physical {
    const { resource, rule } = resourceOf(logicalId);
    const prop = (name: string) => resolve(resource.Properties?.[name]);
    const given = rule.nameProperty ? prop(rule.nameProperty) : undefined;
    const name = typeof given === 'string' ? given : rule.defaultName ? rule.defaultName(logicalId, prop) : logicalId;
    return { id: logicalId, name, prop };
  }

  /** Guards against a template whose names refer to each other (CloudFormation rejects those too). */
  function guarded<T>(key: string, compute: () => T): T {
    if (resolving.has(key)) throw new Error(`circular reference while resolving ${key}`);
    resolving.add(key);
    try {
      return compute();
    } finally {
      resolving.delete(key);
    }
  }

  function ref(name: string): string {
    const pseudo = PSEUDO_PARAMETERS[name];
    if (pseudo !== undefined) return pseudo;
    const parameter = template.Parameters?.[name];
    if (parameter) return String(parameter.Default ?? '');
    return guarded(`Ref ${name}`, () => resourceOf(name).rule.ref(physical(name)));
  }

  function getAtt(logicalId: string, attribute: string): string {
    return guarded(`GetAtt ${logicalId}.${attribute}`, () => {
      const { resource, rule } = resourceOf(logicalId);
      const compute = rule.attributes[attribute];
      if (!compute) throw new Error(`template-resolver: no rule for Fn::GetAtt ${resource.Type}.${attribute} (${logicalId}); add one`);
      return compute(physical(logicalId));
    });
  }

  function sub(text: string, variables: Record<string, unknown>): string {
    return text.replace(/\$\{(!?)([^}]+)\}/g, (_whole, literal: string, name: string) => {
      if (literal) return `\${${name}}`;
      if (name in variables) return String(resolve(variables[name]));
      const dot = name.indexOf('.');
      if (dot > 0 && !name.startsWith('AWS::')) return getAtt(name.slice(0, dot), name.slice(dot + 1));
      return ref(name);
    });
  }

  function asList(value: unknown, intrinsic: string): unknown[] {
    const list = resolve(value);
    if (!Array.isArray(list)) throw new Error(`${intrinsic} expects a list, got ${JSON.stringify(list)}`);
    return list;
  }

  function intrinsic(name: string, argument: unknown): unknown {
    switch (name) {
      case 'Ref':
        return argument === 'AWS::NoValue' ? NO_VALUE : ref(String(argument));
      case 'Fn::GetAtt': {
        const [id, attribute] = typeof argument === 'string' ? argument.split(/\.(.*)/s) : (argument as string[]);
        return getAtt(String(id), String(resolve(attribute)));
      }
      case 'Fn::Join': {
        const [delimiter, parts] = argument as [string, unknown];
        return asList(parts, name).map(String).join(delimiter);
      }
      case 'Fn::Sub':
        return typeof argument === 'string'
          ? sub(argument, {})
          : sub(String((argument as [string, Record<string, unknown>])[0]), (argument as [string, Record<string, unknown>])[1] ?? {});
      case 'Fn::Select': {
        const [index, list] = argument as [unknown, unknown];
        const items = asList(list, name);
        const at = Number(resolve(index));
        if (!(at >= 0 && at < items.length)) throw new Error(`Fn::Select index ${at} out of ${JSON.stringify(items)}`);
        return items[at];
      }
      case 'Fn::Split': {
        const [delimiter, source] = argument as [string, unknown];
        return String(resolve(source)).split(delimiter);
      }
      case 'Fn::GetAZs':
        return AVAILABILITY_ZONES;
      case 'Fn::Base64':
        return Buffer.from(String(resolve(argument))).toString('base64');
      case 'Fn::FindInMap': {
        const [map, top, second] = (argument as unknown[]).map((part) => String(resolve(part)));
        const value = template.Mappings?.[map!]?.[top!]?.[second!];
        if (value === undefined) throw new Error(`Fn::FindInMap: no ${map}.${top}.${second}`);
        return value;
      }
      default:
        throw new Error(`template-resolver: intrinsic ${name} is not supported; add it`);
    }
  }

  function resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(resolve).filter((item) => item !== NO_VALUE);
    if (value === null || typeof value !== 'object') return value;
    const entries = Object.entries(value);
    const [only] = entries;
    if (entries.length === 1 && only && (only[0] === 'Ref' || only[0].startsWith('Fn::'))) return intrinsic(only[0], only[1]);
    const out: Record<string, unknown> = {};
    for (const [key, item] of entries) {
      const resolved = resolve(item);
      if (resolved !== NO_VALUE) out[key] = resolved;
    }
    return out;
  }

  return {
    resolve,
    ref,
    getAtt,
    physicalName: (logicalId) => physical(logicalId).name,
    arnOf: (logicalId) => {
      const { rule } = resourceOf(logicalId);
      const attribute = ['Arn', 'TopicArn', 'TaskDefinitionArn', 'PolicyArn'].find((a) => a in rule.attributes);
      // A secret's or a state machine's Ref is its ARN; the others have an ARN attribute.
      return attribute ? getAtt(logicalId, attribute) : ref(logicalId);
    },
  };
}

/**
 * The template with the intrinsics of every resource's Properties and every Output resolved.
 * Other sections (Rules, Conditions, Metadata) are kept as they are: no deploy resolves them into resources.
 */
export function resolveTemplate(template: CfnTemplate): CfnTemplate {
  const { resolve } = templateResolver(template);
  const resources = Object.fromEntries(
    Object.entries(template.Resources).map(([id, resource]) => [
      id,
      resource.Properties ? { ...resource, Properties: resolve(resource.Properties) as Record<string, unknown> } : { ...resource },
    ]),
  );
  const outputs = template.Outputs
    ? Object.fromEntries(Object.entries(template.Outputs).map(([id, output]) => [id, { ...output, Value: resolve(output.Value) }]))
    : undefined;
  return { ...template, Resources: resources, ...(outputs ? { Outputs: outputs } : {}) };
}
