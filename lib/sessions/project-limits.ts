import { z } from 'zod';
import { InvalidInputError, RUNTIMES, idField, type FieldError } from './execution-input.js';
import { MAX_FARGATE_TIMEOUT_SECONDS, defaultTimeoutSeconds } from './session-limits.js';

export type Runtime = (typeof RUNTIMES)[number];

/** What the deployment lets one project's sessions ask for (SessionPolicy.projectLimits). */
export interface ProjectLimit {
  /** The most a session may name as maxBudgetUsd, and what one that names none gets. */
  readonly maxBudgetUsd?: number;
  /** The most a session may name as timeoutSeconds; one that names none gets it, or its runtime's default when lower. */
  readonly timeoutSeconds?: number;
  /** The runtimes its sessions may run on. @default both */
  readonly runtimes?: readonly Runtime[];
  /**
   * The permission rules (`Bash(npm test:*)`) its sessions' CLI gets: some of the deployment's
   * `permissionRules`, never another (assertProjectRulesWithin). @default the deployment's
   */
  readonly permissionRules?: readonly string[];
}

/** Caps by project id; `*` holds every project's, which a project's own entry overrides field by field. */
export type ProjectLimits = Readonly<Record<string, ProjectLimit>>;

export const EVERY_PROJECT = '*';

/**
 * A project's rules travel in its sessions' state, and on Fargate in the task's 8 KiB of ECS
 * overrides beside the rest of the session: a bound keeps room for it.
 */
const MAX_PROJECT_RULES_CHARS = 1_024;

const CAPS = 'maxBudgetUsd, timeoutSeconds, runtimes, permissionRules';

const ProjectLimitSchema = z.strictObject({
  maxBudgetUsd: z.number({ error: 'must be a number of dollars' }).positive('must be above 0').optional(),
  timeoutSeconds: z.int({ error: 'must be a whole number of seconds' }).min(1).max(MAX_FARGATE_TIMEOUT_SECONDS).optional(),
  runtimes: z.array(z.enum(RUNTIMES, { error: `must name runtimes of ${RUNTIMES.join(', ')}` })).min(1, 'must name a runtime').optional(),
  permissionRules: z.array(z.string({ error: 'must be permission rules such as Bash(npm test:*)' }).min(1, 'must not be empty'), { error: 'must be an array of permission rules such as ["Bash(npm test:*)"]' })
    .refine((rules) => JSON.stringify(rules).length <= MAX_PROJECT_RULES_CHARS, `must be at most ${MAX_PROJECT_RULES_CHARS} characters as JSON (they travel in a Fargate task's overrides)`)
    .optional(),
}, { error: `must be an object of ${CAPS}` });

/**
 * The caps from a setting: an object, or its JSON text (an environment variable, `-c projectLimits=…`).
 * A bad one fails naming the setting, the project and the field, e.g.
 * `PROJECT_LIMITS: project demo: maxBudgetUsd must be above 0`.
 */
export function parseProjectLimits(value: unknown, setting: string): ProjectLimits | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let raw: unknown = value;
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      raw = undefined;
    }
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new Error(`${setting} must be a JSON object of project id (or *) to its caps, such as {"demo": {"maxBudgetUsd": 5, "runtimes": ["fargate"]}}, not ${JSON.stringify(value)}`);
  }
  const problems: string[] = [];
  const limits: Record<string, ProjectLimit> = {};
  for (const [projectId, entry] of Object.entries(raw)) {
    if (projectId !== EVERY_PROJECT && !idField.safeParse(projectId).success) {
      problems.push(`project ${JSON.stringify(projectId)} is not a project id (1-64 characters of A-Z a-z 0-9 . _ -) or ${EVERY_PROJECT}`);
      continue;
    }
    const parsed = ProjectLimitSchema.safeParse(entry);
    if (parsed.success) limits[projectId] = parsed.data;
    else {
      problems.push(...parsed.error.issues.map((i) => i.code === 'unrecognized_keys'
        ? `project ${projectId}: ${i.keys.join(', ')} is not a cap (${CAPS})`
        : `project ${projectId}: ${i.path.length ? `${i.path.join('.')} ` : ''}${i.message}`));
    }
  }
  if (problems.length) throw new Error(`${setting}: ${problems.join('; ')}`);
  return limits;
}

/**
 * A project narrows the deployment's permission rules, never widens them: a rule of a project's
 * that the deployment does not allow fails the synth (or the engine's start), naming the setting,
 * the project and the rule.
 */
export function assertProjectRulesWithin(limits: ProjectLimits | undefined, deploymentRules: readonly string[] | undefined, setting: string): void {
  const allowed = deploymentRules ?? [];
  const problems = Object.entries(limits ?? {}).flatMap(([projectId, limit]) => (limit.permissionRules ?? [])
    .filter((rule) => !allowed.includes(rule))
    .map((rule) => `project ${projectId}: permissionRules names ${JSON.stringify(rule)}, which the deployment's permissionRules do not allow (${allowed.length ? allowed.join(', ') : 'none'}): a project may narrow them, never widen them`));
  if (problems.length) throw new Error(`${setting}: ${problems.join('; ')}`);
}

/** A project's caps: its own entry over the `*` entry, field by field. */
export function projectLimitOf(limits: ProjectLimits | undefined, projectId: string): ProjectLimit {
  const merged: { -readonly [K in keyof ProjectLimit]: ProjectLimit[K] } = {};
  for (const entry of [limits?.[EVERY_PROJECT], limits?.[projectId]]) {
    for (const [key, value] of Object.entries(entry ?? {})) if (value !== undefined) Object.assign(merged, { [key]: value });
  }
  return merged;
}

/** What a session asks for that its project's caps refuse: each named by its field, before anything runs. */
export function assertWithinProjectLimit(
  input: { projectId: string; runtime?: Runtime; maxBudgetUsd?: number; timeoutSeconds?: number },
  limits: ProjectLimits | undefined,
): void {
  if (!limits) return;
  const limit = projectLimitOf(limits, input.projectId);
  const errors: FieldError[] = [];
  const capped = `for project ${input.projectId} (this deployment's cap)`;
  if (limit.maxBudgetUsd !== undefined && input.maxBudgetUsd !== undefined && input.maxBudgetUsd > limit.maxBudgetUsd) {
    errors.push({ field: 'maxBudgetUsd', message: `must be at most ${limit.maxBudgetUsd} ${capped}` });
  }
  if (limit.timeoutSeconds !== undefined && input.timeoutSeconds !== undefined && input.timeoutSeconds > limit.timeoutSeconds) {
    errors.push({ field: 'timeoutSeconds', message: `must be at most ${limit.timeoutSeconds} ${capped}` });
  }
  const runtime = input.runtime ?? 'lambda';
  if (limit.runtimes && !limit.runtimes.includes(runtime)) {
    errors.push({ field: 'runtime', message: `must be ${limit.runtimes.join(' or ')} ${capped}, not ${runtime}` });
  }
  if (errors.length) throw new InvalidInputError(errors);
}

/**
 * The input within its project's caps, with each cap as its value where it names none, so no
 * session runs uncapped: a missing timeoutSeconds becomes the cap or the runtime's default, the
 * lower; the project's permission rules, where it has its own, go with it to the runner.
 */
export function withinProjectLimit<T extends { projectId: string; runtime: Runtime; maxBudgetUsd?: number; timeoutSeconds?: number }>(
  input: T,
  limits: ProjectLimits | undefined,
): T & { permissionRules?: string[] } {
  assertWithinProjectLimit(input, limits);
  const limit = projectLimitOf(limits, input.projectId);
  return {
    ...input,
    ...(input.maxBudgetUsd === undefined && limit.maxBudgetUsd !== undefined ? { maxBudgetUsd: limit.maxBudgetUsd } : {}),
    ...(input.timeoutSeconds === undefined && limit.timeoutSeconds !== undefined
      ? { timeoutSeconds: Math.min(limit.timeoutSeconds, defaultTimeoutSeconds(input.runtime)) }
      : {}),
    ...(limit.permissionRules ? { permissionRules: [...limit.permissionRules] } : {}),
  };
}
