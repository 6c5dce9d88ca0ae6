import { ConditionalCheckFailedException, QueryCommand, UpdateItemCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import { GetCommand, UpdateCommand, paginateScan, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { conditionalUpdate } from './conditional-update.js';
import { projectRegistryUpdate } from './project-registry.js';
import { TOTALS_ALL_SK, totalsFigures, totalsKeysOf, totalsLabel, totalsPk, totalsSks } from './project-totals.js';
import { PROJECT_INDEX, RUNNING_PROJECT, SESSION_SK, sessionPk, toSessionRecord, type SessionSummary } from './session-item.js';
import { SessionRepository } from './session-repository.js';
import { addSession, emptySums, type UsageSums } from './usage-totals.js';
import { roundUsd } from './usage.js';

/** What `totals backfill` did for one project. */
export interface ProjectBackfill {
  projectId: string;
  /** Sessions its items hold: what the totals now count. */
  sessions: number;
  /** Totals items written (`ALL`, a day, `milestone <id>` or `no milestone`), because they differed from what the sessions give; empty on a second run. */
  rewritten: string[];
  /** RUNNING sessions given their running-index key (created before the running index). */
  runningMarked: number;
  /** Passes it took: a session created or closed meanwhile refuses a write, and the project is derived again. */
  passes: number;
}

/** A session the project index shows this recently ended (or RUNNING) is read again from the table: the index lags its writes. */
const INDEX_LAG_MS = 5 * 60 * 1000;
const MAX_PASSES = 10;

/**
 * Makes a project's registry item and totals items hold what its session items give, for tables
 * created before they existed (docs/ARCHITECTURE.md#backfilling-the-totals). Each totals item is
 * written only where it differs, conditional on every figure it held when read, and read before the
 * sessions: a create or close in between moves a figure, refuses the write, and the project is
 * derived again. So a second run writes nothing, and one run beside live sessions loses no close.
 *
 * It never lowers a figure unless told `exact`: with `sessionRetentionDays`, expired sessions are
 * gone from the items but still counted in the totals (which never expire), so what the items give
 * is less than what was spent. `exact` makes each figure what the items give, lowering one counted
 * too many: for a table whose sessions never expired.
 */
export async function backfillTotals(client: DynamoDBDocumentClient, tableName: string, projectId?: string, options: { exact?: boolean } = {}): Promise<ProjectBackfill[]> {
  const repository = new SessionRepository(client, tableName);
  const projects = projectId ? [projectId] : await projectsOfSessions(client, tableName, repository);
  const done: ProjectBackfill[] = [];
  for (const id of projects) done.push(await backfillProject(client, tableName, repository, id, options.exact ?? false));
  return done;
}

/** Every project with a session: the registry's, and those the project index names (a one-off scan: the registry may predate none of them). */
async function projectsOfSessions(client: DynamoDBDocumentClient, tableName: string, repository: SessionRepository): Promise<string[]> {
  const ids = new Set(await repository.projectIds());
  for await (const page of paginateScan({ client }, { TableName: tableName, IndexName: PROJECT_INDEX, ProjectionExpression: 'projectId' })) {
    for (const item of page.Items ?? []) ids.add(String(item.projectId));
  }
  return [...ids].sort();
}

async function backfillProject(client: DynamoDBDocumentClient, tableName: string, repository: SessionRepository, projectId: string, exact: boolean): Promise<ProjectBackfill> {
  const rewritten = new Set<string>();
  let runningMarked = 0;
  for (let pass = 1; pass <= MAX_PASSES; pass++) {
    // The totals first, then the sessions: whatever changes after this read changes a figure read here.
    const kept = await keptTotals(client, tableName, projectId);
    const derived = new Map<string, UsageSums>([[TOTALS_ALL_SK, emptySums()]]);
    let earliest: string | undefined;
    const recent = new Date(Date.now() - INDEX_LAG_MS).toISOString();
    for await (const summary of repository.allByProject(projectId)) {
      let session: SessionSummary = summary;
      if (summary.status === 'RUNNING' || !summary.endedAt || summary.endedAt >= recent) {
        const { Item } = await client.send(new GetCommand({ TableName: tableName, Key: { pk: sessionPk(summary.sessionId), sk: SESSION_SK }, ConsistentRead: true }));
        if (!Item) continue; // expired meanwhile
        session = toSessionRecord(Item);
        if (session.status === 'RUNNING' && !(RUNNING_PROJECT in Item) && (await markRunning(client, tableName, summary.sessionId, projectId))) runningMarked++;
      }
      // All time, its day's and its milestone's (or no milestone's), as its writes' transactions count it.
      for (const sk of totalsSks(totalsKeysOf(session))) {
        if (!derived.has(sk)) derived.set(sk, emptySums());
        addSession(derived.get(sk)!, session);
      }
      if (!earliest || session.startedAt < earliest) earliest = session.startedAt;
    }
    if (earliest) await client.send(new UpdateCommand(projectRegistryUpdate(tableName, { projectId, startedAt: earliest })));
    let refused = false;
    for (const sk of new Set([...derived.keys(), ...kept.keys()])) {
      const current = kept.get(sk);
      const derivedFigures = totalsFigures(derived.get(sk) ?? emptySums());
      const wanted = exact ? derivedFigures : atLeast(current?.figures ?? {}, derivedFigures);
      if (sameFigures(current?.figures ?? {}, wanted)) continue;
      if (await writeIfUnchanged(client, tableName, totalsPk(projectId), sk, current, wanted)) rewritten.add(totalsLabel(sk));
      else refused = true;
    }
    if (!refused) return { projectId, sessions: derived.get(TOTALS_ALL_SK)!.sessions, rewritten: [...rewritten].sort(), runningMarked, passes: pass };
  }
  throw new Error(`totals backfill of project ${projectId}: its totals changed under each of ${MAX_PASSES} passes; run it again`);
}

interface KeptItem {
  figures: Record<string, number>;
  /** The same figures as DynamoDB holds them: a sum of costs can have more digits than a JS number keeps, and the condition must match them exactly. */
  exact: Record<string, AttributeValue>;
}

/** The project's totals items as they are now (consistent), by sort key: their numeric attributes. */
async function keptTotals(client: DynamoDBDocumentClient, tableName: string, projectId: string): Promise<Map<string, KeptItem>> {
  const kept = new Map<string, KeptItem>();
  let ExclusiveStartKey: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(new QueryCommand({
      TableName: tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': { S: totalsPk(projectId) } }, ConsistentRead: true, ExclusiveStartKey,
    }));
    for (const item of page.Items ?? []) {
      const exact = Object.fromEntries(Object.entries(item).filter(([, v]) => v.N !== undefined));
      kept.set(item.sk!.S!, { exact, figures: Object.fromEntries(Object.entries(exact).map(([k, v]) => [k, Number(v.N)])) });
    }
    ExclusiveStartKey = page.LastEvaluatedKey;
  } while (ExclusiveStartKey);
  return kept;
}

/** Equal as `usage` shows them: costs rounded, a zero the same as no attribute. */
function sameFigures(a: Record<string, number>, b: Record<string, number>): boolean {
  const shown = (name: string, n: number | undefined) => (name === 'totalCostUsd' || name.endsWith(':costUsd') ? roundUsd(n ?? 0) : n ?? 0);
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].every((name) => shown(name, a[name]) === shown(name, b[name]));
}

/**
 * SETs the item's figures to `wanted` (a figure it holds that the sessions do not give, to 0),
 * conditional on every figure being as read: false when something moved one meanwhile.
 */
async function writeIfUnchanged(
  client: DynamoDBDocumentClient, tableName: string, pk: string, sk: string, current: KeptItem | undefined, wanted: Record<string, number>,
): Promise<boolean> {
  const names: Record<string, string> = {};
  const values: Record<string, AttributeValue> = {};
  const sets: string[] = [];
  const conditions: string[] = [];
  const held = current?.exact ?? {};
  [...new Set([...Object.keys(held), ...Object.keys(wanted)])].forEach((attribute, i) => {
    names[`#f${i}`] = attribute;
    values[`:w${i}`] = { N: String(wanted[attribute] ?? 0) };
    sets.push(`#f${i} = :w${i}`);
    if (attribute in held) {
      values[`:h${i}`] = held[attribute]!;
      conditions.push(`#f${i} = :h${i}`);
    } else conditions.push(`attribute_not_exists(#f${i})`);
  });
  if (!current) conditions.push('attribute_not_exists(pk)');
  try {
    await client.send(new UpdateItemCommand({
      TableName: tableName, Key: { pk: { S: pk }, sk: { S: sk } }, UpdateExpression: `SET ${sets.join(', ')}`, ConditionExpression: conditions.join(' AND '),
      ExpressionAttributeNames: names, ExpressionAttributeValues: values,
    }));
    return true;
  } catch (err) {
    if (err instanceof ConditionalCheckFailedException) return false;
    throw err;
  }
}

/** Puts a RUNNING session created before the running index into it; false when it closed meanwhile. */
function markRunning(client: DynamoDBDocumentClient, tableName: string, sessionId: string, projectId: string): Promise<boolean> {
  return conditionalUpdate(client, {
    TableName: tableName, Key: { pk: sessionPk(sessionId), sk: SESSION_SK },
    UpdateExpression: 'SET #running = :projectId', ConditionExpression: '#status = :running AND attribute_not_exists(#running)',
    ExpressionAttributeNames: { '#running': RUNNING_PROJECT, '#status': 'status' }, ExpressionAttributeValues: { ':projectId': projectId, ':running': 'RUNNING' },
  });
}

/**
 * Each figure the larger of what the totals hold and what the items give: spend the items no longer
 * show (expired by TTL) stays counted. `RUNNING` is the one figure that falls by design, and it is
 * only ever what the items give (a running session never expires).
 */
function atLeast(kept: Record<string, number>, derived: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = { ...kept };
  for (const [name, value] of Object.entries(derived)) out[name] = name === 'RUNNING' ? value : Math.max(kept[name] ?? 0, value);
  if (!('RUNNING' in derived) && 'RUNNING' in kept) out.RUNNING = 0;
  return out;
}
