import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  PutItemCommand,
  ResourceInUseException,
  paginateScan,
  waitUntilTableExists,
  waitUntilTableNotExists,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { PROJECT_REGISTRY_PK, projectRegistryUpdate } from '../sessions/project-registry.js';
import { SESSION_SK } from '../sessions/session-item.js';
import type { AwsCredentialIdentity } from '@smithy/types';
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { admitOwnClientsOnly, refuseAsAwsJson } from './loopback-guard.js';
import { withLocalTransactions } from './local-transactions.js';
import { dynamoDbRefusal, type LocalTaskCredentials } from './task-credentials.js';
import { LOCAL_TABLE_NAME, type WorkflowDefinition } from './workflow-definition.js';

const require = createRequire(import.meta.url);
const dynalite = require('dynalite') as (options: { path?: string; createTableMs?: number }) => Server;

interface IndexDescription {
  IndexName?: string;
  Projection?: { ProjectionType?: string; NonKeyAttributes?: string[] };
}

/** An index by its name and what it projects: the template's and the table's compare equal when they hold the same. */
function indexShape(index: IndexDescription): string {
  const projection = index.Projection ?? {};
  return JSON.stringify([index.IndexName, projection.ProjectionType ?? 'ALL', [...(projection.NonKeyAttributes ?? [])].sort()]);
}

/**
 * DynamoDB on 127.0.0.1: dynalite, LevelDB on disk (or memory for tests). It answers only this
 * object's clients: their session token is fresh for each start, and no other process has it.
 */
export class LocalDynamoDb {
  readonly client: DynamoDBClient;
  readonly documentClient: DynamoDBDocumentClient;
  private constructor(
    private readonly server: Server,
    readonly endpoint: string,
    readonly tableName: string,
    /** What this store's clients sign with; dynalite checks no signature, so the session token is what admits them. */
    readonly credentials: AwsCredentialIdentity,
  ) {
    this.client = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials, maxAttempts: 3 });
    this.documentClient = DynamoDBDocumentClient.from(this.client, {
      marshallOptions: { removeUndefinedValues: true },
    });
  }

  /** Starts dynalite and creates the table from the synthesized definition if it is missing. */
  /**
   * @param options.sessionToken what admits a client to everything (the runtime's own, in-process); @default a fresh one
   * @param options.tasks the local Fargate tasks' own credentials, each admitted to its own session's items only
   */
  static async start(options: { path?: string; table: WorkflowDefinition['table']; tableName?: string; sessionToken?: string; tasks?: LocalTaskCredentials }): Promise<LocalDynamoDb> {
    const credentials = { accessKeyId: 'local', secretAccessKey: 'local', sessionToken: options.sessionToken ?? randomBytes(32).toString('base64url') };
    const tableName = options.tableName ?? LOCAL_TABLE_NAME;
    const tasks = options.tasks;
    const server = admitOwnClientsOnly(withLocalTransactions(dynalite({ path: options.path, createTableMs: 0 }), credentials), {
      sessionToken: credentials.sessionToken,
      foreign: 'AccessDeniedException',
      // As DynamoDB answers a token it did not issue.
      stranger: { status: 400, code: 'com.amazon.coral.service#UnrecognizedClientException' },
      refuse: refuseAsAwsJson,
      scoped: tasks && {
        readsBody: true,
        scopeOf: (token) => {
          const grant = tasks.grantOf(token);
          return grant && ((request) => dynamoDbRefusal(grant, tableName, request));
        },
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    const db = new LocalDynamoDb(server, `http://127.0.0.1:${port}`, tableName, credentials);
    try {
      await db.ensureTable(options.table);
    } catch (err) {
      await db.close();
      throw err;
    }
    return db;
  }

  private async ensureTable(table: WorkflowDefinition['table']): Promise<void> {
    let items: Record<string, AttributeValue>[] = [];
    try {
      const { Table } = await this.client.send(new DescribeTableCommand({ TableName: this.tableName }));
      const has = new Set((Table?.GlobalSecondaryIndexes ?? []).map(indexShape));
      const wanted = (table.GlobalSecondaryIndexes ?? []) as IndexDescription[];
      if (wanted.every((i) => has.has(indexShape(i)))) return;
      // State from an older version lacks an index or holds it with other attributes, and dynalite
      // can neither add nor change one: the table is made again from the template with every item it held.
      items = await this.scanAll();
      await this.client.send(new DeleteTableCommand({ TableName: this.tableName }));
      await waitUntilTableNotExists({ client: this.client, maxWaitTime: 30, minDelay: 0.05, maxDelay: 0.2 }, { TableName: this.tableName });
    } catch (err) {
      if ((err as Error).name !== 'ResourceNotFoundException') throw err;
    }
    try {
      await this.client.send(
        new CreateTableCommand({
          TableName: this.tableName,
          BillingMode: 'PAY_PER_REQUEST',
          ...(table as Omit<ConstructorParameters<typeof CreateTableCommand>[0], 'TableName'>),
        }),
      );
    } catch (err) {
      if (!(err instanceof ResourceInUseException)) throw err;
    }
    // dynalite answers CreateTable with the table still CREATING: reads of a new table (or
    // its index) fail with "Requested resource not found" until it is ACTIVE.
    await waitUntilTableExists({ client: this.client, maxWaitTime: 30, minDelay: 0.05, maxDelay: 0.2 }, { TableName: this.tableName });
    for (const item of items) await this.client.send(new PutItemCommand({ TableName: this.tableName, Item: item }));
    await this.registerProjects(items);
  }

  /**
   * State from before the project registry lists its projects by their sessions: each gets its
   * registry item as its first session would have written it (project-registry.ts).
   */
  private async registerProjects(items: Record<string, AttributeValue>[]): Promise<void> {
    const registered = new Set(items.filter((i) => i.pk?.S === PROJECT_REGISTRY_PK).map((i) => i.projectId?.S));
    const first = new Map<string, string>();
    for (const item of items) {
      const projectId = item.projectId?.S;
      const startedAt = item.startedAt?.S;
      if (item.sk?.S !== SESSION_SK || !projectId || !startedAt || registered.has(projectId)) continue;
      if (!first.has(projectId) || startedAt < first.get(projectId)!) first.set(projectId, startedAt);
    }
    for (const [projectId, startedAt] of first) {
      const update = projectRegistryUpdate(this.tableName, { projectId, startedAt });
      await this.documentClient.send(new UpdateCommand(update));
    }
  }

  private async scanAll(): Promise<Record<string, AttributeValue>[]> {
    const items: Record<string, AttributeValue>[] = [];
    for await (const page of paginateScan({ client: this.client }, { TableName: this.tableName })) items.push(...(page.Items ?? []));
    return items;
  }

  private itemsRead: number | undefined;

  /**
   * What `fn` read through this store's clients, in items (a Query's Count, a GetItem's item): the
   * figure the bench's scale section and the flat-read tests compare across history sizes. One
   * count at a time: reads of anything else running meanwhile are counted too.
   */
  async countItemsRead<T>(fn: () => Promise<T>): Promise<{ value: T; items: number }> {
    if (this.itemsRead === undefined) {
      this.client.middlewareStack.add((next) => async (args) => {
        const answer = await next(args);
        const output = answer.output as { Count?: number; Item?: unknown };
        this.itemsRead! += typeof output.Count === 'number' ? output.Count : output.Item ? 1 : 0;
        return answer;
      }, { step: 'initialize', name: 'countItemsRead' });
    }
    this.itemsRead = 0;
    const value = await fn();
    return { value, items: this.itemsRead };
  }

  async close(): Promise<void> {
    this.documentClient.destroy();
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
