import {
  DeleteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  type AttributeValue,
  type TransactWriteItem,
} from '@aws-sdk/client-dynamodb';
import type { AwsCredentialIdentity } from '@smithy/types';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// dynalite has no TransactWriteItems. The session close and the project totals it counts are one
// transaction on AWS (docs/ARCHITECTURE.md#project-totals), so the local store answers it too: one
// transaction at a time, every other request held while it runs, each write applied with its own
// condition and, when one is refused, the items the others wrote put back as they were. Nothing else reads
// or writes meanwhile, so from outside it is all or nothing, as on AWS. A process killed in the
// middle of one can leave it half applied: local state only, and `totals check` finds it.

const TRANSACT_TARGET = 'DynamoDB_20120810.TransactWriteItems';
const BYPASS_HEADER = 'x-claude-sessions-transaction';
const MAX_ITEMS = 100;

/** Adds TransactWriteItems to a dynalite server; call before the server listens, with the credentials its clients hold. */
export function withLocalTransactions(server: Server, credentials: AwsCredentialIdentity): Server {
  const listeners = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  const bypass = randomBytes(24).toString('base64url');
  const lock = new ReadWriteLock();
  let client: DynamoDBClient | undefined;
  const inner = () => {
    if (client) return client;
    const { port } = server.address() as AddressInfo;
    client = new DynamoDBClient({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', credentials, maxAttempts: 1 });
    client.middlewareStack.add((next) => (args) => {
      (args.request as { headers: Record<string, string> }).headers[BYPASS_HEADER] = bypass;
      return next(args);
    }, { step: 'build', name: 'localTransactionBypass' });
    return client;
  };
  const pass = (req: IncomingMessage, res: ServerResponse) => {
    for (const listener of listeners) listener.call(server, req, res);
  };
  server.on('close', () => client?.destroy());
  return server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers[BYPASS_HEADER] === bypass) return pass(req, res);
    if (req.headers['x-amz-target'] !== TRANSACT_TARGET) {
      void lock.shared(() => new Promise<void>((resolve) => {
        res.once('close', resolve);
        pass(req, res);
      }));
      return;
    }
    void readBody(req).then((body) => lock.exclusive(() => transact(inner(), body)))
      .then((answer) => reply(res, answer.status, answer.body), (err: Error) => reply(res, 500, { __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: err.message }));
  });
}

interface Answer { status: number; body: Record<string, unknown> }

async function transact(client: DynamoDBClient, body: string): Promise<Answer> {
  const request = JSON.parse(body) as { TransactItems?: TransactWriteItem[] };
  const items = request.TransactItems ?? [];
  if (items.length === 0 || items.length > MAX_ITEMS) {
    return validation(`1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length between 1 and ${MAX_ITEMS}`);
  }
  const ops = items.map(operationOf);
  const unsupported = ops.find((op) => op === undefined);
  if (unsupported !== undefined) return validation('the local store runs Put, Update and Delete in a transaction, not ConditionCheck');
  const keys = new Set<string>();
  for (const op of ops) {
    const id = `${op!.table}|${JSON.stringify(op!.key)}`;
    if (keys.has(id)) return validation('Transaction request cannot include multiple operations on one item');
    keys.add(id);
  }
  // Distinct items, and nothing else runs meanwhile: their reads, then their writes, go together.
  const before = await Promise.all(ops.map(async (op) => (await client.send(new GetItemCommand({ TableName: op!.table, Key: op!.key, ConsistentRead: true }))).Item));
  const results = await Promise.allSettled(ops.map((op) => op!.apply(client)));
  const refused = results.findIndex((r) => r.status === 'rejected');
  if (refused >= 0) {
    await restore(client, ops.flatMap((op, j) => (results[j]!.status === 'fulfilled' ? [{ op: op!, item: before[j] }] : [])));
    const failures = results.map((r) => (r.status === 'rejected' ? (r.reason as Error) : undefined));
    const other = failures.find((e) => e && e.name !== 'ConditionalCheckFailedException');
    if (other) return { status: 400, body: { __type: `com.amazonaws.dynamodb.v20120810#${other.name}`, message: other.message } };
    const reasons = failures.map((e) => (e ? { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' } : { Code: 'None' }));
    return {
      status: 400,
      body: {
        __type: 'com.amazonaws.dynamodb.v20120810#TransactionCanceledException',
        message: `Transaction cancelled, please refer cancellation reasons for specific reasons [${reasons.map((r) => r.Code).join(', ')}]`,
        CancellationReasons: reasons,
      },
    };
  }
  return { status: 200, body: {} };
}

interface Operation {
  table: string;
  key: Record<string, AttributeValue>;
  apply(client: DynamoDBClient): Promise<unknown>;
}

function operationOf(item: TransactWriteItem): Operation | undefined {
  if (item.Update) {
    const { TableName, Key, ReturnValuesOnConditionCheckFailure: _r, ...rest } = item.Update;
    return { table: TableName!, key: Key!, apply: (c) => c.send(new UpdateItemCommand({ TableName, Key, ...rest })) };
  }
  if (item.Put) {
    const { TableName, Item, ReturnValuesOnConditionCheckFailure: _r, ...rest } = item.Put;
    const key = keyOf(Item!);
    return { table: TableName!, key, apply: (c) => c.send(new PutItemCommand({ TableName, Item, ...rest })) };
  }
  if (item.Delete) {
    const { TableName, Key, ReturnValuesOnConditionCheckFailure: _r, ...rest } = item.Delete;
    return { table: TableName!, key: Key!, apply: (c) => c.send(new DeleteItemCommand({ TableName, Key, ...rest })) };
  }
  return undefined;
}

/** The table's keys are pk and sk (SessionTable). */
function keyOf(item: Record<string, AttributeValue>): Record<string, AttributeValue> {
  return { pk: item.pk!, sk: item.sk! };
}

async function restore(client: DynamoDBClient, written: { op: Operation; item: Record<string, AttributeValue> | undefined }[]): Promise<void> {
  for (const { op, item } of written.reverse()) {
    if (item) await client.send(new PutItemCommand({ TableName: op.table, Item: item }));
    else await client.send(new DeleteItemCommand({ TableName: op.table, Key: op.key }));
  }
}

function validation(message: string): Answer {
  return { status: 400, body: { __type: 'com.amazon.coral.validate#ValidationException', message } };
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.0', 'Content-Length': Buffer.byteLength(text), 'x-amzn-RequestId': randomBytes(16).toString('hex') });
  res.end(text);
}

/** Many readers or one writer; a waiting writer goes before readers that come after it. */
class ReadWriteLock {
  private readers = 0;
  private writing = false;
  private readonly queue: { exclusive: boolean; start: () => void }[] = [];

  shared<T>(fn: () => Promise<T>): Promise<T> {
    return this.run(false, fn);
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.run(true, fn);
  }

  private run<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ exclusive, start: () => void fn().then(resolve, reject).finally(() => this.release(exclusive)) });
      this.drain();
    });
  }

  private release(exclusive: boolean): void {
    if (exclusive) this.writing = false;
    else this.readers -= 1;
    this.drain();
  }

  private drain(): void {
    while (this.queue.length && !this.writing) {
      const next = this.queue[0]!;
      if (next.exclusive && this.readers > 0) return;
      this.queue.shift();
      if (next.exclusive) this.writing = true;
      else this.readers += 1;
      next.start();
    }
  }
}
