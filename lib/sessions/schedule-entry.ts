import { z } from 'zod';
import { InvalidInputError, parseExecutionInput, type ExecutionInput } from './execution-input.js';

/** One scheduled session, as declared in cdk.json context `schedules`. */
const ScheduleEntrySchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 _ . -'),
  expression: z.string().regex(/^(cron|rate|at)\(.+\)$/, 'must be cron(...), rate(...) or at(...)'),
  // A typo would otherwise pass synth and fail the deploy (Scheduler refuses an unknown zone).
  timezone: z.string().refine(isTimeZone, 'must be an IANA time zone such as Europe/Paris or UTC').optional(),
  enabled: z.boolean().default(true),
  projectId: z.unknown().optional(),
  prompt: z.unknown().optional(),
  mode: z.unknown().optional(),
  // A project the deployment caps to fargate (projectLimits) can have schedules only if they can say so.
  runtime: z.unknown().optional(),
  maxTurns: z.unknown().optional(),
  maxBudgetUsd: z.unknown().optional(),
  timeoutSeconds: z.unknown().optional(),
  workspace: z.unknown().optional(),
});

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

export interface ScheduleEntry {
  name: string;
  expression: string;
  timezone?: string;
  enabled: boolean;
  /** The execution input the schedule sends: no sessionId, so each run gets a fresh one. */
  input: ExecutionInput;
}

export class InvalidScheduleError extends Error {
  override readonly name = 'InvalidScheduleError';
}

/** Parses the `schedules` context (an array, or its JSON text from `-c schedules='[...]'`). */
export function parseSchedules(context: unknown): ScheduleEntry[] {
  let raw = context ?? [];
  if (typeof raw === 'string') {
    try {
      raw = JSON.parse(raw);
    } catch {
      throw new InvalidScheduleError('context schedules is not valid JSON');
    }
  }
  if (!Array.isArray(raw)) throw new InvalidScheduleError('context schedules must be a JSON array');
  const names = new Set<string>();
  return raw.map((item, index) => {
    const label = `schedules[${index}]${item && typeof item === 'object' && 'name' in item ? ` (${String(item.name)})` : ''}`;
    const parsed = ScheduleEntrySchema.safeParse(item);
    const problems: string[] = [];
    if (!parsed.success) {
      problems.push(
        ...parsed.error.issues.map((i) =>
          i.code === 'unrecognized_keys' ? `${i.keys.join(', ')} is not a known field` : `${i.path.join('.') || '(entry)'} ${i.message}`,
        ),
      );
    }
    const { name, expression, timezone, enabled, ...fields } = parsed.success
      ? parsed.data
      : { name: '', expression: '', timezone: undefined, enabled: true, ...pickInputFields(item) };
    const body = Object.fromEntries(Object.entries({ ...fields, trigger: 'schedule' }).filter(([, v]) => v !== undefined));
    let input: ExecutionInput | undefined;
    try {
      input = parseExecutionInput(body);
    } catch (err) {
      if (!(err instanceof InvalidInputError)) throw err;
      problems.push(...err.errors.map((e) => `${e.field} ${e.message}`));
    }
    if (parsed.success && names.has(name)) problems.push('name is used by another schedule');
    if (problems.length || !input) throw new InvalidScheduleError(`${label}: ${problems.join('; ')}`);
    names.add(name);
    return { name, expression, timezone, enabled, input };
  });
}

function pickInputFields(item: unknown): Record<string, unknown> {
  if (!item || typeof item !== 'object') return {};
  const { projectId, prompt, mode, runtime, maxTurns, maxBudgetUsd, timeoutSeconds, workspace } = item as Record<string, unknown>;
  return { projectId, prompt, mode, runtime, maxTurns, maxBudgetUsd, timeoutSeconds, workspace };
}
