import { conditionalUpdate } from './conditional-update.js';
import { GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * Per-project concurrency: one item per project holds the ids of its running sessions as a
 * string set. ADD and DELETE of one id are idempotent, so a retried write can neither take
 * two slots nor free someone else's, and the count is the set's size, never a counter.
 */
export const SLOTS_SK = 'SLOTS';

export function slotsPk(projectId: string): string {
  return `PROJECT#${projectId}`;
}

/** AcquireSlot: room under the project's own limit if it has one, else under the stack's. */
export const ACQUIRE_SLOT_CONDITION =
  'attribute_not_exists(running) OR contains(running, :sessionId) OR ' +
  '(attribute_not_exists(maxConcurrentSessions) AND size(running) < :limit) OR size(running) < maxConcurrentSessions';
export const ACQUIRE_SLOT_UPDATE = 'ADD running :session';
export const RELEASE_SLOT_UPDATE = 'DELETE running :session';
export const RELEASE_SLOT_CONDITION = 'contains(running, :sessionId)';

export class ProjectAtCapacityError extends Error {
  override readonly name = 'ProjectAtCapacityError';
  constructor(
    readonly projectId: string,
    readonly limit: number,
    readonly running: string[],
  ) {
    super(`project ${projectId} already runs ${running.length} session(s), its limit (maxConcurrentSessions ${limit}); try again when one ends`);
  }
}

export class ProjectSlots {
  constructor(
    private readonly client: DynamoDBDocumentClient,
    private readonly tableName: string,
  ) {}

  async get(projectId: string): Promise<{ running: string[]; maxConcurrentSessions: number | null }> {
    const { Item } = await this.client.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: slotsPk(projectId), sk: SLOTS_SK }, ConsistentRead: true }),
    );
    return {
      running: Item?.running ? [...(Item.running as Set<string>)].sort() : [],
      maxConcurrentSessions: typeof Item?.maxConcurrentSessions === 'number' ? Item.maxConcurrentSessions : null,
    };
  }

  /** The project's own limit (`project limit`, or the item written on AWS); null: none. */
  async ownLimit(projectId: string): Promise<number | null> {
    const { Item } = await this.client.send(
      new GetCommand({
        TableName: this.tableName, Key: { pk: slotsPk(projectId), sk: SLOTS_SK }, ConsistentRead: true,
        ProjectionExpression: 'maxConcurrentSessions',
      }),
    );
    return typeof Item?.maxConcurrentSessions === 'number' ? Item.maxConcurrentSessions : null;
  }

  /**
   * Refuses a start the workflow would refuse, before any execution (the API's 429): the
   * project's own limit, else the stack's (`stackLimit`; undefined: none).
   */
  async assertCapacity(projectId: string, stackLimit: number | undefined): Promise<void> {
    const { running, maxConcurrentSessions } = await this.get(projectId);
    const limit = maxConcurrentSessions ?? stackLimit;
    if (limit !== undefined && running.length >= limit) throw new ProjectAtCapacityError(projectId, limit, running);
  }

  /** A project's own limit, over the stack's (null: the stack's again). */
  async setLimit(projectId: string, limit: number | null): Promise<void> {
    await this.client.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { pk: slotsPk(projectId), sk: SLOTS_SK },
        UpdateExpression: limit === null ? 'REMOVE maxConcurrentSessions' : 'SET maxConcurrentSessions = :limit',
        ...(limit === null ? {} : { ExpressionAttributeValues: { ':limit': limit } }),
      }),
    );
  }

  /** Frees a session's slot; false when it held none (already freed, or never taken). */
  async release(projectId: string, sessionId: string): Promise<boolean> {
    return conditionalUpdate(this.client, {
      TableName: this.tableName,
      Key: { pk: slotsPk(projectId), sk: SLOTS_SK },
      UpdateExpression: RELEASE_SLOT_UPDATE,
      ConditionExpression: RELEASE_SLOT_CONDITION,
      ExpressionAttributeValues: { ':session': new Set([sessionId]), ':sessionId': sessionId },
    });
  }
}
