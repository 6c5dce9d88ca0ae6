// The input's limits and defaults, with no schema library: a cold `run` reads them before zod loads.

export const MAX_PROMPT_CHARS = 100_000;
/** Tools a session may use unless configured otherwise: files in its own working directory, no shell, no web. */
export const DEFAULT_TOOLS = ['Read', 'Glob', 'Grep', 'Edit', 'Write'] as const;
/**
 * Tools that run programs of the model's choosing. On Lambda they run as the runner's own user,
 * where they can read the runner's environment (its role's credentials): a deployment allows them
 * there only by saying so (SessionPolicy.shellOnLambda). On Fargate the CLI runs as a user of its own.
 */
export const SHELL_TOOLS: readonly string[] = ['Bash', 'BashOutput', 'KillShell', 'KillBash', 'Monitor'];
/**
 * The prompt as it travels (UTF-8 of its JSON string): Step Functions limits an execution's
 * input and state to 256 KiB, and the state also carries the session, Claude's reply
 * (2,000 characters, twice) and an error's cause (up to 32 KiB): 64 KiB are kept for those.
 */
export const MAX_PROMPT_BYTES = 192 * 1024;
/** Lambda's hard limit is 900 s; the runner keeps a minute to report and close. */
export const MAX_LAMBDA_TIMEOUT_SECONDS = 840;
export const MAX_FARGATE_TIMEOUT_SECONDS = 28_800;
export const DEFAULT_LAMBDA_TIMEOUT_SECONDS = 840;
export const DEFAULT_FARGATE_TIMEOUT_SECONDS = 7_200;

/** A session's run limit when its input sets none. */
export function defaultTimeoutSeconds(runtime: 'lambda' | 'fargate'): number {
  return runtime === 'fargate' ? DEFAULT_FARGATE_TIMEOUT_SECONDS : DEFAULT_LAMBDA_TIMEOUT_SECONDS;
}
/** Room the platform gives a Fargate task past the runner's own limit, to report. */
export const FARGATE_REPORT_MARGIN_SECONDS = 300;
