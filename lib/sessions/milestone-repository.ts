import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { conditionalUpdate } from './conditional-update.js';
import { GetCommand, PutCommand, UpdateCommand, paginateQuery, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
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
import { CREATE_CONDITION, toSessionRecord, type SessionRecord } from './session-item.js';
import { sumUsage, type UsageSums } from './usage-totals.js';

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
  /** Its tasks, oldest first. */
  tasks: SessionRecord[];
  totals: UsageSums;
}

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

  /** The milestone with its tasks (oldest first) and their summed usage. */
  async view(milestoneId: string): Promise<MilestoneView | undefined> {
    const milestone = await this.get(milestoneId);
    if (!milestone) return undefined;
    const tasks: SessionRecord[] = [];
    const pages = paginateQuery(
      { client: this.client },
      { TableName: this.tableName, IndexName: MILESTONE_INDEX, KeyConditionExpression: 'milestoneId = :m', ExpressionAttributeValues: { ':m': milestoneId } },
    );
    for await (const page of pages) tasks.push(...(page.Items ?? []).map(toSessionRecord));
    return { ...milestone, tasks, totals: sumUsage(tasks) };
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
