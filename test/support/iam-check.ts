import {
  getDenialReasons,
  getGrantReasons,
  runSimulation,
  type RequestAnalysis,
  type RequestDenial,
  type SuccessfulRunSimulationResults,
} from '@cloud-copilot/iam-simulate';
import {
  ACCOUNT,
  PARTITION,
  REGION,
  SECRET_SUFFIX,
  TASK_DEFINITION_REVISION,
  arn,
  resolveTemplate,
  templateResolver,
  type CfnTemplate,
} from './template-resolver.js';

/**
 * "IAM equals the calls": maps the AWS calls a deployed principal makes to the IAM requests
 * AWS authorizes for them, and evaluates those with a real IAM policy evaluator
 * (@cloud-copilot/iam-simulate) against what the synthesized template grants that principal.
 */

/** The partition key attribute of this project's table: its value is `dynamodb:LeadingKeys`. */
export const PARTITION_KEY = 'pk';

export interface AwsCall {
  /** Logical id of the IAM role that makes the call. */
  principal: string;
  /** IAM prefix: dynamodb, states, s3, secretsmanager, events, lambda, ecs, iam, sqs, sns, logs, kms, cloudwatch, xray, sts, bedrock, codecommit, execute-api. */
  service: string;
  /** API action name, e.g. UpdateItem. */
  action: string;
  /** The request parameters as sent on the wire (JSON body; for S3: { Bucket, Key?, prefix?, ... }). */
  params: Record<string, unknown>;
}

export interface IamRequest {
  action: string;
  resource: string;
  context: Record<string, string | string[]>;
}

export interface PolicyStatement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

export interface PolicyDocument {
  Version?: string;
  Statement: PolicyStatement | PolicyStatement[];
}

export interface IdentityPolicy {
  /** The policy's logical id, `<role>/<PolicyName>` for an inline one, or a managed policy's ARN. */
  name: string;
  document: PolicyDocument;
}

export interface Denial {
  principal: string;
  action: string;
  resource: string;
  reason: string;
}

export interface UnusedGrant {
  principal: string;
  /** The policy the statement is in (see IdentityPolicy.name). */
  policy: string;
  action: string;
  resource: string;
}

export interface CallCheck {
  denied: Denial[];
  unusedGrants: UnusedGrant[];
}

export interface CheckOptions {
  /** Principals whose unused grants to report; default: every principal that made a call. */
  reportUnusedFor?: string[];
  /** The request time (aws:CurrentTime); default: now. */
  now?: Date;
}

/**
 * AWS's published documents of the AWS managed policies this template attaches
 * (docs.aws.amazon.com/aws-managed-policy/latest/reference/, both at v1, default version).
 * A role attaching any other AWS managed policy fails policiesOf until its document is added here.
 */
const AWS_MANAGED_POLICIES: Record<string, PolicyDocument> = {
  'service-role/AWSLambdaBasicExecutionRole': {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Action: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents'], Resource: '*' }],
  },
  'service-role/AmazonAPIGatewayPushToCloudWatchLogs': {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: [
          'logs:CreateLogGroup',
          'logs:CreateLogStream',
          'logs:DescribeLogGroups',
          'logs:DescribeLogStreams',
          'logs:PutLogEvents',
          'logs:GetLogEvents',
          'logs:FilterLogEvents',
        ],
        Resource: '*',
      },
    ],
  },
};

// ---------------------------------------------------------------------------------------------
// Calls -> IAM requests

type Params = Record<string, unknown>;
type Mapper = (action: string, params: Params, template?: CfnTemplate) => IamRequest[];

function request(action: string, resource: string, context: IamRequest['context'] = {}): IamRequest {
  return { action, resource, context };
}

function str(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`iamRequestOf: missing ${what}`);
  return value;
}

function list<T = unknown>(value: unknown): T[] {
  return Array.isArray(value) ? (value as T[]) : value === undefined ? [] : [value as T];
}

// DynamoDB ------------------------------------------------------------------------------------

function tableArn(table: unknown): string {
  const name = str(table, 'TableName');
  return name.startsWith('arn:') ? name : arn('dynamodb', `table/${name}`);
}

/** The scalar of an AttributeValue ({"S": "x"} on the wire; a plain value when unmarshalled). */
function scalarOf(value: unknown): string | undefined {
  if (typeof value === 'string' || typeof value === 'number') return String(value);
  if (value && typeof value === 'object') {
    const [entry] = Object.entries(value);
    if (entry && ['S', 'N', 'B'].includes(entry[0])) return String(entry[1]);
  }
  return undefined;
}

function partitionKeyOf(item: unknown): string | undefined {
  return item && typeof item === 'object' ? scalarOf((item as Params)[PARTITION_KEY]) : undefined;
}

function leadingKeys(values: (string | undefined)[]): IamRequest['context'] {
  const keys = [...new Set(values.filter((v): v is string => v !== undefined))];
  return keys.length ? { 'dynamodb:LeadingKeys': keys } : {};
}

/**
 * An UpdateItem's fine-grained context: `dynamodb:Attributes`, modelled as every top-level attribute
 * the request names (its key, its update and condition expressions, `#names` resolved), a superset
 * of what AWS counts, so a grant that admits it admits the real request; and `dynamodb:ReturnValues`.
 */
function updateContext(params: Params): IamRequest['context'] {
  const names = (params.ExpressionAttributeNames ?? {}) as Record<string, string>;
  const named = new Set(Object.keys((params.Key ?? {}) as Params));
  const functions = /^(attribute_exists|attribute_not_exists|attribute_type|begins_with|contains|size|if_not_exists|list_append)$/i;
  const keywords = /^(SET|REMOVE|ADD|DELETE|AND|OR|NOT|BETWEEN|IN)$/i;
  for (const expression of [params.UpdateExpression, params.ConditionExpression]) {
    if (typeof expression !== 'string') continue;
    // A path's first segment only (`a.b[0]` names `a`); `:values` are no attributes.
    for (const [, token] of expression.matchAll(/(?<![.\w:#])(#?[A-Za-z_]\w*)(?!\w)(?!\s*\()/g)) {
      if (keywords.test(token!) || functions.test(token!)) continue;
      named.add(token!.startsWith('#') ? names[token!] ?? token! : token!);
    }
  }
  return {
    'dynamodb:Attributes': [...named],
    ...(typeof params.ReturnValues === 'string' ? { 'dynamodb:ReturnValues': params.ReturnValues } : {}),
  };
}

/** The partition key value a Query names: `pk = :v` (or `#n = :v`) in its KeyConditionExpression. */
function queryPartitionKey(params: Params): string | undefined {
  const expression = params.KeyConditionExpression;
  if (typeof expression === 'string') {
    const names = (params.ExpressionAttributeNames ?? {}) as Record<string, string>;
    const values = (params.ExpressionAttributeValues ?? {}) as Record<string, unknown>;
    for (const part of expression.split(/\s+AND\s+/i)) {
      const match = /^\s*\(?\s*([#\w]+)\s*=\s*(:\w+)\s*\)?\s*$/.exec(part);
      if (match && (names[match[1]!] ?? match[1]) === PARTITION_KEY) return scalarOf(values[match[2]!]);
    }
    return undefined;
  }
  const legacy = (params.KeyConditions as Record<string, { AttributeValueList?: unknown[] }> | undefined)?.[PARTITION_KEY];
  return scalarOf(legacy?.AttributeValueList?.[0]);
}

function tableOrIndex(params: Params): string {
  const table = tableArn(params.TableName);
  return typeof params.IndexName === 'string' ? `${table}/index/${params.IndexName}` : table;
}

/** BatchWriteItem / BatchGetItem: one request per table, with every key it touches. */
function batchRequests(action: string, params: Params, keysOf: (entry: unknown) => unknown[]): IamRequest[] {
  const items = (params.RequestItems ?? {}) as Record<string, unknown>;
  return Object.entries(items).map(([table, entry]) =>
    request(`dynamodb:${action}`, tableArn(table), leadingKeys(keysOf(entry).map(partitionKeyOf))),
  );
}

/** A transaction is authorized as its single-item actions, one per element. */
function transactionRequests(params: Params): IamRequest[] {
  const actions: Record<string, string> = { Put: 'PutItem', Update: 'UpdateItem', Delete: 'DeleteItem', ConditionCheck: 'ConditionCheckItem', Get: 'GetItem' };
  return list<Record<string, Params>>(params.TransactItems).flatMap((element) =>
    Object.entries(element).map(([kind, item]) =>
      request(`dynamodb:${actions[kind] ?? kind}`, tableArn(item.TableName), leadingKeys([partitionKeyOf(item.Key ?? item.Item)])),
    ),
  );
}

const dynamodb: Mapper = (action, params) => {
  switch (action) {
    case 'GetItem':
    case 'DeleteItem':
      return [request(`dynamodb:${action}`, tableArn(params.TableName), leadingKeys([partitionKeyOf(params.Key)]))];
    case 'UpdateItem':
      return [request('dynamodb:UpdateItem', tableArn(params.TableName), { ...leadingKeys([partitionKeyOf(params.Key)]), ...updateContext(params) })];
    case 'PutItem':
      return [request('dynamodb:PutItem', tableArn(params.TableName), leadingKeys([partitionKeyOf(params.Item)]))];
    case 'Query':
      return [request('dynamodb:Query', tableOrIndex(params), leadingKeys([queryPartitionKey(params)]))];
    case 'Scan':
      return [request('dynamodb:Scan', tableOrIndex(params))];
    case 'BatchGetItem':
      return batchRequests(action, params, (entry) => list((entry as Params).Keys));
    case 'BatchWriteItem':
      return batchRequests(action, params, (entry) =>
        list<Params>(entry).map((write) => (write.PutRequest as Params | undefined)?.Item ?? (write.DeleteRequest as Params | undefined)?.Key),
      );
    case 'TransactWriteItems':
    case 'TransactGetItems':
      return transactionRequests(params);
    case 'ListStreams':
      return [request('dynamodb:ListStreams', '*')];
    case 'DescribeStream':
    case 'GetShardIterator':
    case 'GetRecords':
      // GetRecords carries only a shard iterator: the recorder must add the StreamArn it came from.
      return [request(`dynamodb:${action}`, str(params.StreamArn, `StreamArn of dynamodb:${action}`))];
    default:
      return [request(`dynamodb:${action}`, tableArn(params.TableName))];
  }
};

// Step Functions ----------------------------------------------------------------------------------

const states: Mapper = (action, params) => {
  switch (action) {
    case 'StartExecution':
    case 'StartSyncExecution':
    case 'DescribeStateMachine':
    case 'ListExecutions':
      return [request(`states:${action}`, str(params.stateMachineArn, 'stateMachineArn'))];
    case 'SendTaskSuccess':
    case 'SendTaskFailure':
    case 'SendTaskHeartbeat':
      // The Service Authorization Reference lists no resource type for these: only "*" applies.
      return [request(`states:${action}`, '*')];
    default:
      return [request(`states:${action}`, str(params.executionArn, 'executionArn'))];
  }
};

// S3 ------------------------------------------------------------------------------------------------

function objectArn(bucket: unknown, key: unknown): string {
  return `arn:${PARTITION}:s3:::${str(bucket, 'Bucket')}/${str(key, 'Key')}`;
}

function bucketArn(bucket: unknown): string {
  return `arn:${PARTITION}:s3:::${str(bucket, 'Bucket')}`;
}

/** An object action on a given version is authorized as its *Version* action. */
function objectAction(action: string, params: Params): string {
  const versioned: Record<string, string> = {
    GetObject: 'GetObjectVersion',
    DeleteObject: 'DeleteObjectVersion',
    GetObjectTagging: 'GetObjectVersionTagging',
    PutObjectTagging: 'PutObjectVersionTagging',
    DeleteObjectTagging: 'DeleteObjectVersionTagging',
  };
  return `s3:${params.VersionId !== undefined && versioned[action] ? versioned[action] : action}`;
}

/** `bucket/key[?versionId=v]` (URL-encoded) as CopySource carries it. */
function copySource(params: Params): IamRequest {
  const [path = '', query = ''] = decodeURIComponent(str(params.CopySource, 'CopySource')).replace(/^\//, '').split('?');
  const slash = path.indexOf('/');
  const versioned = /(^|&)versionId=/.test(query);
  return request(versioned ? 's3:GetObjectVersion' : 's3:GetObject', objectArn(path.slice(0, slash), path.slice(slash + 1)));
}

const s3: Mapper = (action, params) => {
  const prefix = params.prefix ?? params.Prefix;
  const listContext: IamRequest['context'] = typeof prefix === 'string' ? { 's3:prefix': prefix } : {};
  switch (action) {
    case 'HeadObject':
      return [request(objectAction('GetObject', params), objectArn(params.Bucket, params.Key))];
    case 'CreateMultipartUpload':
    case 'UploadPart':
    case 'CompleteMultipartUpload':
      return [request('s3:PutObject', objectArn(params.Bucket, params.Key))];
    case 'CopyObject':
      return [request('s3:PutObject', objectArn(params.Bucket, params.Key)), copySource(params)];
    case 'DeleteObjects':
      return list<Params>((params.Delete as Params | undefined)?.Objects).map((object) =>
        request(objectAction('DeleteObject', object), objectArn(params.Bucket, object.Key)),
      );
    case 'ListObjects':
    case 'ListObjectsV2':
    case 'HeadBucket':
      return [request('s3:ListBucket', bucketArn(params.Bucket), listContext)];
    case 'ListObjectVersions':
      return [request('s3:ListBucketVersions', bucketArn(params.Bucket), listContext)];
    default:
      return [request(objectAction(action, params), params.Key === undefined ? bucketArn(params.Bucket) : objectArn(params.Bucket, params.Key))];
  }
};

// The others ------------------------------------------------------------------------------------------

/**
 * A secret named rather than given by ARN gets the ARN Secrets Manager gives it; so does a partial
 * ARN (no random suffix, as `Secret.fromSecretNameV2` renders one): IAM judges the secret's full ARN.
 */
function secretArn(secretId: unknown): string {
  const id = str(secretId, 'SecretId');
  if (!id.startsWith('arn:')) return arn('secretsmanager', `secret:${id}-${SECRET_SUFFIX}`);
  return /:secret:.*-[A-Za-z0-9]{6}$/.test(id) ? id : `${id}-${SECRET_SUFFIX}`;
}

const secretsmanager: Mapper = (action, params) => [request(`secretsmanager:${action}`, secretArn(params.SecretId))];

function eventBusArn(bus: unknown): string {
  const name = typeof bus === 'string' && bus !== '' ? bus : 'default';
  return name.startsWith('arn:') ? name : arn('events', `event-bus/${name}`);
}

const events: Mapper = (action, params) => {
  if (action !== 'PutEvents') return [request(`events:${action}`, eventBusArn(params.EventBusName))];
  return list<Params>(params.Entries).map((entry) =>
    request('events:PutEvents', eventBusArn(entry.EventBusName), {
      ...(typeof entry.Source === 'string' ? { 'events:source': entry.Source } : {}),
      ...(typeof entry.DetailType === 'string' ? { 'events:detail-type': entry.DetailType } : {}),
    }),
  );
};

/** A function name, partial ARN or ARN, with its Qualifier, as Lambda authorizes it. */
function functionArn(params: Params): string {
  const name = str(params.FunctionName, 'FunctionName');
  const base = name.startsWith('arn:') ? name : name.includes(':function:') ? `arn:${PARTITION}:lambda:${REGION}:${name}` : arn('lambda', `function:${name}`);
  const qualified = base.split(':').length > 7;
  return typeof params.Qualifier === 'string' && !qualified ? `${base}:${params.Qualifier}` : base;
}

const lambda: Mapper = (action, params) => {
  const iamAction = ['Invoke', 'InvokeAsync', 'InvokeWithResponseStream'].includes(action) ? 'InvokeFunction' : action;
  return [request(`lambda:${iamAction}`, functionArn(params))];
};

function clusterArn(cluster: unknown): string {
  const name = typeof cluster === 'string' && cluster !== '' ? cluster : 'default';
  return name.startsWith('arn:') ? name : arn('ecs', `cluster/${name}`);
}

function taskDefinitionArn(taskDefinition: unknown): string {
  const id = str(taskDefinition, 'taskDefinition');
  if (id.startsWith('arn:')) return id;
  return arn('ecs', `task-definition/${id.includes(':') ? id : `${id}:${TASK_DEFINITION_REVISION}`}`);
}

/** The roles RunTask passes to ECS: the overrides', else the task definition's in the template. */
function rolesPassedBy(params: Params, taskDefinition: string, template?: CfnTemplate): string[] {
  const overrides = (params.overrides ?? {}) as Params;
  const family = taskDefinition.split('/').pop()!.split(':')[0];
  const resolved = template ? resolveTemplate(template) : undefined;
  const definition = Object.values(resolved?.Resources ?? {}).find(
    (r) => r.Type === 'AWS::ECS::TaskDefinition' && r.Properties?.Family === family,
  )?.Properties;
  return [overrides.taskRoleArn ?? definition?.TaskRoleArn, overrides.executionRoleArn ?? definition?.ExecutionRoleArn].filter(
    (role): role is string => typeof role === 'string',
  );
}

const ecs: Mapper = (action, params, template) => {
  const cluster = { 'ecs:cluster': clusterArn(params.cluster) };
  const clusterName = clusterArn(params.cluster).split('/').pop()!;
  const taskArn = (task: string) => (task.startsWith('arn:') ? task : arn('ecs', `task/${clusterName}/${task}`));
  switch (action) {
    case 'RunTask': {
      const definition = taskDefinitionArn(params.taskDefinition);
      return [
        request('ecs:RunTask', definition, cluster),
        ...rolesPassedBy(params, definition, template).map((role) => request('iam:PassRole', role, { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' })),
      ];
    }
    case 'StopTask':
      return [request('ecs:StopTask', taskArn(str(params.task, 'task')), cluster)];
    case 'DescribeTasks':
      return list<string>(params.tasks).map((task) => request('ecs:DescribeTasks', taskArn(task), cluster));
    default:
      throw new Error(`iamRequestOf: no mapping for ecs:${action}`);
  }
};

/** Not an API: a service's use of a role it is handed, recorded as { RoleArn, PassedToService }. */
const iam: Mapper = (action, params) => {
  if (action !== 'PassRole') throw new Error(`iamRequestOf: no mapping for iam:${action}`);
  return [request('iam:PassRole', str(params.RoleArn, 'RoleArn'), { 'iam:PassedToService': str(params.PassedToService, 'PassedToService') })];
};

/** https://sqs.<region>.amazonaws.com/<account>/<name> -> arn:aws:sqs:<region>:<account>:<name> */
function queueArn(params: Params): string {
  if (typeof params.QueueName === 'string') {
    return arn('sqs', params.QueueName, REGION, typeof params.QueueOwnerAWSAccountId === 'string' ? params.QueueOwnerAWSAccountId : ACCOUNT);
  }
  const url = new URL(str(params.QueueUrl, 'QueueUrl'));
  const [, account, name] = url.pathname.split('/');
  const region = /^sqs\.([^.]+)\./.exec(url.hostname)?.[1] ?? REGION;
  return arn('sqs', str(name, 'queue name in QueueUrl'), region, str(account, 'account in QueueUrl'));
}

const sqs: Mapper = (action, params) => [request(`sqs:${action.replace(/Batch$/, '')}`, queueArn(params))];

const sns: Mapper = (action, params) => {
  const iamAction = action === 'PublishBatch' ? 'Publish' : action;
  const topic = params.TopicArn ?? params.TargetArn ?? (params.PhoneNumber !== undefined ? '*' : undefined);
  return [request(`sns:${iamAction}`, str(topic, 'TopicArn'))];
};

/** Stream-level actions name the stream; group-level ones the group's ARN with ":*", as CloudFormation's Arn does. */
const logs: Mapper = (action, params) => {
  const group = params.logGroupName;
  if (action === 'CreateLogStream' || action === 'PutLogEvents') {
    return [request(`logs:${action}`, arn('logs', `log-group:${str(group, 'logGroupName')}:log-stream:${str(params.logStreamName, 'logStreamName')}`))];
  }
  return [request(`logs:${action}`, arn('logs', typeof group === 'string' ? `log-group:${group}:*` : 'log-group:*'))];
};

function keyArn(keyId: unknown): string {
  const id = str(keyId, 'KeyId');
  return id.startsWith('arn:') ? id : arn('kms', id.startsWith('alias/') ? id : `key/${id}`);
}

const kms: Mapper = (action, params) => [request(`kms:${action}`, keyArn(params.KeyId))];

const cloudwatch: Mapper = (action, params) => [
  request(`cloudwatch:${action}`, '*', typeof params.Namespace === 'string' ? { 'cloudwatch:namespace': params.Namespace } : {}),
];

const xray: Mapper = (action) => [request(`xray:${action}`, '*')];

const sts: Mapper = (action, params) => [request(`sts:${action}`, str(params.RoleArn, 'RoleArn'))];

/**
 * git over https to a CodeCommit repository (GitPull, GitPush): the repository named by its region
 * and name, in this account; a push carries the refs it updates as `codecommit:References`.
 */
const codecommit: Mapper = (action, params) => [
  request(
    `codecommit:${action}`,
    arn('codecommit', str(params.repositoryName, 'repositoryName'), typeof params.region === 'string' ? params.region : REGION),
    Array.isArray(params.references) ? { 'codecommit:References': params.references.map(String) } : {},
  ),
];

/**
 * A request to a REST API with IAM authorisation: `execute-api:Invoke` on the request itself,
 * `<api-id>/<stage>/<METHOD>/<path>` (API Gateway developer guide, "execute-api ARN format").
 */
const executeApi: Mapper = (action, params) => [
  request(`execute-api:${action}`, arn('execute-api', `${str(params.restApiId, 'restApiId')}/${str(params.stage, 'stage')}/${str(params.method, 'method')}${str(params.path, 'path')}`)),
];

/** The region a cross-region inference profile sends a call to in these checks: not the caller's, as Bedrock may choose. */
export const BEDROCK_DESTINATION_REGION = 'us-west-2';
/** The model the tests' application inference profiles are taken to be created from. */
export const BEDROCK_APPLICATION_PROFILE_MODEL = 'anthropic.claude-sonnet-4-5-20250929-v1:0';

/**
 * Bedrock's authorization of a model call (Bedrock user guide, "Prerequisites for inference profiles"): the
 * model or profile the caller names, and for a profile also the foundation model in the region it routes to,
 * with the profile in `bedrock:InferenceProfileArn`. `modelId` is what the CLI puts in the path.
 */
const bedrock: Mapper = (action, params) => {
  if (action === 'ListInferenceProfiles') return [request('bedrock:ListInferenceProfiles', '*')];
  const id = str(params.modelId ?? params.inferenceProfileIdentifier, 'modelId');
  const profile = /^[a-z]{2,6}(?:-[a-z]{2,4})?\.anthropic\./.test(id) ? arn('bedrock', `inference-profile/${id}`) : id.includes(':inference-profile/') ? id : undefined;
  if (action === 'GetInferenceProfile') return [request('bedrock:GetInferenceProfile', profile ?? id)];
  if (id.includes(':application-inference-profile/')) {
    // An application profile routes to the model it was created from (here: BEDROCK_APPLICATION_PROFILE_MODEL), through itself.
    return [
      request(`bedrock:${action}`, id),
      request(`bedrock:${action}`, `arn:${PARTITION}:bedrock:${BEDROCK_DESTINATION_REGION}::foundation-model/${BEDROCK_APPLICATION_PROFILE_MODEL}`, { 'bedrock:InferenceProfileArn': id }),
    ];
  }
  if (id.startsWith('arn:') && !profile) return [request(`bedrock:${action}`, id)];
  if (!profile) return [request(`bedrock:${action}`, `arn:${PARTITION}:bedrock:${REGION}::foundation-model/${id}`)];
  const base = profile.slice(profile.indexOf('/') + 1).replace(/^[a-z]{2,6}(?:-[a-z]{2,4})?\./, '');
  return [
    request(`bedrock:${action}`, profile),
    request(`bedrock:${action}`, `arn:${PARTITION}:bedrock:${BEDROCK_DESTINATION_REGION}::foundation-model/${base}`, { 'bedrock:InferenceProfileArn': profile }),
  ];
};

const MAPPERS: Record<string, Mapper> = {
  dynamodb, states, s3, secretsmanager, events, lambda, ecs, iam, sqs, sns, logs, kms, cloudwatch, xray, sts, bedrock, codecommit, 'execute-api': executeApi,
};

/**
 * The IAM authorization request(s) AWS makes for one call. The template (raw or resolved) is
 * needed only for ecs:RunTask without role overrides: the roles it passes are the task definition's.
 */
export function iamRequestOf(call: AwsCall, template?: CfnTemplate): IamRequest[] {
  const mapper = MAPPERS[call.service];
  if (!mapper) throw new Error(`iamRequestOf: no mapping for service ${call.service}`);
  return mapper(call.action, call.params, template);
}

// ---------------------------------------------------------------------------------------------
// Policies of a principal

function roleOf(template: CfnTemplate, principal: string) {
  const role = template.Resources[principal];
  if (role?.Type !== 'AWS::IAM::Role') throw new Error(`${principal} is not an AWS::IAM::Role of the template`);
  return role;
}

function awsManagedPolicy(policyArn: string): PolicyDocument {
  const prefix = `arn:${PARTITION}:iam::aws:policy/`;
  const document = policyArn.startsWith(prefix) ? AWS_MANAGED_POLICIES[policyArn.slice(prefix.length)] : undefined;
  if (!document) throw new Error(`policiesOf: no document for managed policy ${policyArn}; add AWS's published one`);
  return document;
}

/**
 * The identity policies of a role, resolved: its inline Policies, every AWS::IAM::Policy and
 * AWS::IAM::ManagedPolicy that names it in Roles, and the managed policies in its ManagedPolicyArns.
 */
export function policiesOf(template: CfnTemplate, principal: string): IdentityPolicy[] {
  roleOf(template, principal);
  const resolved = resolveTemplate(template);
  const resolver = templateResolver(template);
  const roleName = resolver.physicalName(principal);
  const props = resolved.Resources[principal]!.Properties ?? {};
  if (props.PermissionsBoundary !== undefined) throw new Error(`policiesOf: ${principal} has a permissions boundary, which is not modelled`);

  const inline = list<{ PolicyName: string; PolicyDocument: PolicyDocument }>(props.Policies).map((p) => ({
    name: `${principal}/${p.PolicyName}`,
    document: p.PolicyDocument,
  }));
  const attached = Object.entries(resolved.Resources)
    .filter(([, r]) => (r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy') && list(r.Properties?.Roles).includes(roleName))
    .map(([id, r]) => ({ name: id, document: r.Properties!.PolicyDocument as PolicyDocument }));
  const managed = list<string>(props.ManagedPolicyArns).map((policyArn) => {
    const own = Object.keys(resolved.Resources).find(
      (id) => resolved.Resources[id]!.Type === 'AWS::IAM::ManagedPolicy' && resolver.arnOf(id) === policyArn,
    );
    return own ? { name: own, document: resolved.Resources[own]!.Properties!.PolicyDocument as PolicyDocument } : { name: policyArn, document: awsManagedPolicy(policyArn) };
  });
  // A customer managed policy both attached by Roles and listed in ManagedPolicyArns counts once.
  const seen = new Set<string>();
  return [...inline, ...attached, ...managed].filter((p) => !seen.has(p.name) && seen.add(p.name));
}

// ---------------------------------------------------------------------------------------------
// Resource policies

/** The template's resource policy on a resource ARN (S3 bucket, SQS queue, SNS topic, secret, KMS key), if any. */
function resourcePolicyFor(template: CfnTemplate, resolved: CfnTemplate, resource: string): PolicyDocument | undefined {
  const resolver = templateResolver(template);
  const applies = (id: string): PolicyDocument | undefined => {
    const r = resolved.Resources[id]!;
    const p = r.Properties ?? {};
    switch (r.Type) {
      case 'AWS::S3::BucketPolicy': {
        const bucket = `arn:${PARTITION}:s3:::${String(p.Bucket)}`;
        return resource === bucket || resource.startsWith(`${bucket}/`) ? (p.PolicyDocument as PolicyDocument) : undefined;
      }
      case 'AWS::SQS::QueuePolicy':
        return list<string>(p.Queues).some((url) => queueArn({ QueueUrl: url }) === resource) ? (p.PolicyDocument as PolicyDocument) : undefined;
      case 'AWS::SNS::TopicPolicy':
        return list(p.Topics).includes(resource) ? (p.PolicyDocument as PolicyDocument) : undefined;
      case 'AWS::SecretsManager::ResourcePolicy':
        return p.SecretId === resource ? (p.ResourcePolicy as PolicyDocument) : undefined;
      case 'AWS::KMS::Key':
        return resolver.arnOf(id) === resource ? (p.KeyPolicy as PolicyDocument) : undefined;
      default:
        // Lambda::Permission grants services and accounts, never a same-account role: not modelled.
        return undefined;
    }
  };
  const statements = Object.keys(resolved.Resources)
    .map(applies)
    .filter((d): d is PolicyDocument => d !== undefined)
    .flatMap((d) => list<PolicyStatement>(d.Statement));
  return statements.length ? { Version: '2012-10-17', Statement: statements } : undefined;
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/** The context every signed request of a role session carries. */
function baseContext(roleArn: string, now: Date): IamRequest['context'] {
  return {
    'aws:SecureTransport': 'true',
    'aws:CurrentTime': now.toISOString(),
    'aws:EpochTime': String(Math.floor(now.getTime() / 1000)),
    'aws:PrincipalArn': roleArn,
    'aws:PrincipalAccount': ACCOUNT,
    'aws:RequestedRegion': REGION,
  };
}

function analysesOf(result: SuccessfulRunSimulationResults): RequestAnalysis[] {
  return result.resultType === 'single' ? [result.result.analysis] : result.results.map((r) => r.analysis);
}

function describeDenial(denial: RequestDenial): string {
  if (denial.denialType === 'Explicit') {
    const sid = denial.statementId ? ` (${denial.statementId})` : '';
    return `explicit Deny in the ${denial.policyType} policy${denial.policyIdentifier ? ` ${denial.policyIdentifier}` : ''}, statement ${denial.statementIndex}${sid}`;
  }
  return `no ${denial.policyType} policy statement allows it${denial.identifier ? ` (${denial.identifier})` : ''}`;
}

/** Statements that match the action and resource but not their condition: the likely cause of a denial. */
function conditionMisses(analysis: RequestAnalysis): string[] {
  return (analysis.identityAnalysis?.unmatchedStatements ?? [])
    .filter((s) => s.statement.isAllow() && s.actionMatch && s.resourceMatch && s.conditionMatch === 'NoMatch')
    .map((s) => `statement ${s.statement.index()} of ${s.policyId} matches but its condition does not`);
}

function reasonOf(result: SuccessfulRunSimulationResults, context: IamRequest['context']): string {
  const analyses = analysesOf(result);
  const causes = [...new Set(analyses.flatMap((a) => [...getDenialReasons(a).map(describeDenial), ...conditionMisses(a)]))];
  const keys = Object.entries(context).map(([k, v]) => `${k}=${list(v).join(',')}`);
  return `${result.overallResult}: ${causes.join('; ') || 'no statement allows it'}${keys.length ? ` [context: ${keys.join('; ')}]` : ''}`;
}

/** A statement of one principal's policy: an AWS managed policy is shared by roles, its use is not. */
function grantKey(principal: string, policy: string, statementIndex: number): string {
  return `${principal}|${policy}#${statementIndex}`;
}

function statementsOf(policy: IdentityPolicy): PolicyStatement[] {
  return list<PolicyStatement>(policy.document.Statement);
}

/** The (action, resource) pairs of every Allow statement that granted none of the allowed requests. */
function unusedGrantsOf(principal: string, policies: IdentityPolicy[], used: Set<string>): UnusedGrant[] {
  return policies.flatMap((policy) =>
    statementsOf(policy).flatMap((statement, i) => {
      if (statement.Effect !== 'Allow' || used.has(grantKey(principal, policy.name, i + 1))) return [];
      const actions = statement.Action !== undefined ? list<string>(statement.Action) : list<string>(statement.NotAction).map((a) => `NotAction ${a}`);
      const resources = statement.Resource !== undefined ? list<string>(statement.Resource) : list<string>(statement.NotResource).map((r) => `NotResource ${r}`);
      return actions.flatMap((action) => resources.map((resource) => ({ principal, policy: policy.name, action, resource })));
    }),
  );
}

/**
 * Evaluates every IAM request of the calls against the principal's identity policies (and the
 * resource's policy, where the template has one). Denied requests are returned with the reason;
 * an Allow statement is unused when the evaluator named it among the grants of no allowed request.
 */
export async function checkCalls(template: CfnTemplate, calls: AwsCall[], options: CheckOptions = {}): Promise<CallCheck> {
  const resolved = resolveTemplate(template);
  const resolver = templateResolver(template);
  const now = options.now ?? new Date();
  const policies = new Map<string, IdentityPolicy[]>();
  const policiesFor = (principal: string) => policies.get(principal) ?? policies.set(principal, policiesOf(template, principal)).get(principal)!;
  const used = new Set<string>();
  const denied: Denial[] = [];

  for (const call of calls) {
    const roleArn = resolver.arnOf(call.principal);
    const sessionArn = `arn:${PARTITION}:sts::${ACCOUNT}:assumed-role/${resolver.physicalName(call.principal)}/iam-check`;
    for (const { action, resource, context } of iamRequestOf(call, resolved)) {
      const deny = (reason: string) => denied.push({ principal: call.principal, action, resource, reason });
      const result = await runSimulation(
        {
          request: {
            principal: sessionArn,
            action,
            resource: { resource, accountId: ACCOUNT },
            contextVariables: { ...baseContext(roleArn, now), ...context },
          },
          identityPolicies: policiesFor(call.principal).map((p) => ({ name: p.name, policy: p.document })),
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: resourcePolicyFor(template, resolved, resource),
        },
        {},
      );
      if (result.resultType === 'error') {
        deny(`the evaluator rejected the request: ${result.errors.message} ${JSON.stringify(result.errors)}`);
      } else if (result.overallResult !== 'Allowed') {
        deny(reasonOf(result, context));
      } else {
        for (const grant of analysesOf(result).flatMap(getGrantReasons)) {
          if (grant.policyType === 'identity') used.add(grantKey(call.principal, grant.policyIdentifier, grant.statementIndex));
        }
      }
    }
  }

  const reportFor = options.reportUnusedFor ?? [...new Set(calls.map((c) => c.principal))];
  const unusedGrants = reportFor.flatMap((principal) => unusedGrantsOf(principal, policiesFor(principal), used));
  return { denied, unusedGrants };
}

// ---------------------------------------------------------------------------------------------
// Trust policies: who may assume each role

/** What uses a role in a template: the service that assumes it, and the source it names when it does. */
interface RoleUse {
  /** The using resource's logical id. */
  user: string;
  service: string;
  /** The context the service sends with sts:AssumeRole (aws:SourceAccount, aws:SourceArn where it is known). */
  context: IamRequest['context'];
}

/**
 * The resource types that hand a role to a service, the property naming the role, and the source
 * ARN the service names when it assumes the role (for Scheduler, the schedule's group).
 */
const ROLE_USERS: Record<string, { service: string; roles: (p: Params) => unknown[]; sourceArn?: (id: string, p: Params, resolver: ReturnType<typeof templateResolver>) => string }> = {
  'AWS::Lambda::Function': { service: 'lambda.amazonaws.com', roles: (p) => [p.Role], sourceArn: (id, _p, r) => r.arnOf(id) },
  'AWS::StepFunctions::StateMachine': { service: 'states.amazonaws.com', roles: (p) => [p.RoleArn], sourceArn: (id, _p, r) => r.arnOf(id) },
  'AWS::ECS::TaskDefinition': { service: 'ecs-tasks.amazonaws.com', roles: (p) => [p.TaskRoleArn, p.ExecutionRoleArn] },
  'AWS::Scheduler::Schedule': {
    service: 'scheduler.amazonaws.com',
    roles: (p) => [(p.Target as Params | undefined)?.RoleArn],
    sourceArn: (_id, p) => arn('scheduler', `schedule-group/${typeof p.GroupName === 'string' ? p.GroupName : 'default'}`),
  },
  'AWS::Events::Rule': { service: 'events.amazonaws.com', roles: (p) => list<Params>(p.Targets).map((t) => t.RoleArn), sourceArn: (id, _p, r) => r.arnOf(id) },
  'AWS::EC2::FlowLog': { service: 'vpc-flow-logs.amazonaws.com', roles: (p) => [p.DeliverLogsPermissionArn] },
  'AWS::ApiGateway::Account': { service: 'apigateway.amazonaws.com', roles: (p) => [p.CloudWatchRoleArn] },
};

/**
 * Services whose trust policy AWS asks to hold to this account and this source (the confused-deputy
 * conditions aws:SourceAccount and aws:SourceArn): Scheduler's "Set up the execution role", and Step
 * Functions' role for a state machine. A request lacking either key must be refused.
 */
export const SOURCE_CONDITIONED_SERVICES = ['scheduler.amazonaws.com', 'states.amazonaws.com'];

/** Another account, as a confused deputy's caller would come from. */
const FOREIGN_ACCOUNT = '210987654321';

/** Principals that must never assume a role they do not run: other services, people and roles, here and elsewhere. */
function strangers(service: string): string[] {
  const services = [...new Set([...Object.values(ROLE_USERS).map((u) => u.service), 'ec2.amazonaws.com', 'codebuild.amazonaws.com'])];
  return [
    ...services.filter((s) => s !== service),
    `arn:${PARTITION}:iam::${ACCOUNT}:root`,
    `arn:${PARTITION}:iam::${ACCOUNT}:role/Intruder`,
    `arn:${PARTITION}:iam::${FOREIGN_ACCOUNT}:root`,
    `arn:${PARTITION}:iam::${FOREIGN_ACCOUNT}:role/Intruder`,
  ];
}

export interface RoleTrust {
  role: string;
  /** The one service that assumes it, as the template's uses of it say; undefined when none or several do. */
  service?: string;
  /** What is wrong with who may assume it; empty when only that service may. */
  findings: string[];
}

/** The services that use each role of the template, by the resources that name it. */
function roleUses(template: CfnTemplate): Map<string, RoleUse[]> {
  const resolved = resolveTemplate(template);
  const resolver = templateResolver(template);
  const roles = Object.keys(template.Resources).filter((id) => template.Resources[id]!.Type === 'AWS::IAM::Role');
  const byArn = new Map(roles.map((id) => [resolver.arnOf(id), id]));
  const uses = new Map<string, RoleUse[]>(roles.map((id) => [id, []]));
  for (const [id, resource] of Object.entries(resolved.Resources)) {
    const user = ROLE_USERS[resource.Type];
    if (!user) continue;
    const props = resource.Properties ?? {};
    for (const roleArn of user.roles(props)) {
      const role = typeof roleArn === 'string' ? byArn.get(roleArn) : undefined;
      if (!role) continue;
      const sourceArn = user.sourceArn?.(id, props, resolver);
      uses.get(role)!.push({ user: id, service: user.service, context: { 'aws:SourceAccount': ACCOUNT, ...(sourceArn ? { 'aws:SourceArn': sourceArn } : {}) } });
    }
  }
  return uses;
}

async function mayAssume(
  roleArn: string,
  trust: PolicyDocument,
  principal: string,
  context: IamRequest['context'],
): Promise<boolean> {
  const isService = principal.endsWith('.amazonaws.com');
  const result = await runSimulation(
    {
      request: { principal, action: 'sts:AssumeRole', resource: { resource: roleArn, accountId: ACCOUNT }, contextVariables: { 'aws:SecureTransport': 'true', ...context } },
      // A person or role of either account holds sts:AssumeRole on everything: only the trust policy stands in the way.
      identityPolicies: isService ? [] : [{ name: 'assume-anything', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'sts:AssumeRole', Resource: '*' }] } }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: trust,
    },
    {},
  );
  if (result.resultType === 'error') throw new Error(`the evaluator rejected sts:AssumeRole of ${roleArn} by ${principal}: ${JSON.stringify(result.errors)}`);
  return result.overallResult === 'Allowed';
}

/** The trust statements that are not "Allow sts:AssumeRole to exactly this one service". */
function statementFindings(trust: PolicyDocument, service: string): string[] {
  return list<PolicyStatement>(trust.Statement).flatMap((s, i) => {
    if (s.Effect !== 'Allow') return [];
    const at = `statement ${i + 1}`;
    const principal = s.Principal as Record<string, unknown> | string | undefined;
    const findings: string[] = [];
    if (principal === '*' || (typeof principal === 'object' && list(principal.AWS).includes('*'))) findings.push(`${at} trusts every principal (*)`);
    const named = typeof principal === 'object' ? Object.entries(principal).flatMap(([kind, v]) => list<string>(v).map((p) => `${kind}:${p}`)) : [];
    const others = named.filter((p) => p !== `Service:${service}` && p !== 'AWS:*');
    if (others.length) findings.push(`${at} trusts ${others.join(', ')} besides ${service}`);
    const actions = s.Action !== undefined ? list<string>(s.Action) : list<string>(s.NotAction).map((a) => `NotAction ${a}`);
    const extra = actions.filter((a) => a !== 'sts:AssumeRole');
    if (extra.length) findings.push(`${at} allows ${extra.join(', ')}, not only sts:AssumeRole`);
    return findings;
  });
}

/**
 * Who may assume each role of the template, judged by the evaluator on the role's trust policy: the
 * one service that uses the role (a Lambda function's, a state machine's, a task definition's, a
 * schedule's, a rule's...) may, with the source it sends; every other service, this account's and
 * another account's people and roles may not; where AWS asks for them (SOURCE_CONDITIONED_SERVICES),
 * a request without aws:SourceAccount or aws:SourceArn, or from another account, is refused too.
 * A role nothing in the template uses, or that two services use, is a finding of its own.
 */
export async function checkTrustPolicies(template: CfnTemplate): Promise<RoleTrust[]> {
  const resolved = resolveTemplate(template);
  const resolver = templateResolver(template);
  const checks: RoleTrust[] = [];
  for (const [role, uses] of roleUses(template)) {
    const services = [...new Set(uses.map((u) => u.service))];
    const trust = resolved.Resources[role]!.Properties?.AssumeRolePolicyDocument as PolicyDocument | undefined;
    if (services.length !== 1 || !trust) {
      const why = !trust ? 'has no trust policy' : services.length ? `is used by several services (${services.join(', ')})` : 'is used by nothing in the template, so no service should assume it';
      checks.push({ role, findings: [why] });
      continue;
    }
    const [service] = services as [string];
    const roleArn = resolver.arnOf(role);
    const findings = statementFindings(trust, service);
    for (const use of uses) {
      if (!(await mayAssume(roleArn, trust, service, use.context))) findings.push(`${service} may not assume it for ${use.user} (context ${JSON.stringify(use.context)})`);
      if (SOURCE_CONDITIONED_SERVICES.includes(service)) {
        for (const key of ['aws:SourceAccount', 'aws:SourceArn']) {
          const { [key]: _dropped, ...without } = use.context;
          if (await mayAssume(roleArn, trust, service, without)) findings.push(`${service} may assume it without ${key}: the trust policy lacks that condition`);
        }
        const foreign = Object.fromEntries(Object.entries(use.context).map(([k, v]) => [k, list<string>(v).map((x) => x.replaceAll(ACCOUNT, FOREIGN_ACCOUNT))]));
        if (await mayAssume(roleArn, trust, service, foreign)) findings.push(`${service} may assume it for another account's source (a confused deputy)`);
      }
    }
    for (const stranger of strangers(service)) {
      const context: IamRequest['context'] = stranger.endsWith('.amazonaws.com') ? { 'aws:SourceAccount': ACCOUNT } : { 'aws:PrincipalAccount': stranger.split(':')[4]! };
      if (await mayAssume(roleArn, trust, stranger, context)) findings.push(`${stranger} may assume it`);
    }
    checks.push({ role, service, findings: [...new Set(findings)] });
  }
  return checks;
}
