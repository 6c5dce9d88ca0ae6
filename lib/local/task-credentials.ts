import { createHash, randomBytes } from 'node:crypto';
import { sessionPk } from '../sessions/session-item.js';
import { totalsPk } from '../sessions/project-totals.js';
import { transcriptKey } from '../claude/transcript-store.js';
import type { ScopedRequest } from './loopback-guard.js';

// A local Fargate task is a process of its own, and where the engine is not root the CLI it
// starts runs as the same user and can read its environment. So each task gets a credential of
// its own, good for what its task role grants on ECS and only for its own session (narrower than
// the role, which names no session), and revoked when the task ends: never the engine's own
// token, which reads and writes every session (issue 22).

/** Who a task's credential speaks for: its session, as the workflow's overrides gave it. */
export interface TaskGrant {
  sessionId: string;
  projectId: string;
  executionArn: string;
  /** The one task token it may answer. */
  taskToken: string;
  /** A milestone task's milestone, whose transcript it reads and writes. */
  milestoneId?: string;
}

/** The credentials the local Fargate tasks hold, by session token; the local stores ask it who a token is. */
export class LocalTaskCredentials {
  /** By the token's SHA-256, so a lookup takes no time that tells how much of a guess was right. */
  private readonly grants = new Map<string, TaskGrant>();

  /** A fresh session token for one task, good until revoked. */
  issue(grant: TaskGrant): string {
    const token = randomBytes(32).toString('base64url');
    this.grants.set(digest(token), grant);
    return token;
  }

  revoke(token: string): void {
    this.grants.delete(digest(token));
  }

  grantOf(token: string): TaskGrant | undefined {
    return this.grants.get(digest(token));
  }
}

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** What the task role may do in DynamoDB (cdk grantRunner: UpdateItem, GetItem), on its own session and its project's totals only. */
const TASK_DYNAMODB_ACTIONS = new Set(['GetItem', 'UpdateItem', 'TransactWriteItems']);

interface DynamoKey { pk?: { S?: string } }

/** Why the DynamoDB request of a task holding `grant` is refused, or undefined. */
export function dynamoDbRefusal(grant: TaskGrant, tableName: string, request: ScopedRequest): string | undefined {
  const action = String(request.headers['x-amz-target'] ?? '').replace(/^DynamoDB_\d+\./, '');
  const denied = (what: string) => `the task of session ${grant.sessionId} is not authorized to perform dynamodb:${action} ${what}`;
  if (!TASK_DYNAMODB_ACTIONS.has(action)) return denied('(its role grants GetItem and UpdateItem only)');
  let body: { TableName?: string; Key?: DynamoKey; TransactItems?: Record<string, { TableName?: string; Key?: DynamoKey } | undefined>[] };
  try {
    body = JSON.parse(request.body.toString('utf8') || '{}');
  } catch {
    return denied('with a body that is not JSON');
  }
  const own = new Set([sessionPk(grant.sessionId), totalsPk(grant.projectId)]);
  // In a transaction, updates only (a Put or Delete is another action): a missing Update names no key and is refused.
  const targets = action === 'TransactWriteItems' ? (body.TransactItems ?? []).map((item) => item.Update) : [body];
  for (const target of targets) {
    const pk = target?.Key?.pk?.S;
    if (target?.TableName !== tableName || pk === undefined || !own.has(pk)) {
      return denied(`on ${pk ?? 'a write other than an update'}: only its own session's item and its project's totals`);
    }
  }
  return undefined;
}

/** Why the S3 request of a task holding `grant` is refused, or undefined: its milestone's transcript and its own patch only. */
export function s3Refusal(grant: TaskGrant, bucket: string, request: ScopedRequest): string | undefined {
  const url = new URL(request.url, 'http://local');
  const key = decodeURIComponent(url.pathname).replace(/^\//, '');
  const allowed = [
    ...(grant.milestoneId ? [`${bucket}/${transcriptKey(grant.milestoneId)}`] : []),
    `${bucket}/workspaces/${grant.sessionId}.patch`,
  ];
  const objectCall = ['GET', 'HEAD', 'PUT'].includes(request.method) && !url.searchParams.has('tagging') && !url.searchParams.has('acl');
  if (objectCall && allowed.includes(key)) return undefined;
  return `the task of session ${grant.sessionId} is not authorized to ${request.method} ${url.pathname}${url.search}: only ${allowed.join(' and ')}`;
}

/** Why the Step Functions request of a task holding `grant` is refused, or undefined: its own token and its own execution only. */
export function stepFunctionsRefusal(grant: TaskGrant, request: ScopedRequest): string | undefined {
  const action = String(request.headers['x-amz-target'] ?? '').replace(/^AWSStepFunctions\./, '');
  let body: { taskToken?: string; executionArn?: string };
  try {
    body = JSON.parse(request.body.toString('utf8') || '{}');
  } catch {
    return `the task of session ${grant.sessionId} sent a body that is not JSON`;
  }
  if (action === 'DescribeExecution') {
    return body.executionArn === grant.executionArn ? undefined : `the task of session ${grant.sessionId} may describe its own execution only`;
  }
  if (['SendTaskSuccess', 'SendTaskFailure', 'SendTaskHeartbeat'].includes(action)) {
    return body.taskToken === grant.taskToken ? undefined : `the task of session ${grant.sessionId} may answer its own task token only`;
  }
  return `the task of session ${grant.sessionId} is not authorized to perform states:${action}`;
}

/** The local git token minter's ARN: what a local Fargate task is told as GIT_TOKEN_MINTER_ARN. */
export const LOCAL_GIT_TOKEN_MINTER_ARN = 'arn:aws:lambda:us-east-1:000000000000:function:claude-sessions-git-token-minter-local';

/** Lambda's Invoke path (REST), whose function is the name or ARN, URL-encoded. */
const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/?]+)\/invocations(?:\?|$)/;

/** The function a request invokes (Lambda's Invoke), or undefined for any other request. */
export function invokedFunction(request: Pick<ScopedRequest, 'method' | 'url'>): string | undefined {
  const match = request.method === 'POST' ? INVOKE_PATH.exec(request.url) : null;
  return match ? decodeURIComponent(match[1]!) : undefined;
}

/** Why the Lambda request of a task holding `grant` is refused, or undefined: as its role on ECS, it may invoke the git token minter only. */
export function lambdaRefusal(grant: TaskGrant, request: ScopedRequest): string | undefined {
  const invoked = invokedFunction(request);
  if (invoked === LOCAL_GIT_TOKEN_MINTER_ARN) return undefined;
  return `the task of session ${grant.sessionId} is not authorized to perform lambda:InvokeFunction on ${invoked ?? request.url}: only the git token minter`;
}
