import { conditionalTransaction, conditionalUpdate } from './conditional-update.js';
import { PROJECT_REGISTRY_PK, projectRegistryUpdate } from './project-registry.js';
import {
  TOTALS_ALL_SK, addSums, dayOfTotalsSk, daySkBounds, sumsOfTotalsItem, totalsDaySk, totalsDelta, totalsKeysOf, totalsLabel, totalsPk, totalsSks,
  type AttemptSpend, type TotalsDelta, type TotalsKeys,
} from './project-totals.js';
import {
  GetCommand,
  QueryCommand,
  paginateQuery,
  type DynamoDBDocumentClient,
} from '@aws-sdk/lib-dynamodb';
import type { SessionStart } from './execution-input.js';
import {
  CLOSE_FAILED_NAMES,
  CLOSE_FAILED_UPDATE,
  CLOSE_CONDITION,
  CLOSE_NAMES,
  CLOSE_UPDATE,
  CREATE_CONDITION,
  PROJECT_INDEX,
  RUNNING_INDEX,
  RUNNING_PROJECT,
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
  toSessionSummary,
  type FinalStatus,
  type RunOutcome,
  type SessionRecord,
  type SessionStatus,
  type SessionSummary,
} from './session-item.js';
import { addSession, emptySums, roundCost, type UsageSums } from './usage-totals.js';
import { addUsd, roundUsd } from './usage.js';

/**
 * A session id taken by another execution. Named without "Error", as the SDK's ExecutionAlreadyExists
 * is: the name is what the workflow catches and what a user sees as the execution's error.
 */
export class SessionAlreadyExists extends Error {
  override readonly name = 'SessionAlreadyExists';
  constructor(readonly sessionId: string) {
    super(`A session with id ${sessionId} exists already; it was left as it was and Claude did not run.`);
  }
}

export interface SessionPage {
  /** What the project index holds: each session without its reply (`get` has it). */
  items: SessionSummary[];
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
  /** When its item expires once closed (SessionStart.retainUntil); null: never. Read by key only (not in the project index). */
  retainUntil?: number | null;
}

const EXECUTION_PROJECTION = 'sessionId, projectId, milestoneId, startedAt, executionArn, #status';

function toSessionExecution(item: Record<string, unknown>): SessionExecution {
  return {
    sessionId: String(item.sessionId), projectId: String(item.projectId), startedAt: String(item.startedAt),
    executionArn: String(item.executionArn), milestoneId: typeof item.milestoneId === 'string' ? item.milestoneId : null,
    status: item.status as SessionStatus,
    ...('retainUntil' in item ? { retainUntil: typeof item.retainUntil === 'number' ? item.retainUntil : null } : {}),
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
   * SessionAlreadyExists. The same execution's second put (a retried call whose answer
   * was lost) finds its own item and succeeds without writing: same execution ARN, and
   * started no earlier than that execution (`executionStartTime`; an ARN is reused only
   * by the local runtime, for a later execution of the same name).
   */
  async create(start: SessionStart, executionStartTime?: string): Promise<void> {
    const written = await conditionalTransaction(this.client, {
      TransactItems: [
        { Put: { TableName: this.tableName, Item: toSessionItem(start), ConditionExpression: CREATE_CONDITION } },
        ...this.totalsUpdates(totalsKeysOf(start), totalsDelta({ created: true })),
        { Update: projectRegistryUpdate(this.tableName, start) },
      ],
    });
    if (written) return;
    const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { pk: sessionPk(start.sessionId), sk: SESSION_SK }, ConsistentRead: true }));
    const ours = Item?.executionArn === start.executionArn && (!executionStartTime || String(Item?.startedAt) >= executionStartTime);
    if (!ours) throw new SessionAlreadyExists(start.sessionId);
  }

  /**
   * Records a run's outcome, counting `attemptSpend` (the last attempt's own spend; the earlier
   * attempts were counted as they were recorded) into the project's totals in the same write;
   * false when the session was no longer RUNNING (nothing changed).
   */
  async close(sessionId: string, outcome: RunOutcome, attemptSpend: AttemptSpend = outcome): Promise<boolean> {
    const session = await this.executionOf(sessionId);
    if (!session) return false;
    return conditionalTransaction(this.client, {
      TransactItems: [
        { Update: this.sessionUpdate(sessionId, CLOSE_UPDATE, CLOSE_NAMES, closeValues(outcome, session.retainUntil ?? null), CLOSE_CONDITION) },
        ...this.totalsUpdates(totalsKeysOf(session), totalsDelta({ from: 'RUNNING', to: outcome.status, spend: attemptSpend })),
      ],
    });
  }

  /**
   * Closes without usage (the Catch branch, the reaper); false when already closed. With
   * `executionArn`, only a session that execution created: a duplicate start of the same
   * session id fails on its own and must not close the session another execution runs.
   * The status moves in the project's totals in the same write; the spend on the session was
   * counted when it was recorded.
   */
  async closeWithError(
    sessionId: string,
    status: FinalStatus,
    error: string,
    cause: string,
    options: { endedAt?: Date; executionArn?: string } = {},
  ): Promise<boolean> {
    const session = await this.executionOf(sessionId);
    if (!session || session.status !== 'RUNNING') return false;
    const values: Record<string, unknown> = {
      ':running': 'RUNNING', ':status': status, ':endedAt': (options.endedAt ?? new Date()).toISOString(), ':error': error, ':cause': cause,
      ':expiresAt': session.retainUntil ?? null,
    };
    let condition = RUNNING_CONDITION;
    if (options.executionArn) {
      condition += ' AND executionArn = :executionArn';
      values[':executionArn'] = options.executionArn;
    }
    return conditionalTransaction(this.client, {
      TransactItems: [
        { Update: this.sessionUpdate(sessionId, CLOSE_FAILED_UPDATE, CLOSE_FAILED_NAMES, values, condition) },
        ...this.totalsUpdates(totalsKeysOf(session), totalsDelta({ from: 'RUNNING', to: status })),
      ],
    });
  }

  /** Claims an attempt of a session for one runner invocation (CLAIM_ATTEMPT_UPDATE); false when another invocation holds it. */
  async claimAttempt(start: Pick<SessionStart, 'sessionId' | 'executionArn'>, attempt: number, invocation: string): Promise<boolean> {
    return this.updateSession(start.sessionId, CLAIM_ATTEMPT_UPDATE, CLAIM_ATTEMPT_NAMES, {
      ':claim': { attempt, invocation, at: new Date().toISOString() }, ':attempt': attempt, ':invocation': invocation,
      ':executionArn': start.executionArn, ':running': 'RUNNING',
    }, CLAIM_ATTEMPT_CONDITION);
  }

  /**
   * What a run spent until its execution ended under it (RECORD_STOPPED_UPDATE): the session's spend
   * SET, and `attemptSpend` (this attempt's own) added to the project's totals in the same write,
   * once per session (`spendRecordedAfterStop`), RUNNING or closed. False when the session is
   * another execution's or COMPLETED; a repeat finds it recorded and changes nothing.
   */
  async recordStoppedRun(
    start: Pick<SessionStart, 'sessionId' | 'executionArn' | 'projectId' | 'startedAt' | 'milestoneId'>,
    outcome: RunOutcome,
    attemptSpend: AttemptSpend = outcome,
  ): Promise<boolean> {
    const written = await conditionalTransaction(this.client, {
      TransactItems: [
        {
          Update: this.sessionUpdate(start.sessionId, RECORD_STOPPED_UPDATE, RECORD_STOPPED_NAMES, {
            ':completed': 'COMPLETED', ':usage': outcome.usage, ':modelUsage': outcome.modelUsage, ':numTurns': outcome.numTurns, ':totalCostUsd': outcome.totalCostUsd,
            ':durationMs': outcome.durationMs, ':claudeSessionId': outcome.claudeSessionId, ':provider': outcome.provider, ':model': outcome.model,
            ':attempts': outcome.attempts, ':true': true, ':executionArn': start.executionArn,
          }, RECORD_STOPPED_CONDITION),
        },
        ...this.totalsUpdates(totalsKeysOf(start), totalsDelta({ spend: attemptSpend })),
      ],
    });
    if (written) return true;
    const { Item } = await this.client.send(new GetCommand({
      TableName: this.tableName, Key: { pk: sessionPk(start.sessionId), sk: SESSION_SK }, ConsistentRead: true, ProjectionExpression: 'executionArn, spendRecordedAfterStop',
    }));
    return Item?.executionArn === start.executionArn && Item?.spendRecordedAfterStop === true;
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
        ExclusiveStartKey: options.nextToken ? decodePageToken(options.nextToken, { projectId }) : undefined,
      }),
    );
    return { items: Items.map(toSessionSummary), nextToken: LastEvaluatedKey ? encodePageToken(LastEvaluatedKey) : null };
  }

  /** Every session of a project, newest first, following pages. */
  async *allByProject(projectId: string, status?: SessionStatus): AsyncGenerator<SessionSummary> {
    let nextToken: string | null = null;
    do {
      const page: SessionPage = await this.listByProject(projectId, { status, limit: 100, nextToken });
      yield* page.items;
      nextToken = page.nextToken;
    } while (nextToken);
  }

  /**
   * A project's RUNNING sessions, from the running index (RUNNING_INDEX): what it reads is what is
   * running, whatever the history. The status filter drops an entry a close has not removed yet
   * (an execution of a definition from before the index, docs/ARCHITECTURE.md#running-sessions).
   */
  async listRunning(projectId: string): Promise<SessionSummary[]> {
    const running: SessionSummary[] = [];
    for await (const page of paginateQuery({ client: this.client }, this.runningQuery(projectId))) {
      running.push(...(page.Items ?? []).filter((item) => item.status === 'RUNNING').map(toSessionSummary));
    }
    return running;
  }

  /**
   * What the running index holds of a project, with the execution that runs each (a session record
   * does not carry its execution ARN): what the sweeper asks DescribeExecution about. Includes an
   * entry whose session a close of an older definition left in the index (status not RUNNING):
   * the sweeper takes it out (`clearRunningEntry`).
   */
  async runningExecutions(projectId: string): Promise<SessionExecution[]> {
    const running: SessionExecution[] = [];
    const query = this.runningQuery(projectId);
    const pages = paginateQuery({ client: this.client }, {
      ...query, ProjectionExpression: EXECUTION_PROJECTION, ExpressionAttributeNames: { ...query.ExpressionAttributeNames, '#status': 'status' },
    });
    for await (const page of pages) running.push(...(page.Items ?? []).map(toSessionExecution));
    return running;
  }

  /** Takes a closed session out of the running index; false when it is RUNNING or out already. */
  async clearRunningEntry(sessionId: string): Promise<boolean> {
    return conditionalUpdate(this.client, {
      TableName: this.tableName,
      Key: { pk: sessionPk(sessionId), sk: SESSION_SK },
      UpdateExpression: `REMOVE ${RUNNING_PROJECT}`,
      ConditionExpression: `attribute_exists(${RUNNING_PROJECT}) AND #status <> :running`,
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':running': 'RUNNING' },
    });
  }

  private runningQuery(projectId: string) {
    return {
      TableName: this.tableName,
      IndexName: RUNNING_INDEX,
      KeyConditionExpression: '#running = :projectId',
      ExpressionAttributeNames: { '#running': RUNNING_PROJECT } as Record<string, string>,
      ExpressionAttributeValues: { ':projectId': projectId },
    };
  }

  /** One session's status and execution, read consistently. */
  async executionOf(sessionId: string): Promise<SessionExecution | undefined> {
    const { Item } = await this.client.send(new GetCommand({
      TableName: this.tableName, Key: { pk: sessionPk(sessionId), sk: SESSION_SK }, ConsistentRead: true,
      ProjectionExpression: `${EXECUTION_PROJECTION}, retainUntil`, ExpressionAttributeNames: { '#status': 'status' },
    }));
    if (Item) Item.retainUntil ??= null;
    return Item ? toSessionExecution(Item) : undefined;
  }

  /**
   * A project's totals: all time from its `ALL` item, or a range of UTC days (`from`, `to`, both
   * YYYY-MM-DD) summed from its day items; `daily` holds the days of the range, or the last 31
   * days with sessions. Reads 1 + at most the range's days of small items, whatever the history.
   */
  async usageTotals(projectId: string, range: { from?: string; to?: string } = {}): Promise<UsageTotals> {
    const pk = totalsPk(projectId);
    const ranged = Boolean(range.from || range.to);
    const [low, high] = daySkBounds(range.from ?? '0000-00-00', range.to ?? '9999-99-99');
    const { Items = [] } = await this.client.send(new QueryCommand({
      TableName: this.tableName,
      KeyConditionExpression: 'pk = :pk AND sk BETWEEN :low AND :high',
      ExpressionAttributeValues: { ':pk': pk, ':low': low, ':high': high },
      ScanIndexForward: false,
      // A range names its days (a month is 31 at most); all time shows the latest month of them.
      ...(ranged ? {} : { Limit: 31 }),
    }));
    const daily = Items.map((item) => {
      const sums = sumsOfTotalsItem(item);
      return { day: dayOfTotalsSk(String(item.sk)), sessions: sums.sessions, inputTokens: sums.usage.inputTokens, outputTokens: sums.usage.outputTokens, totalCostUsd: sums.totalCostUsd, sums };
    }).reverse();
    let totals: UsageSums;
    if (ranged) {
      totals = emptySums();
      for (const d of daily) addSums(totals, d.sums);
    } else {
      const { Item } = await this.client.send(new GetCommand({ TableName: this.tableName, Key: { pk, sk: TOTALS_ALL_SK }, ConsistentRead: true }));
      totals = sumsOfTotalsItem(Item);
    }
    return { projectId, ...roundCost(totals), daily: daily.map(({ sums: _sums, ...day }) => day) };
  }

  /**
   * The same figures derived from the session items (every one of the project's): what the totals are
   * checked against. `items` holds them by totals item: `ALL`, each day's, each milestone's.
   */
  async derivedUsageTotals(projectId: string): Promise<UsageTotals & { days: Map<string, UsageSums>; items: Map<string, UsageSums> }> {
    const totals = emptySums();
    const days = new Map<string, UsageSums>();
    const items = new Map<string, UsageSums>([[TOTALS_ALL_SK, totals]]);
    const into = (sk: string) => items.get(sk) ?? items.set(sk, emptySums()).get(sk)!;
    for await (const s of this.allByProject(projectId)) {
      for (const sk of totalsSks(totalsKeysOf(s))) addSession(into(sk), s);
      const day = s.startedAt.slice(0, 10);
      days.set(day, into(totalsDaySk(s.startedAt)));
    }
    const daily = [...days.entries()].sort(([a], [b]) => a.localeCompare(b))
      .map(([day, d]) => ({ day, sessions: d.sessions, inputTokens: d.usage.inputTokens, outputTokens: d.usage.outputTokens, totalCostUsd: roundUsd(d.totalCostUsd) }));
    return { projectId, ...roundCost({ ...totals }), daily, days, items };
  }

  /**
   * The project's totals items set against the same figures derived from its session items: each
   * figure that differs, as `<ALL, day or milestone> <figure>: kept <n>, derived <n>` (empty when
   * lossless). Reads the whole history: a check to run now and then, never on a start.
   */
  async totalsDrift(projectId: string): Promise<string[]> {
    return (await this.totalsCheck(projectId)).drift;
  }

  /** `totalsDrift`, with the number of sessions the derived figures come from. */
  async totalsCheck(projectId: string): Promise<{ sessions: number; drift: string[] }> {
    const derived = await this.derivedUsageTotals(projectId);
    const pk = totalsPk(projectId);
    const kept = new Map<string, UsageSums>();
    for await (const page of paginateQuery({ client: this.client }, {
      TableName: this.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': pk }, ConsistentRead: true,
    })) {
      for (const item of page.Items ?? []) kept.set(String(item.sk), sumsOfTotalsItem(item));
    }
    const drift: string[] = [];
    const compare = (label: string, a: UsageSums | undefined, b: UsageSums | undefined) => {
      const flat = (x: UsageSums | undefined) => flatSums(x ?? emptySums());
      const ka = flat(a);
      const kb = flat(b);
      for (const figure of new Set([...Object.keys(ka), ...Object.keys(kb)])) {
        if ((ka[figure] ?? 0) !== (kb[figure] ?? 0)) drift.push(`${label} ${figure}: kept ${ka[figure] ?? 0}, derived ${kb[figure] ?? 0}`);
      }
    };
    const sks = [...new Set([...derived.items.keys(), ...kept.keys()])];
    for (const sk of [TOTALS_ALL_SK, ...sks.filter((k) => k !== TOTALS_ALL_SK).sort()]) compare(totalsLabel(sk), kept.get(sk), derived.items.get(sk));
    return { sessions: derived.sessions, drift };
  }

  /**
   * The cost of a project's sessions started since an instant (the monthly budget's figure, `since`
   * a UTC midnight): the day items from that day on, at most 31 for a month.
   */
  async costSince(projectId: string, since: string): Promise<number> {
    let total = 0;
    const pages = paginateQuery(
      { client: this.client },
      {
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk AND sk BETWEEN :low AND :high',
        ExpressionAttributeValues: { ':pk': totalsPk(projectId), ':low': totalsDaySk(since), ':high': daySkBounds('', '9999-99-99')[1] },
        ProjectionExpression: 'totalCostUsd',
        ConsistentRead: true,
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) total = addUsd(total, typeof item.totalCostUsd === 'number' ? item.totalCostUsd : 0);
    }
    return total;
  }

  /** Project ids with at least one session: the registry's items (one per project), never a scan of the sessions. */
  async projectIds(): Promise<string[]> {
    const ids: string[] = [];
    const pages = paginateQuery({ client: this.client }, {
      TableName: this.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': PROJECT_REGISTRY_PK }, ProjectionExpression: 'projectId',
    });
    for await (const page of pages) for (const item of page.Items ?? []) ids.push(String(item.projectId));
    return ids.sort();
  }

  private async updateSession(
    sessionId: string,
    update: string,
    names: Record<string, string>,
    values: Record<string, unknown>,
    condition = RUNNING_CONDITION,
  ): Promise<boolean> {
    return conditionalUpdate(this.client, this.sessionUpdate(sessionId, update, names, values, condition));
  }

  private sessionUpdate(sessionId: string, update: string, names: Record<string, string>, values: Record<string, unknown>, condition: string) {
    return {
      TableName: this.tableName,
      Key: { pk: sessionPk(sessionId), sk: SESSION_SK },
      UpdateExpression: update,
      ConditionExpression: condition,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    };
  }

  /** The same ADD on the project's all-time item, its day's and its milestone's. */
  private totalsUpdates(keys: TotalsKeys, delta: TotalsDelta) {
    return totalsSks(keys).map((sk) => ({
      Update: { TableName: this.tableName, Key: { pk: keys.pk, sk }, UpdateExpression: delta.update, ExpressionAttributeNames: delta.names, ExpressionAttributeValues: delta.values },
    }));
  }
}

/** Every figure of a sum by name, costs rounded as `usage` shows them, zeros left out. */
function flatSums(s: UsageSums): Record<string, number> {
  const flat: Record<string, number> = {
    sessions: s.sessions, numTurns: s.numTurns, totalCostUsd: roundUsd(s.totalCostUsd), durationMs: s.durationMs, ...s.usage,
  };
  for (const [status, n] of Object.entries(s.byStatus)) flat[`status ${status}`] = n;
  for (const [model, u] of Object.entries(s.byModel)) {
    for (const [field, n] of Object.entries(u)) flat[`model ${model} ${field}`] = field === 'costUsd' ? roundUsd(n) : n;
  }
  return Object.fromEntries(Object.entries(flat).filter(([, n]) => n !== 0));
}

/** A page's LastEvaluatedKey as the opaque `nextToken` the API hands out (sessions, a milestone's tasks). */
export function encodePageToken(key: Record<string, unknown>): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * The start key a `nextToken` holds. `of` names the query's partition (`{projectId}`, `{milestoneId}`):
 * a token of another project's or milestone's pages is refused here, naming the field, where
 * DynamoDB would answer a ValidationException the API could only call an internal error.
 */
export function decodePageToken(token: string, of: Record<string, string>): Record<string, unknown> {
  try {
    const key = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as unknown;
    if (key && typeof key === 'object' && !Array.isArray(key) && Object.entries(of).every(([k, v]) => (key as Record<string, unknown>)[k] === v)) {
      return key as Record<string, unknown>;
    }
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
