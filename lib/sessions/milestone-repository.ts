import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { conditionalUpdate } from './conditional-update.js';
import { GetCommand, PutCommand, QueryCommand, UpdateCommand, paginateQuery, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { v4 as uuidv4 } from 'uuid';
import {
  LEASE_CONDITION,
  MILESTONE_INDEX,
  MILESTONE_SK,
  RECORD_PULL_REQUEST_CONDITION,
  RECORD_PULL_REQUEST_UPDATE,
  RELEASE_UPDATE,
  milestonePk,
  toMilestoneItem,
  toMilestoneRecord,
  type MilestonePullRequest,
  type MilestoneRecord,
} from './milestone-item.js';
import { milestoneTotalsSk, sumsOfTotalsItem, totalsPk } from './project-totals.js';
import { CREATE_CONDITION, toSessionSummary, type SessionSummary } from './session-item.js';
import { decodePageToken, encodePageToken } from './session-repository.js';
import type { UsageSums } from './usage-totals.js';

/** Why a milestone takes no task now; `reason` decides the HTTP status (404, 409) and the CLI's words. */
export class MilestoneUnavailableError extends Error {
  override readonly name = 'MilestoneUnavailableError';
  constructor(
    readonly milestoneId: string,
    readonly reason: 'not-found' | 'closed' | 'broken' | 'busy' | 'other-project',
    message: string,
  ) {
    super(message);
  }
}

export interface MilestoneView extends MilestoneRecord {
  /** A page of its tasks, oldest first (without their replies: `show` of a task has it); with `tasksAfter`, every task that started after it. */
  tasks: SessionSummary[];
  /** The next page of tasks, or null when `tasks` holds the last. */
  nextToken: string | null;
  /** Its tasks' totals, from its totals item: every task, whatever page `tasks` is. */
  totals: UsageSums;
}

/** Which tasks a view lists: a page (`limit`, `nextToken`), or every task started after an instant. */
export interface MilestoneTasksQuery {
  limit?: number;
  nextToken?: string | null;
  /** Every task that started after this `startedAt` (all pages): a report's total as of its task (lib/github/session-report.ts). */
  tasksAfter?: string;
}

/** Tasks a view lists at once, as `list` shows a page of sessions. */
const TASKS_PAGE = 50;

/** Milestone items in the one table; tasks are the session items carrying its id. */
export class MilestoneRepository {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async open(projectId: string, now = new Date(), milestoneId = uuidv4()): Promise<MilestoneRecord> {
    const item = toMilestoneItem(milestoneId, projectId, now);
    await this.client.send(new PutCommand({ TableName: this.tableName, Item: item, ConditionExpression: CREATE_CONDITION }));
    return toMilestoneRecord(item);
  }

  async get(milestoneId: string): Promise<MilestoneRecord | undefined> {
    const { Item } = await this.client.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: milestonePk(milestoneId), sk: MILESTONE_SK }, ConsistentRead: true }),
    );
    return Item ? toMilestoneRecord(Item) : undefined;
  }

  /**
   * The milestone with its totals (one item by key) and a page of its tasks, oldest first: what it
   * reads does not grow with the number of tasks (docs/ARCHITECTURE.md#project-totals).
   */
  async view(milestoneId: string, query: MilestoneTasksQuery = {}): Promise<MilestoneView | undefined> {
    const milestone = await this.get(milestoneId);
    if (!milestone) return undefined;
    const [totals, page] = await Promise.all([this.totals(milestone.projectId, milestoneId), this.tasks(milestoneId, query)]);
    return { ...milestone, ...page, totals };
  }

  /**
   * A milestone's totals (its tasks in `projectId`): one item by key, whatever the number of tasks,
   * moved by the transactions that write its tasks (docs/ARCHITECTURE.md#project-totals).
   */
  async totals(projectId: string, milestoneId: string): Promise<UsageSums> {
    const { Item } = await this.client.send(new GetCommand({
      TableName: this.tableName, Key: { pk: totalsPk(projectId), sk: milestoneTotalsSk(milestoneId) }, ConsistentRead: true,
    }));
    return sumsOfTotalsItem(Item);
  }

  private async tasks(milestoneId: string, query: MilestoneTasksQuery): Promise<{ tasks: SessionSummary[]; nextToken: string | null }> {
    const after = query.tasksAfter !== undefined;
    const request = {
      TableName: this.tableName,
      IndexName: MILESTONE_INDEX,
      KeyConditionExpression: `milestoneId = :m${after ? ' AND startedAt > :after' : ''}`,
      ExpressionAttributeValues: { ':m': milestoneId, ...(after ? { ':after': query.tasksAfter } : {}) },
    };
    if (after) {
      const tasks: SessionSummary[] = [];
      for await (const page of paginateQuery({ client: this.client }, request)) tasks.push(...(page.Items ?? []).map(toSessionSummary));
      return { tasks, nextToken: null };
    }
    const { Items = [], LastEvaluatedKey } = await this.client.send(new QueryCommand({
      ...request, Limit: query.limit ?? TASKS_PAGE, ExclusiveStartKey: query.nextToken ? decodePageToken(query.nextToken, { milestoneId }) : undefined,
    }));
    return { tasks: Items.map(toSessionSummary), nextToken: LastEvaluatedKey ? encodePageToken(LastEvaluatedKey) : null };
  }

  /**
   * Refuses a task the workflow would refuse, with words a user can act on. The workflow's
   * conditional lease stays the guarantee; this only spares a doomed execution.
   */
  async assertStartable(milestoneId: string, projectId?: string): Promise<MilestoneRecord> {
    const milestone = await this.get(milestoneId);
    if (!milestone) throw new MilestoneUnavailableError(milestoneId, 'not-found', `milestone ${milestoneId} does not exist`);
    if (projectId !== undefined && milestone.projectId !== projectId) {
      throw new MilestoneUnavailableError(
        milestoneId, 'other-project', `milestone ${milestoneId} belongs to project ${milestone.projectId}, not ${projectId}`,
      );
    }
    if (milestone.status === 'CLOSED') {
      throw new MilestoneUnavailableError(milestoneId, 'closed', `milestone ${milestoneId} is closed and takes no more tasks; open a new one`);
    }
    if (milestone.status === 'BROKEN') {
      throw new MilestoneUnavailableError(
        milestoneId, 'broken', `milestone ${milestoneId} is broken (${milestone.brokenReason ?? 'its transcript cannot be resumed'}); open a new one`,
      );
    }
    if (milestone.leaseSessionId) {
      throw new MilestoneUnavailableError(
        milestoneId, 'busy', `milestone ${milestoneId} is busy: task ${milestone.leaseSessionId} is running; one task runs at a time`,
      );
    }
    return milestone;
  }

  /**
   * Closes an OPEN milestone of `projectId` with no task running; a closed one stays as it is.
   * Another project's is not found: the condition keeps the write to the project the caller named.
   */
  async close(milestoneId: string, projectId: string, now = new Date()): Promise<MilestoneRecord> {
    try {
      const { Attributes } = await this.client.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { pk: milestonePk(milestoneId), sk: MILESTONE_SK },
          UpdateExpression: 'SET #status = :closed, closedAt = :now',
          ConditionExpression: '#status <> :closed AND attribute_exists(pk) AND projectId = :projectId AND attribute_not_exists(leaseExecutionArn)',
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: { ':closed': 'CLOSED', ':now': now.toISOString(), ':projectId': projectId },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return toMilestoneRecord(Attributes!);
    } catch (err) {
      if (!(err instanceof ConditionalCheckFailedException)) throw err;
      const milestone = await this.get(milestoneId);
      if (!milestone || milestone.projectId !== projectId) {
        throw new MilestoneUnavailableError(milestoneId, 'not-found', `milestone ${milestoneId} does not exist in project ${projectId}`);
      }
      if (milestone.status === 'CLOSED') return milestone;
      throw new MilestoneUnavailableError(
        milestoneId, 'busy', `milestone ${milestoneId} has a task running (${milestone.leaseSessionId}); close it when that task has ended`,
      );
    }
  }

  /**
   * Binds the pull request of the milestone's branch to the milestone (the GitHub reporter, once it
   * opened or found it), so a comment on that pull request, and only that one, continues it. False
   * when the milestone is not `projectId`'s or already has another pull request: the first stays.
   */
  async recordPullRequest(milestoneId: string, projectId: string, pull: MilestonePullRequest): Promise<boolean> {
    return conditionalUpdate(this.client, {
      TableName: this.tableName,
      Key: { pk: milestonePk(milestoneId), sk: MILESTONE_SK },
      UpdateExpression: RECORD_PULL_REQUEST_UPDATE,
      ConditionExpression: RECORD_PULL_REQUEST_CONDITION,
      ExpressionAttributeValues: { ':number': pull.number, ':url': pull.url, ':projectId': projectId },
    });
  }

  /** Frees the lease an execution holds (the reaper's part); false when it held none. */
  async releaseLease(milestoneId: string, executionArn: string, now = new Date()): Promise<boolean> {
    return conditionalUpdate(this.client, {
      TableName: this.tableName,
      Key: { pk: milestonePk(milestoneId), sk: MILESTONE_SK },
      UpdateExpression: RELEASE_UPDATE,
      ConditionExpression: LEASE_CONDITION,
      ExpressionAttributeValues: { ':executionArn': executionArn, ':updatedAt': now.toISOString() },
    });
  }
}
