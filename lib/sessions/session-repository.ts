import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { conditionalUpdate } from './conditional-update.js';
import {
  GetCommand,
  PutCommand,
  QueryCommand,
  paginateQuery,
  paginateScan,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { SessionStart } from './execution-input.js';
import {
  CLOSE_FAILED_NAMES,
  CLOSE_FAILED_UPDATE,
  CLOSE_NAMES,
  CLOSE_UPDATE,
  CREATE_CONDITION,
  PROJECT_INDEX,
  CLAIM_ATTEMPT_CONDITION,
  CLAIM_ATTEMPT_NAMES,
  CLAIM_ATTEMPT_UPDATE,
  RECORD_STOPPED_CONDITION,
  RECORD_STOPPED_NAMES,
  RECORD_STOPPED_UPDATE,
  RUNNING_CONDITION,
  SESSION_SK,
  closeValues,
  sessionPk,
  toSessionItem,
  toSessionRecord,
  type FinalStatus,
  type RunOutcome,
  type SessionRecord,
  type SessionStatus,
} from './session-item.js';
import { addSession, emptySums, roundCost, type UsageSums } from './usage-totals.js';
import { addUsd } from './usage.js';

/** A session id taken by another execution; the name is the error the workflow catches (SessionAlreadyExists). */
export class SessionExistsError extends Error {
  override readonly name = 'SessionAlreadyExists';
  constructor(readonly sessionId: string) {
    super(`A session with id ${sessionId} exists already; it was left as it was and Claude did not run.`);
  }
}

export interface SessionPage {
  items: SessionRecord[];
  nextToken: string | null;
}

/** A session's status and the execution that runs or ran it (what the sweeper needs of it). */
export interface SessionExecution {
  sessionId: string;
  projectId: string;
  milestoneId: string | null;
  startedAt: string;
  executionArn: string;
  status: SessionStatus;
}

const EXECUTION_PROJECTION = 'sessionId, projectId, milestoneId, startedAt, executionArn, #status';

function toSessionExecution(item: Record<string, unknown>): SessionExecution {
  return {
    sessionId: String(item.sessionId), projectId: String(item.projectId), startedAt: String(item.startedAt),
    executionArn: String(item.executionArn), milestoneId: typeof item.milestoneId === 'string' ? item.milestoneId : null,
    status: item.status as SessionStatus,
  };
}

export interface UsageTotals extends UsageSums {
  projectId: string;
  /** The same figures per UTC day the sessions started, oldest first. */
  daily: DailyUsage[];
}

export interface DailyUsage {
  day: string;
  sessions: number;
  inputTokens: number;
  outputTokens: number;
  totalCostUsd: number;
}

/** Sessions in the one table. Every write out of RUNNING is conditional on RUNNING. */
export class SessionRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  /**
   * Puts the session RUNNING, once: a session id taken by another execution throws
   * SessionExistsError. The same execution's second put (a retried call whose answer
   * was lost) finds its own item and succeeds without writing: same execution ARN, and
   * started no earlier than that execution (`executionStartTime`; an ARN is reused only
   * by the local runtime, for a later execution of the same name).
   */
  async create(start: SessionStart, executionStartTime?: string): Promise<void> {
    try {
      await this.client.send(
        new PutCommand({ TableName: this.tableName, Item: toSessionItem(start), ConditionExpression: CREATE_CONDITION }),
      );
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { pk: sessionPk(start.sessionId), sk: SESSION_SK }, ConsistentRead: true }));
      const ours = Item?.executionArn === start.executionArn && (!executionStartTime || String(Item?.startedAt) >= executionStartTime);
      if (!ours) throw new SessionExistsError(start.sessionId);
    }
  }

  /** Records a run's outcome; false when the session was no longer RUNNING (nothing changed). */
  async close(sessionId: string, outcome: RunOutcome): Promise<boolean> {
    return this.updateSession(sessionId, CLOSE_UPDATE, CLOSE_NAMES, closeValues(outcome));
  }

  /**
   * Closes without usage (the Catch branch, the reaper); false when already closed. With
   * `executionArn`, only a session that execution created: a duplicate start of the same
   * session id fails on its own and must not close the session another execution runs.
   */
  async closeWithError(
    sessionId: string,
    status: FinalStatus,
    error: string,
    cause: string,
    options: { endedAt?: Date; executionArn?: string } = {},
  ): Promise<boolean> {
    const values: Record<string, unknown> = {
      ':running': 'RUNNING', ':status': status, ':endedAt': (options.endedAt ?? new Date()).toISOString(), ':error': error, ':cause': cause,
    };
    let condition = RUNNING_CONDITION;
    if (options.executionArn) {
      condition += ' AND executionArn = :executionArn';
      values[':executionArn'] = options.executionArn;
    }
    return this.updateSession(sessionId, CLOSE_FAILED_UPDATE, CLOSE_FAILED_NAMES, values, condition);
  }

  /** Claims an attempt of a session for one runner invocation (CLAIM_ATTEMPT_UPDATE); false when another invocation holds it. */
  async claimAttempt(start: Pick<SessionStart, 'sessionId' | 'executionArn'>, attempt: number, invocation: string): Promise<boolean> {
    return this.updateSession(start.sessionId, CLAIM_ATTEMPT_UPDATE, CLAIM_ATTEMPT_NAMES, {
      ':claim': { attempt, invocation, at: new Date().toISOString() }, ':attempt': attempt, ':invocation': invocation,
      ':executionArn': start.executionArn, ':running': 'RUNNING',
    }, CLAIM_ATTEMPT_CONDITION);
  }

  /** What a run spent until its execution ended under it (RECORD_STOPPED_UPDATE); false when the session is another's or COMPLETED. */
  async recordStoppedRun(start: Pick<SessionStart, 'sessionId' | 'executionArn'>, outcome: RunOutcome): Promise<boolean> {
    return this.updateSession(start.sessionId, RECORD_STOPPED_UPDATE, RECORD_STOPPED_NAMES, {
      ':completed': 'COMPLETED', ':usage': outcome.usage, ':modelUsage': outcome.modelUsage, ':numTurns': outcome.numTurns, ':totalCostUsd': outcome.totalCostUsd,
      ':durationMs': outcome.durationMs, ':claudeSessionId': outcome.claudeSessionId, ':provider': outcome.provider, ':model': outcome.model,
      ':attempts': outcome.attempts, ':true': true, ':executionArn': start.executionArn,
    }, RECORD_STOPPED_CONDITION);
  }

  async get(sessionId: string): Promise<SessionRecord | undefined> {
    const { Item } = await this.client.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: sessionPk(sessionId), sk: SESSION_SK }, ConsistentRead: true }),
    );
    return Item ? toSessionRecord(Item) : undefined;
  }

  /** A project's sessions, newest first, one page at a time. */
  async listByProject(
    projectId: string,
    options: { status?: SessionStatus; limit?: number; nextToken?: string | null } = {},
  ): Promise<SessionPage> {
    const { Items = [], LastEvaluatedKey } = await this.client.send(
      new QueryCommand({
        TableName: this.tableName,
        IndexName: PROJECT_INDEX,
        KeyConditionExpression: 'projectId = :projectId',
        ...(options.status
          ? { FilterExpression: '#status = :status', ExpressionAttributeNames: { '#status': 'status' } }
          : {}),
        ExpressionAttributeValues: { ':projectId': projectId, ...(options.status ? { ':status': options.status } : {}) },
        ScanIndexForward: false,
        Limit: options.limit ?? 50,
        ExclusiveStartKey: options.nextToken ? decodeToken(options.nextToken) : undefined,
      }),
    );
    return { items: Items.map(toSessionRecord), nextToken: LastEvaluatedKey ? encodeToken(LastEvaluatedKey) : null };
  }

  /** Every session of a project, newest first, following pages. */
  async *allByProject(projectId: string, status?: SessionStatus): AsyncGenerator<SessionRecord> {
    let nextToken: string | null = null;
    do {
      const page: SessionPage = await this.listByProject(projectId, { status, limit: 100, nextToken });
      yield* page.items;
      nextToken = page.nextToken;
    } while (nextToken);
  }

  async listRunning(projectId: string): Promise<SessionRecord[]> {
    const running: SessionRecord[] = [];
    for await (const session of this.allByProject(projectId, 'RUNNING')) running.push(session);
    return running;
  }

  /**
   * A project's RUNNING sessions with the execution that runs each (a session record does not
   * carry its execution ARN): what the sweeper asks DescribeExecution about.
   */
  async runningExecutions(projectId: string): Promise<SessionExecution[]> {
    const running: SessionExecution[] = [];
    const pages = paginateQuery(
      { client: this.client },
      {
        TableName: this.tableName,
        IndexName: PROJECT_INDEX,
        KeyConditionExpression: 'projectId = :projectId',
        FilterExpression: '#status = :running',
        ProjectionExpression: EXECUTION_PROJECTION,
        ExpressionAttributeNames: { '#status': 'status' },
        ExpressionAttributeValues: { ':projectId': projectId, ':running': 'RUNNING' },
      },
    );
    for await (const page of pages) running.push(...(page.Items ?? []).map(toSessionExecution));
    return running;
  }

  /** One session's status and execution, read consistently. */
  async executionOf(sessionId: string): Promise<SessionExecution | undefined> {
    const { Item } = await this.client.send(new GetCommand({
      TableName: this.tableName, Key: { pk: sessionPk(sessionId), sk: SESSION_SK }, ConsistentRead: true,
      ProjectionExpression: EXECUTION_PROJECTION, ExpressionAttributeNames: { '#status': 'status' },
    }));
    return Item ? toSessionExecution(Item) : undefined;
  }

  /** Totals derived from the session items, never kept as counters (docs/ARCHITECTURE.md#data-model). */
  async usageTotals(projectId: string): Promise<UsageTotals> {
    const totals = emptySums();
    const days = new Map<string, DailyUsage>();
    for await (const s of this.allByProject(projectId)) {
      addSession(totals, s);
      const day = s.startedAt.slice(0, 10);
      const d = days.get(day) ?? { day, sessions: 0, inputTokens: 0, outputTokens: 0, totalCostUsd: 0 };
      d.sessions += 1;
      d.inputTokens += s.usage.inputTokens;
      d.outputTokens += s.usage.outputTokens;
      d.totalCostUsd = addUsd(d.totalCostUsd, s.totalCostUsd);
      days.set(day, d);
    }
    const daily = [...days.values()].sort((a, b) => a.day.localeCompare(b.day));
    return { projectId, ...roundCost(totals), daily };
  }

  /** The cost recorded on a project's sessions started since an instant (the monthly budget's figure). */
  async costSince(projectId: string, since: string): Promise<number> {
    let total = 0;
    const pages = paginateQuery(
      { client: this.client },
      {
        TableName: this.tableName,
        IndexName: PROJECT_INDEX,
        KeyConditionExpression: 'projectId = :projectId AND startedAt >= :since',
        ExpressionAttributeValues: { ':projectId': projectId, ':since': since },
        ProjectionExpression: 'totalCostUsd',
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) total = addUsd(total, typeof item.totalCostUsd === 'number' ? item.totalCostUsd : 0);
    }
    return total;
  }

  /** Project ids with at least one session (a scan: for the local CLI and small tables). */
  async projectIds(): Promise<string[]> {
    const ids = new Set<string>();
    const pages = paginateScan({ client: this.client }, { TableName: this.tableName, IndexName: PROJECT_INDEX, ProjectionExpression: 'projectId' });
    for await (const page of pages) for (const item of page.Items ?? []) ids.add(String(item.projectId));
    return [...ids].sort();
  }

  private async updateSession(
    sessionId: string,
    update: string,
    names: Record<string, string>,
    values: Record<string, unknown>,
    condition = RUNNING_CONDITION,
  ): Promise<boolean> {
    return conditionalUpdate(this.client, {
      TableName: this.tableName,
      Key: { pk: sessionPk(sessionId), sk: SESSION_SK },
      UpdateExpression: update,
      ConditionExpression: condition,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    });
  }
}

function encodeToken(key: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

function decodeToken(token: string): Record<string, unknown> {
  try {
    const key = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (key && typeof key === 'object' && !Array.isArray(key)) return key as Record<string, unknown>;
  } catch {
    // fall through to the error below
  }
  throw new InvalidNextTokenError();
}

export class InvalidNextTokenError extends Error {
  override readonly name = 'InvalidNextTokenError';
  constructor() {
    super('nextToken is not a token this API returned');
  }
}
