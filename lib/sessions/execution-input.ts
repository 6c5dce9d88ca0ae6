import { createHash } from 'node:crypto';
import { v5 as uuidv5, validate as isUuid } from 'uuid';
import { z } from 'zod';
import {
  FARGATE_REPORT_MARGIN_SECONDS, MAX_FARGATE_TIMEOUT_SECONDS, MAX_LAMBDA_TIMEOUT_SECONDS, MAX_PROMPT_BYTES, MAX_PROMPT_CHARS,
  defaultTimeoutSeconds,
} from './session-limits.js';
import { codeCommitUrlProblem } from './codecommit-url.js';


const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** A project's or a task's id: the API's paths take a project id by the same rule. */
export const idField = z.string().regex(ID_PATTERN, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');
const uuidField = z.string().refine((v) => isUuid(v), 'must be a UUID');

const GIT_REF = /^(?!-)(?!.*\.\.)(?!.*\/\/)[A-Za-z0-9._/-]{1,200}(?<![./])$/;

function isRepo(repo: string): boolean {
  if (repo.startsWith('/')) return true; // a local path (the embedded runtime)
  try {
    const url = new URL(repo);
    return (url.protocol === 'https:' || url.protocol === 'file:') && !url.username && !url.password;
  } catch {
    return false;
  }
}

/** A git repository for the session to work on, and the branch it hands back. */
const WorkspaceSchema = z.strictObject({
  repo: z
    .string()
    // A milestone task on Fargate carries it twice (its input, the milestone item) in ECS's 8 KiB of overrides.
    .max(500, 'must be at most 500 characters')
    .refine(isRepo, 'must be an https URL without credentials (they come from the deployment\'s git token), a file:// URL or an absolute path')
    // A CodeCommit URL is signed for its region and repository: one that names neither is refused here.
    .superRefine((repo, ctx) => {
      const problem = isRepo(repo) ? codeCommitUrlProblem(repo) : undefined;
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  ref: z.string().regex(GIT_REF, 'must be a branch, tag or commit name').optional(),
  branch: z
    .string()
    .regex(GIT_REF, 'must be a valid branch name')
    // Which branches are protected is the deployment's (SessionPolicy.protectedBranches).
    .optional(),
});
export type WorkspaceSpec = z.output<typeof WorkspaceSchema>;

export const SESSION_MODES = ['fresh', 'milestone'] as const;
export const RUNTIMES = ['lambda', 'fargate'] as const;
export const TRIGGERS = ['api', 'schedule', 'console', 'cli', 'github'] as const;

/**
 * The one execution input (docs/ARCHITECTURE.md#the-execution-input): API body, schedule payload, console input and
 * CLI all pass through this schema, in their handler and again inside the workflow.
 */
export const ExecutionInput = z
  .strictObject({
    prompt: z
      .string()
      .min(1, 'must not be empty')
      .max(MAX_PROMPT_CHARS, `must be at most ${MAX_PROMPT_CHARS} characters`)
      .refine(
        (prompt) => Buffer.byteLength(JSON.stringify(prompt), 'utf8') <= MAX_PROMPT_BYTES,
        `must be at most ${MAX_PROMPT_BYTES} bytes as JSON in UTF-8 (Step Functions keeps at most 256 KiB of input and state)`,
      ),
    projectId: idField,
    taskId: idField.optional(),
    sessionId: uuidField.optional(),
    mode: z.enum(SESSION_MODES).default('fresh'),
    milestoneId: uuidField.optional(),
    runtime: z.enum(RUNTIMES).default('lambda'),
    maxTurns: z.int().min(1).max(200).optional(),
    maxBudgetUsd: z.number().positive().optional(),
    timeoutSeconds: z.int().min(1).optional(),
    trigger: z.enum(TRIGGERS).default('console'),
    workspace: WorkspaceSchema.optional(),
    // Tool names as the CLI's --tools takes them; which ones a session may name is the deployment's (SessionPolicy.allowedTools).
    tools: z.array(z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/, 'must be tool names such as Read or Bash')).min(1).max(50).optional(),
  })
  .superRefine((input, ctx) => {
    if (input.mode === 'milestone' && !input.milestoneId) {
      ctx.addIssue({ code: 'custom', path: ['milestoneId'], message: 'is required when mode is milestone' });
    }
    if (input.milestoneId && input.mode !== 'milestone') {
      ctx.addIssue({ code: 'custom', path: ['mode'], message: 'must be milestone when milestoneId is given' });
    }
    const limit = input.runtime === 'lambda' ? MAX_LAMBDA_TIMEOUT_SECONDS : MAX_FARGATE_TIMEOUT_SECONDS;
    if (input.timeoutSeconds !== undefined && input.timeoutSeconds > limit) {
      ctx.addIssue({ code: 'custom', path: ['timeoutSeconds'], message: `must be at most ${limit} on the ${input.runtime} runtime` });
    }
  });
export type ExecutionInput = z.output<typeof ExecutionInput>;

/** The project of a session whose caller names none and that is no milestone's task (`startSession`). */
export const DEFAULT_PROJECT_ID = 'default';

export interface FieldError {
  field: string;
  message: string;
}

/** Bad input: names each bad field and says why. Its name is what the workflow's error shows. */
export class InvalidInputError extends Error {
  override readonly name = 'InvalidInputError';
  constructor(readonly errors: FieldError[]) {
    super(`Invalid input: ${errors.map((e) => `${e.field} ${e.message}`).join('; ')}`);
  }
}

/** Parses an execution input or throws InvalidInputError naming every bad field. */
export function parseExecutionInput(raw: unknown): ExecutionInput {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidInputError([{ field: '(input)', message: 'must be a JSON object' }]);
  }
  // A milestoneId says which mode it is: { milestoneId } alone means a milestone task.
  const withMode = 'milestoneId' in raw && !('mode' in raw) ? { ...raw, mode: 'milestone' } : raw;
  const parsed = ExecutionInput.safeParse(withMode);
  if (parsed.success) return parsed.data;
  throw new InvalidInputError(parsed.error.issues.map((issue) => toFieldError(issue, raw as Record<string, unknown>)));
}

function toFieldError(issue: z.core.$ZodIssue, raw: Record<string, unknown>): FieldError {
  if (issue.code === 'unrecognized_keys') {
    return { field: issue.keys.join(', '), message: 'is not a known field' };
  }
  const field = issue.path.length ? issue.path.join('.') : '(input)';
  if (issue.code === 'invalid_type') {
    const given = issue.path.length === 1 ? raw[String(issue.path[0])] : undefined;
    if (given === undefined) return { field, message: 'is required' };
    return { field, message: `must be ${issue.expected === 'int' ? 'a whole number' : `a ${issue.expected}`}, not ${JSON.stringify(given)}` };
  }
  if (issue.code === 'invalid_value') return { field, message: `must be one of ${issue.values.map(String).join(', ')}` };
  return { field, message: issue.message };
}

/**
 * A validated input made ready to store: the session UUID fixed, the prompt reduced to
 * what may be stored about it (its length and hash, never its text). The prompt itself
 * travels beside it (PreparedSession.prompt), so whatever carries a session carries no prompt.
 */
export interface SessionStart extends Omit<ExecutionInput, 'prompt' | 'sessionId' | 'timeoutSeconds'> {
  sessionId: string;
  /** The runner's own limit: the input's, or the runtime's default. */
  timeoutSeconds: number;
  /** The platform's limit on the Fargate task (TimeoutSecondsPath): the runner's plus a margin. */
  platformTimeoutSeconds: number;
  promptSha256: string;
  promptChars: number;
  startedAt: string;
  executionArn: string;
  /** The stack's maxConcurrentSessions, when one is set (AcquireSlot applies it). */
  concurrencyLimit?: number;
  /** Runs of the CLI a transient API failure may take in all (the deployment's runAttempts). @default 1 */
  runAttempts?: number;
  /** Wait before the second attempt, doubled for each later one. @default 15 */
  retryBaseSeconds?: number;
  /** Its project's permission rules (projectLimits), a subset of the runner's; absent: the runner's own. */
  permissionRules?: string[];
  /**
   * With the deployment's sessionRetentionDays: when the item expires once closed (epoch seconds,
   * sessionRetainUntil). Every close writes it as the TTL attribute; without it, nothing expires.
   */
  retainUntil?: number;
}

export function prepareSessionStart(
  raw: unknown,
  context: { executionArn: string; executionName?: string; now?: Date },
): { session: SessionStart; prompt: string } {
  return sessionStartOf(parseExecutionInput(raw), context);
}

/** The same, for an input already validated (CreateSession applies the deployment's caps in between). */
export function sessionStartOf(
  validated: ExecutionInput,
  context: { executionArn: string; executionName?: string; now?: Date },
): { session: SessionStart; prompt: string } {
  const { prompt, ...input } = validated;
  const timeoutSeconds =
    input.timeoutSeconds ?? defaultTimeoutSeconds(input.runtime);
  const session: SessionStart = {
    ...input,
    timeoutSeconds,
    platformTimeoutSeconds: timeoutSeconds + FARGATE_REPORT_MARGIN_SECONDS,
    sessionId: sessionIdForExecution({ inputSessionId: input.sessionId, ...context }),
    promptSha256: promptSha256(prompt),
    promptChars: prompt.length,
    startedAt: (context.now ?? new Date()).toISOString(),
    executionArn: context.executionArn,
  };
  return { session, prompt };
}

/** What a session keeps of its prompt, and how a runner checks the prompt it was given. */
export function promptSha256(prompt: string): string {
  return createHash('sha256').update(prompt).digest('hex');
}

// Fixed namespace for session ids derived from execution ARNs (uuid v5 of the ARN).
const EXECUTION_NAMESPACE = '5f0e5c4a-8d1b-4a57-9a53-0b9c6a0d2f7e';

/**
 * The session id of an execution, computable both by the workflow and by the reaper from
 * an execution event: the input's sessionId, else the execution name when it is a UUID
 * (API, CLI, Scheduler and the console's generated names), else one derived from the ARN.
 */
export function sessionIdForExecution(execution: { inputSessionId?: unknown; executionName?: string; executionArn: string }): string {
  if (typeof execution.inputSessionId === 'string' && isUuid(execution.inputSessionId)) return execution.inputSessionId;
  if (execution.executionName && isUuid(execution.executionName)) return execution.executionName;
  return uuidv5(execution.executionArn, EXECUTION_NAMESPACE);
}

