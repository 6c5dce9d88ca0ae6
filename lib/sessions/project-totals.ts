import type { SessionStatus } from './session-item.js';
import { addUsd, roundUsd, zeroUsage, type Usage, type UsageByModel } from './usage.js';
import type { UsageSums } from './usage-totals.js';

/**
 * A project's totals, kept as counters beside its sessions so a budget check, a `usage` and a
 * milestone's view read a bounded number of items whatever the history
 * (docs/ARCHITECTURE.md#project-totals). One item for all time, one per UTC day a session started,
 * and one per milestone (`TOTALS#<projectId>`, `ALL` / `DAY#YYYY-MM-DD` / `MILESTONE#<id>`, and
 * `MILESTONE#NONE` for the sessions of no milestone, so every write moves the same three items).
 * Each counter moves only inside the transaction that writes the session item it counts, under that
 * write's condition: a session's create, each attempt's spend, its close.
 */
export const TOTALS_ALL_SK = 'ALL';
const DAY_PREFIX = 'DAY#';
const MILESTONE_PREFIX = 'MILESTONE#';
/** The totals item of a project's sessions that are no milestone's task (a milestone id is a UUID). */
const NO_MILESTONE_SK = `${MILESTONE_PREFIX}NONE`;

export function totalsPk(projectId: string): string {
  return `TOTALS#${projectId}`;
}

export function totalsDaySk(startedAt: string): string {
  return `${DAY_PREFIX}${startedAt.slice(0, 10)}`;
}

/** The totals item of a milestone's tasks in their project, or of the project's sessions of no milestone. */
export function milestoneTotalsSk(milestoneId: string | null | undefined): string {
  return milestoneId ? `${MILESTONE_PREFIX}${milestoneId}` : NO_MILESTONE_SK;
}

function isDaySk(sk: string): boolean {
  return sk.startsWith(DAY_PREFIX);
}

/** How `totals check` and `backfill` name a totals item: `ALL`, the day, `milestone <id>` or `no milestone`. */
export function totalsLabel(sk: string): string {
  if (sk === NO_MILESTONE_SK) return 'no milestone';
  if (sk.startsWith(MILESTONE_PREFIX)) return `milestone ${sk.slice(MILESTONE_PREFIX.length)}`;
  return isDaySk(sk) ? dayOfTotalsSk(sk) : sk;
}

/** The three totals items one session counts in: all time, the UTC day it started, and its milestone's (or no milestone's). */
export interface TotalsKeys {
  pk: string;
  day: string;
  milestone: string;
}

export function totalsKeysOf(session: { projectId: string; startedAt: string; milestoneId?: string | null }): TotalsKeys {
  return { pk: totalsPk(session.projectId), day: totalsDaySk(session.startedAt), milestone: milestoneTotalsSk(session.milestoneId) };
}

/** The sort keys of a session's three totals items, in the order the transactions write them. */
export function totalsSks(keys: TotalsKeys): string[] {
  return [TOTALS_ALL_SK, keys.day, keys.milestone];
}

/** What one attempt of a session spent (the session item keeps the sum of its attempts). */
export interface AttemptSpend {
  usage: Usage;
  modelUsage: UsageByModel;
  numTurns: number;
  totalCostUsd: number;
  durationMs: number;
}

/** One ADD to a totals item: its expression, names and (unmarshalled) values. */
export interface TotalsDelta {
  update: string;
  names: Record<string, string>;
  values: Record<string, number>;
}

const USAGE_FIELDS = ['inputTokens', 'outputTokens', 'cacheReadInputTokens', 'cacheCreationInputTokens'] as const;
const MODEL_PREFIX = 'model:';

/**
 * The ADD that counts a change in a session: `created` one more session (RUNNING), `from`/`to` a
 * status move, `spend` what one attempt spent. Each counter is a top-level attribute (a status by
 * its name, a model's figures as `model:<id>:<field>`), since ADD cannot make a nested map.
 */
export function totalsDelta(change: { created?: boolean; from?: SessionStatus; to?: SessionStatus; spend?: AttemptSpend }): TotalsDelta {
  const adds = new Map<string, number>();
  const add = (attribute: string, n: number) => adds.set(attribute, (adds.get(attribute) ?? 0) + n);
  if (change.created) {
    add('sessions', 1);
    add('RUNNING', 1);
  }
  if (change.from && change.to) {
    add(change.from, -1);
    add(change.to, 1);
  }
  const spend = change.spend;
  if (spend) {
    for (const field of USAGE_FIELDS) add(field, spend.usage[field]);
    add('numTurns', spend.numTurns);
    add('totalCostUsd', spend.totalCostUsd);
    add('durationMs', spend.durationMs);
    for (const [model, u] of Object.entries(spend.modelUsage)) {
      for (const field of USAGE_FIELDS) add(`${MODEL_PREFIX}${model}:${field}`, u[field]);
      add(`${MODEL_PREFIX}${model}:costUsd`, u.costUsd);
    }
  }
  const names: Record<string, string> = {};
  const values: Record<string, number> = {};
  const terms: string[] = [];
  [...adds.entries()].forEach(([attribute, n], i) => {
    names[`#t${i}`] = attribute;
    values[`:t${i}`] = n;
    terms.push(`#t${i} :t${i}`);
  });
  // An empty delta still touches the item, so the transaction has the same shape every time.
  if (!terms.length) {
    names['#t0'] = 'sessions';
    values[':t0'] = 0;
    terms.push('#t0 :t0');
  }
  return { update: `ADD ${terms.join(', ')}`, names, values };
}

/** The sums one totals item holds, as `usage` reports them. */
export function sumsOfTotalsItem(item: Record<string, unknown> | undefined): UsageSums {
  const n = (v: unknown) => (typeof v === 'number' ? v : 0);
  const sums: UsageSums = { sessions: 0, byStatus: {}, usage: zeroUsage(), byModel: {}, numTurns: 0, totalCostUsd: 0, durationMs: 0 };
  if (!item) return sums;
  sums.sessions = n(item.sessions);
  for (const status of ['RUNNING', 'COMPLETED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const) {
    if (n(item[status])) sums.byStatus[status] = n(item[status]);
  }
  for (const field of USAGE_FIELDS) sums.usage[field] = n(item[field]);
  sums.numTurns = n(item.numTurns);
  sums.totalCostUsd = roundUsd(n(item.totalCostUsd));
  sums.durationMs = n(item.durationMs);
  for (const [attribute, value] of Object.entries(item)) {
    if (!attribute.startsWith(MODEL_PREFIX)) continue;
    const rest = attribute.slice(MODEL_PREFIX.length);
    const cut = rest.lastIndexOf(':');
    const model = rest.slice(0, cut);
    const field = rest.slice(cut + 1) as keyof UsageByModel[string];
    const m = (sums.byModel[model] ??= { ...zeroUsage(), costUsd: 0 });
    m[field] = field === 'costUsd' ? roundUsd(n(value)) : n(value);
  }
  return sums;
}

/** Adds one item's sums into another (a range of days). */
export function addSums(into: UsageSums, more: UsageSums): void {
  into.sessions += more.sessions;
  for (const [status, count] of Object.entries(more.byStatus)) into.byStatus[status] = (into.byStatus[status] ?? 0) + count;
  for (const field of USAGE_FIELDS) into.usage[field] += more.usage[field];
  into.numTurns += more.numTurns;
  into.totalCostUsd = addUsd(into.totalCostUsd, more.totalCostUsd);
  into.durationMs += more.durationMs;
  for (const [model, u] of Object.entries(more.byModel)) {
    const m = (into.byModel[model] ??= { ...zeroUsage(), costUsd: 0 });
    for (const field of USAGE_FIELDS) m[field] += u[field];
    m.costUsd = addUsd(m.costUsd, u.costUsd);
  }
}

/** The day a totals item counts, from its sort key. */
export function dayOfTotalsSk(sk: string): string {
  return sk.slice(DAY_PREFIX.length);
}

export function daySkBounds(fromDay: string, toDay: string): [string, string] {
  return [`${DAY_PREFIX}${fromDay}`, `${DAY_PREFIX}${toDay}`];
}

/**
 * The attributes a totals item holds for these sums, as the ADDs of `totalsDelta` build them up: what
 * `totals backfill` writes where an item differs from what its sessions give.
 */
export function totalsFigures(sums: UsageSums): Record<string, number> {
  const figures: Record<string, number> = { sessions: sums.sessions, numTurns: sums.numTurns, totalCostUsd: sums.totalCostUsd, durationMs: sums.durationMs };
  for (const [status, n] of Object.entries(sums.byStatus)) figures[status] = n;
  for (const field of USAGE_FIELDS) figures[field] = sums.usage[field];
  for (const [model, u] of Object.entries(sums.byModel)) {
    for (const field of USAGE_FIELDS) figures[`${MODEL_PREFIX}${model}:${field}`] = u[field];
    figures[`${MODEL_PREFIX}${model}:costUsd`] = u.costUsd;
  }
  return figures;
}
