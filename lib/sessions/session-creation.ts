import { InvalidInputError, sessionStartOf, parseExecutionInput, type SessionStart } from './execution-input.js';
import { parseProjectLimits, withinProjectLimit, type ProjectLimits } from './project-limits.js';
import { DEFAULT_TOOLS, SHELL_TOOLS } from './session-limits.js';
import { totalsKeysOf, type TotalsKeys } from './project-totals.js';
import { sessionRetainUntil } from './session-item.js';

/** Branches a session never pushes to unless the deployment says otherwise: it hands back a branch of its own. */
export const DEFAULT_PROTECTED_BRANCHES: readonly string[] = ['main', 'master'];

/** What CreateSession hands on: the session it created, to run. */
export interface PreparedSession {
  session: SessionStart;
  /** The prompt, beside the session: the runners take it, nothing else that carries a session does. */
  prompt: string;
  /**
   * A milestone task's is null until AcquireMilestone fills it; a fresh session's holds no
   * item. Never null on the way to the runner, so the Fargate state never converts a null
   * to JSON (States.JsonToString of null is not a documented case).
   */
  milestone: null | { item: null };
  /** Filled by AcquireSlot where a concurrency limit applies. */
  slot: null;
  /** The first attempt; NextAttempt replaces it after a transient failure. */
  retry: { attempt: 1; prior: null };
  /**
   * The session's TTL value as DynamoDB JSON (`{N}`, or `{NULL: true}` without retention), which
   * CloseFailed writes: a state cannot pick an attribute's type, so CreateSession does.
   */
  expiresAt: { N: string } | { NULL: true };
  /** The keys of the project's totals items the session counts in: the closes' transactions write them. */
  totals: TotalsKeys;
}

/** What the deployment sets for every session (CreateSession's environment). */
export interface SessionPolicy {
  /** Sessions a project may run at once (a project's own limit in the table wins). @default no limit */
  maxConcurrentSessions?: number;
  /** USD a project may spend in a calendar month (UTC); a start past it is refused. @default no budget */
  monthlyBudgetUsd?: number;
  /** Runs of the CLI a session may take when the API fails transiently (429, 5xx, 529). @default 1: no retry */
  runAttempts?: number;
  /** Wait before the second run, doubled for each later one. @default 15 */
  retryBaseSeconds?: number;
  /** The tools a session may name in its input (`tools`). @default the runner's defaults (DEFAULT_TOOLS: no shell, no web) */
  allowedTools?: readonly string[];
  /**
   * Branch names or patterns (`release/*`) a session's `workspace.branch` may not be; an
   * empty list allows any. @default DEFAULT_PROTECTED_BRANCHES (main, master)
   */
  protectedBranches?: readonly string[];
  /**
   * Whether a Lambda session may have a shell (SHELL_TOOLS): there it runs as the runner's user and
   * can read the runner role's credentials. @default false: a shell runs on Fargate only
   */
  shellOnLambda?: boolean;
  /**
   * Whether a Fargate session's CLI runs as a user of its own, which needs a root task: the
   * deployed task is root; a local one is where the engine is. Without it a shell there runs as
   * the task and can read its credentials, and is refused. @default true
   */
  fargateSeparateUser?: boolean;
  /**
   * Caps by project (`*`: every project's): the most a session may name as maxBudgetUsd and
   * timeoutSeconds, and the runtimes it may run on; a session that names no budget or limit gets the cap.
   * @default none
   */
  projectLimits?: ProjectLimits;
  /** Days after its start a closed session's item expires (DynamoDB TTL); its project's totals stay. @default none: kept */
  sessionRetentionDays?: number;
}

/** A protected branch: a name, or a pattern whose `*` matches any characters, `/` included. */
const PROTECTED_BRANCH_PATTERN = /^[A-Za-z0-9._/*-]{1,200}$/;

/**
 * Whether a branch matches a protected pattern, as IAM's StringLike matches the same pattern
 * against `codecommit:References` (cdk/runner-settings.ts): `*` is any characters, `/` included,
 * so `release/*` protects `release/2026/11` here as it does there.
 */
export function branchMatches(branch: string, pattern: string): boolean {
  const source = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${source}$`).test(branch);
}

/** Protected branch patterns from settings, checked: a bad one is named with the setting it came from. */
export function checkedBranchPatterns(patterns: readonly string[] | undefined, setting: string): readonly string[] | undefined {
  const bad = (patterns ?? []).filter((p) => !PROTECTED_BRANCH_PATTERN.test(p));
  if (bad.length) throw new Error(`${setting} must be branch names or patterns of them (release/*), not ${bad.map((p) => JSON.stringify(p)).join(', ')}`);
  return patterns;
}

/** A session's `workspace.branch` that the deployment protects: refused by name, before anything runs. */
export function assertBranchAllowed(workspace: { branch?: string } | undefined, policy: SessionPolicy): void {
  if (!workspace?.branch) return;
  const patterns = policy.protectedBranches ?? DEFAULT_PROTECTED_BRANCHES;
  const match = patterns.find((p) => branchMatches(workspace.branch!, p));
  if (match !== undefined) {
    throw new InvalidInputError([{
      field: 'workspace.branch',
      message: `must not be a branch this deployment protects (${patterns.join(', ')}; ${JSON.stringify(workspace.branch)} matches ${match}): a session pushes a branch of its own`,
    }]);
  }
}

/** A session's `tools` beyond what the deployment allows, or a shell where it would run unisolated: refused by name, before anything runs. */
export function assertToolsAllowed(tools: readonly string[] | undefined, policy: SessionPolicy, runtime: 'lambda' | 'fargate' = 'lambda'): void {
  if (!tools) return;
  const shell = tools.filter((t) => SHELL_TOOLS.includes(t));
  if (shell.length && runtime === 'lambda' && !policy.shellOnLambda) {
    throw new InvalidInputError([{
      field: 'tools',
      message: `may name ${shell.join(', ')} only with runtime fargate, where the CLI runs as a user of its own: on Lambda a shell runs as the runner and can read its role's credentials (a deployment that accepts that sets shellOnLambda)`,
    }]);
  }
  if (shell.length && runtime === 'fargate' && policy.fargateSeparateUser === false) {
    throw new InvalidInputError([{
      field: 'tools',
      message: `may name ${shell.join(', ')} on runtime fargate only where the task runs the CLI as a user of its own: this engine is not root, so a shell would run as the task and could read its credentials (run the engine as root, or name runtime lambda where the deployment sets shellOnLambda)`,
    }]);
  }
  const allowed = policy.allowedTools ?? DEFAULT_TOOLS;
  const refused = tools.filter((t) => !allowed.includes(t));
  if (refused.length) {
    throw new InvalidInputError([{ field: 'tools', message: `may name only the tools this deployment allows (${allowed.join(', ')}), not ${refused.join(', ')}` }]);
  }
}

/** The environment that sessionPolicyFromEnv reads the policy's limits from (CreateSession's, the API's). */
export function sessionPolicyEnvironment(
  policy: Pick<SessionPolicy, 'maxConcurrentSessions' | 'monthlyBudgetUsd' | 'allowedTools' | 'protectedBranches' | 'shellOnLambda' | 'projectLimits' | 'sessionRetentionDays'>,
): Record<string, string> {
  return {
    ...(policy.sessionRetentionDays ? { SESSION_RETENTION_DAYS: String(policy.sessionRetentionDays) } : {}),
    ...(policy.maxConcurrentSessions ? { MAX_CONCURRENT_SESSIONS: String(policy.maxConcurrentSessions) } : {}),
    ...(policy.monthlyBudgetUsd ? { MONTHLY_BUDGET_USD: String(policy.monthlyBudgetUsd) } : {}),
    ...(policy.allowedTools ? { ALLOWED_TOOLS: policy.allowedTools.join(',') } : {}),
    // Empty: none protected (the deployment allows any branch).
    ...(policy.protectedBranches ? { PROTECTED_BRANCHES: policy.protectedBranches.join(',') } : {}),
    ...(policy.shellOnLambda ? { SHELL_ON_LAMBDA: 'true' } : {}),
    ...(policy.projectLimits && Object.keys(policy.projectLimits).length ? { PROJECT_LIMITS: JSON.stringify(policy.projectLimits) } : {}),
  };
}

/** The policy from the environment (MAX_CONCURRENT_SESSIONS, MONTHLY_BUDGET_USD, PROJECT_LIMITS as JSON…, behind an optional prefix). */
export function sessionPolicyFromEnv(env: NodeJS.ProcessEnv, prefix = ''): SessionPolicy {
  const read = (name: string, check: (n: number) => boolean, rule: string): number | undefined => {
    const raw = env[prefix + name];
    if (raw === undefined || raw === '') return undefined;
    const n = Number(raw);
    if (!check(n)) throw new Error(`${prefix}${name} must be ${rule}, not ${JSON.stringify(raw)}`);
    return n;
  };
  return {
    maxConcurrentSessions: read('MAX_CONCURRENT_SESSIONS', (n) => Number.isInteger(n) && n >= 1, 'a whole number from 1'),
    monthlyBudgetUsd: read('MONTHLY_BUDGET_USD', (n) => Number.isFinite(n) && n > 0, 'a number of dollars above 0'),
    runAttempts: read('RUN_ATTEMPTS', (n) => Number.isInteger(n) && n >= 1 && n <= 10, 'a whole number from 1 to 10'),
    retryBaseSeconds: read('RETRY_BASE_SECONDS', (n) => Number.isFinite(n) && n >= 0 && n <= 3600, 'a number of seconds from 0 to 3600'),
    allowedTools: env[prefix + 'ALLOWED_TOOLS']?.split(',').map((t) => t.trim()).filter(Boolean) || undefined,
    // Set but empty: no branch is protected.
    protectedBranches: checkedBranchPatterns(env[prefix + 'PROTECTED_BRANCHES']?.split(',').map((b) => b.trim()).filter(Boolean), prefix + 'PROTECTED_BRANCHES'),
    shellOnLambda: env[prefix + 'SHELL_ON_LAMBDA'] === 'true' || undefined,
    projectLimits: parseProjectLimits(env[prefix + 'PROJECT_LIMITS'], prefix + 'PROJECT_LIMITS'),
    sessionRetentionDays: read('SESSION_RETENTION_DAYS', isRetentionDays, RETENTION_DAYS_RULE),
  };
}

/** sessionRetentionDays: whole days, at least 1 (a session runs at most about a day), at most 100 years. */
export function isRetentionDays(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 36_500;
}
export const RETENTION_DAYS_RULE = 'a whole number of days from 1 to 36500';

/** The stack's sessionRetentionDays, checked at synth, naming the setting. */
export function checkedRetentionDays(days: number | undefined, name: string): number | undefined {
  if (days !== undefined && !isRetentionDays(days)) throw new Error(`${name} must be ${RETENTION_DAYS_RULE}, not ${JSON.stringify(days)}`);
  return days;
}

/** A start refused because its project has spent its monthly budget. */
export class BudgetExceededError extends Error {
  override readonly name = 'BudgetExceededError';
  constructor(
    readonly projectId: string,
    readonly spentUsd: number,
    readonly budgetUsd: number,
  ) {
    const usd = (n: number) => `$${n.toFixed(n < 1 ? 6 : 2)}`;
    super(`project ${projectId} has spent ${usd(spentUsd)} this month, at or over its monthly budget of ${usd(budgetUsd)}; no session was started`);
  }
}

/** The first instant of the calendar month (UTC) of a date. */
export function monthStart(now: Date): string {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
}

/** Refuses a start past the project's monthly budget; `spentSince` sums recorded cost (SessionRepository.costSince). */
export async function assertWithinBudget(
  projectId: string,
  policy: SessionPolicy,
  spentSince: (projectId: string, since: string) => Promise<number>,
  now = new Date(),
): Promise<void> {
  if (!policy.monthlyBudgetUsd) return;
  const spent = await spentSince(projectId, monthStart(now));
  if (spent >= policy.monthlyBudgetUsd) throw new BudgetExceededError(projectId, spent, policy.monthlyBudgetUsd);
}

export interface ValidateInputEvent {
  input: unknown;
  executionArn: string;
  executionName: string;
  /** $$.Execution.StartTime: tells this execution's own earlier put from another's. */
  executionStartTime?: string;
}

/** The input checked and the session to create (with the deployment's policy applied); nothing is written. */
export function prepareSession(event: ValidateInputEvent, policy: SessionPolicy = {}, now = new Date()): PreparedSession {
  // Within its project's caps, and given them where it names none: a console or old input is capped too.
  const input = withinProjectLimit(parseExecutionInput(event.input), policy.projectLimits);
  const { session, prompt } = sessionStartOf(input, { executionArn: event.executionArn, executionName: event.executionName, now });
  assertToolsAllowed(session.tools, policy, session.runtime);
  assertBranchAllowed(session.workspace, policy);
  // Its presence routes the session through AcquireSlot; without a limit, no slot is taken.
  if (policy.maxConcurrentSessions) session.concurrencyLimit = policy.maxConcurrentSessions;
  if (policy.runAttempts && policy.runAttempts > 1) {
    session.runAttempts = policy.runAttempts;
    session.retryBaseSeconds = policy.retryBaseSeconds ?? 15;
  }
  const retainUntil = sessionRetainUntil(session.startedAt, policy.sessionRetentionDays);
  if (retainUntil !== null) session.retainUntil = retainUntil;
  const milestone = session.milestoneId ? null : { item: null };
  return {
    session, prompt, milestone, slot: null, retry: { attempt: 1, prior: null },
    expiresAt: retainUntil === null ? { NULL: true } : { N: String(retainUntil) }, totals: totalsKeysOf(session),
  };
}

/** A project's own concurrency limit, from its slots item (ProjectSlots.ownLimit). */
export interface ProjectLimitReader {
  ownLimit(projectId: string): Promise<number | null>;
}

/** What CreateSession needs of the table (SessionRepository). */
export interface SessionCreation {
  create(start: SessionStart, executionStartTime?: string): Promise<void>;
  costSince(projectId: string, since: string): Promise<number>;
}

/**
 * The workflow's first state, shared by the Lambda and the embedded runtime: the input
 * checked, the month's budget checked, and the session put RUNNING (conditionally: one
 * write). One state, not a validator and a PutItem, so a session takes one transition less.
 */
export async function createSession(
  event: ValidateInputEvent, policy: SessionPolicy, sessions: SessionCreation, slots?: ProjectLimitReader,
): Promise<PreparedSession> {
  const prepared = prepareSession(event, policy);
  await assertWithinBudget(prepared.session.projectId, policy, (p, since) => sessions.costSince(p, since));
  // With no deployment-wide limit, a project's own one (`project limit`) still routes it through AcquireSlot,
  // which holds it to the item's maxConcurrentSessions. With one, prepareSession set it, and AcquireSlot prefers the item's.
  if (!prepared.session.concurrencyLimit && slots) {
    const own = await slots.ownLimit(prepared.session.projectId);
    if (own) prepared.session.concurrencyLimit = own;
  }
  await sessions.create(prepared.session, event.executionStartTime); // SessionAlreadyExists: another execution's session
  return prepared;
}
