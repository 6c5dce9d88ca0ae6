/**
 * Write units a path really consumes, measured on the items it writes rather than assumed: each
 * write's item is read before and after it (by a client of its own, so no call is counted twice)
 * and billed as DynamoDB bills it (the DynamoDB Developer Guide, "Item sizes" and "Capacity
 * modes"): one unit per started KB of the larger of the two images, twice that in a transaction,
 * and one write to each global secondary index per KB of what it projects (an entry whose key
 * changes is a delete and a put there; a write that changes nothing it projects, none).
 */
import {
  DescribeTableCommand, DynamoDBClient, GetItemCommand,
  type AttributeValue, type GlobalSecondaryIndexDescription, type TransactWriteItem,
} from '@aws-sdk/client-dynamodb';
import type { LocalDynamoDb } from '../lib/local/local-dynamodb.js';

type Item = Record<string, AttributeValue>;

/** One write of a path, as billed. */
export interface MeasuredWrite {
  command: string;
  key: string;
  bytesBefore: number;
  bytesAfter: number;
  tableUnits: number;
  indexUnits: Record<string, number>;
}

const KB = 1024;

/** An attribute value's size: UTF-8 of strings, bytes of binaries, about one byte per two digits of a number. */
function valueSize(value: AttributeValue): number {
  if (value.S !== undefined) return Buffer.byteLength(value.S, 'utf8');
  if (value.N !== undefined) return numberSize(value.N);
  if (value.B !== undefined) return value.B.byteLength;
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.SS) return value.SS.reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
  if (value.NS) return value.NS.reduce((n, s) => n + numberSize(s), 0);
  if (value.BS) return value.BS.reduce((n, b) => n + b.byteLength, 0);
  if (value.L) return 3 + value.L.reduce((n, v) => n + 1 + valueSize(v), 0);
  if (value.M) return 3 + Object.entries(value.M).reduce((n, [k, v]) => n + 1 + Buffer.byteLength(k, 'utf8') + valueSize(v), 0);
  return 0;
}

function numberSize(n: string): number {
  const digits = n.replace(/^-/, '').replace(/[eE].*$/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(Math.max(digits.length, 1) / 2) + 1;
}

/** An item's size as DynamoDB counts it: each attribute's name and value. */
export function itemSize(item: Item | undefined): number {
  if (!item) return 0;
  return Object.entries(item).reduce((n, [name, value]) => n + Buffer.byteLength(name, 'utf8') + valueSize(value), 0);
}

const units = (bytes: number) => (bytes === 0 ? 0 : Math.ceil(bytes / KB));

interface IndexShape {
  name: string;
  keys: string[];
  projected: (item: Item) => Item;
}

function indexShape(index: GlobalSecondaryIndexDescription, tableKeys: string[]): IndexShape {
  const keys = (index.KeySchema ?? []).map((k) => k.AttributeName!);
  const kept = new Set([...tableKeys, ...keys, ...(index.Projection?.NonKeyAttributes ?? [])]);
  const type = index.Projection?.ProjectionType;
  return {
    name: index.IndexName!,
    keys,
    projected: (item) => (type === 'ALL' ? item : Object.fromEntries(Object.entries(item).filter(([k]) => kept.has(k)))),
  };
}

const sorted = (item: Item) => Object.fromEntries(Object.entries(item).sort(([a], [b]) => a.localeCompare(b)));

/** What a write costs its indexes: an update in place, or the delete and put of a moved or new entry. */
function indexUnits(index: IndexShape, before: Item | undefined, after: Item | undefined): number {
  const inIndex = (item: Item | undefined) => item !== undefined && index.keys.every((k) => item[k] !== undefined);
  const keyOf = (item: Item) => JSON.stringify(index.keys.map((k) => item[k]));
  const was = inIndex(before);
  const is = inIndex(after);
  if (was && is && keyOf(before!) === keyOf(after!)) {
    // A write that changes nothing the index holds does not write to it.
    if (JSON.stringify(sorted(index.projected(before!))) === JSON.stringify(sorted(index.projected(after!)))) return 0;
    return units(Math.max(itemSize(index.projected(before!)), itemSize(index.projected(after!))));
  }
  return (was ? units(itemSize(index.projected(before!))) : 0) + (is ? units(itemSize(index.projected(after!))) : 0);
}

function writtenKeys(commandName: string, input: Record<string, unknown>, tableKeys: string[]): { key: Item; transactional: boolean }[] {
  const keyOf = (item: Item) => Object.fromEntries(tableKeys.map((k) => [k, item[k]!]));
  if (commandName === 'PutItemCommand') return [{ key: keyOf(input.Item as Item), transactional: false }];
  if (commandName === 'UpdateItemCommand' || commandName === 'DeleteItemCommand') return [{ key: input.Key as Item, transactional: false }];
  if (commandName === 'TransactWriteItemsCommand') {
    return (input.TransactItems as TransactWriteItem[]).map((t) => {
      const key = t.Put ? keyOf(t.Put.Item!) : (t.Update?.Key ?? t.Delete?.Key ?? t.ConditionCheck?.Key)!;
      return { key, transactional: true };
    });
  }
  return [];
}

/**
 * Measures the writes made through `dynamodb`'s client from now on: `take()` returns those since
 * the last take. A refused conditional write is billed as DynamoDB bills it; a cancelled
 * transaction is not counted.
 */
export async function measureWriteUnits(dynamodb: LocalDynamoDb): Promise<{ take(): MeasuredWrite[] }> {
  const reader = new DynamoDBClient({ endpoint: dynamodb.endpoint, region: 'us-east-1', credentials: dynamodb.credentials });
  const { Table } = await reader.send(new DescribeTableCommand({ TableName: dynamodb.tableName }));
  const tableKeys = (Table!.KeySchema ?? []).map((k) => k.AttributeName!);
  const indexes = (Table!.GlobalSecondaryIndexes ?? []).map((i) => indexShape(i, tableKeys));
  const read = async (key: Item) => (await reader.send(new GetItemCommand({ TableName: dynamodb.tableName, Key: key, ConsistentRead: true }))).Item;
  let writes: MeasuredWrite[] = [];
  dynamodb.client.middlewareStack.add(
    (next, context) => async (args) => {
      const targets = writtenKeys(context.commandName ?? '', args.input as Record<string, unknown>, tableKeys);
      const before = await Promise.all(targets.map((t) => read(t.key)));
      const record = (after: (Item | undefined)[], refused: boolean) => targets.forEach((t, i) => {
        const bytesBefore = itemSize(before[i]);
        const bytesAfter = itemSize(after[i]);
        writes.push({
          command: context.commandName!,
          key: tableKeys.map((k) => t.key[k]?.S ?? t.key[k]?.N).join('|'),
          bytesBefore,
          bytesAfter,
          // A refused conditional write is billed too, at least one unit.
          tableUnits: Math.max(refused ? 1 : 0, units(Math.max(bytesBefore, bytesAfter))) * (t.transactional ? 2 : 1),
          indexUnits: Object.fromEntries(indexes.map((ix) => [ix.name, indexUnits(ix, before[i], after[i])]).filter(([, n]) => n)),
        });
      });
      try {
        const output = await next(args);
        record(await Promise.all(targets.map((t) => read(t.key))), false);
        return output;
      } catch (err) {
        if ((err as Error).name === 'ConditionalCheckFailedException') record(before, true);
        throw err;
      }
    },
    { step: 'build', name: 'benchWriteUnits' },
  );
  return {
    take() {
      const taken = writes;
      writes = [];
      return taken;
    },
  };
}

/** The units of a path's writes: the table's, its indexes', and their sum. */
export function totalWriteUnits(writes: MeasuredWrite[]): { table: number; indexes: number; total: number } {
  const table = writes.reduce((n, w) => n + w.tableUnits, 0);
  const indexes = writes.reduce((n, w) => n + Object.values(w.indexUnits).reduce((a, b) => a + b, 0), 0);
  return { table, indexes, total: table + indexes };
}
