import { isAbsolute, resolve } from 'node:path';
import { parseArgs } from 'node:util';

/** `claude-sessions run`'s flags. */
export const RUN_FLAGS = {
  project: { type: 'string' },
  'prompt-file': { type: 'string' },
  task: { type: 'string' },
  'session-id': { type: 'string' },
  mode: { type: 'string' },
  milestone: { type: 'string' },
  runtime: { type: 'string' },
  'max-turns': { type: 'string' },
  'max-budget-usd': { type: 'string' },
  'timeout-seconds': { type: 'string' },
  repo: { type: 'string' },
  ref: { type: 'string' },
  branch: { type: 'string' },
  tools: { type: 'string' },
  provider: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

export type RunFlags = ReturnType<typeof parseRunFlags>['values'];

/** Throws ERR_PARSE_ARGS_* for an unknown flag or a missing value. */
export function parseRunFlags(args: string[]) {
  return parseArgs({ args, options: RUN_FLAGS, allowPositionals: true, strict: true });
}

/** A repository given as a relative path is the one in this directory tree. */
function localRepo(repo: string | undefined): string | undefined {
  if (repo === undefined || /^[a-z][a-z0-9+.-]*:/i.test(repo) || isAbsolute(repo)) return repo;
  return resolve(repo);
}

export function numberFlag(value: string | undefined): number | string | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  // Left as text when not a number, so the schema names the field in its error.
  return value.trim() !== '' && Number.isFinite(n) ? n : value;
}

/**
 * The execution input the flags describe (unchecked: the schema checks it, naming each bad field).
 * What the flags leave out, `startSession` fills in: without --project the milestone's project or
 * `default`, without --session-id a new id (the engine's: that of a Claude CLI booted ahead).
 */
export function runInput(prompt: string | undefined, values: RunFlags, sessionId: string | undefined = values['session-id']): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries({
      prompt: prompt ?? '',
      projectId: values.project,
      taskId: values.task,
      sessionId,
      mode: values.mode ?? (values.milestone ? 'milestone' : undefined),
      milestoneId: values.milestone,
      runtime: values.runtime,
      maxTurns: numberFlag(values['max-turns']),
      maxBudgetUsd: numberFlag(values['max-budget-usd']),
      timeoutSeconds: numberFlag(values['timeout-seconds']),
      // --ref and --branch without --repo still reach the schema, which names what is missing.
      workspace: values.repo ?? values.ref ?? values.branch ? { repo: localRepo(values.repo), ref: values.ref, branch: values.branch } : undefined,
      tools: values.tools?.split(',').map((t) => t.trim()).filter(Boolean),
    }).filter(([, v]) => v !== undefined),
  );
}
