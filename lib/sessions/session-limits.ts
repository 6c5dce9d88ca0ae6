// The input's limits and defaults, with no schema library: a cold `run` reads them before zod loads.

export const MAX_PROMPT_CHARS = 100_000;
/** Lambda's hard limit is 900 s; the runner keeps a minute to report and close. */
export const MAX_LAMBDA_TIMEOUT_SECONDS = 840;
export const MAX_FARGATE_TIMEOUT_SECONDS = 28_800;
export const DEFAULT_LAMBDA_TIMEOUT_SECONDS = 840;
export const DEFAULT_FARGATE_TIMEOUT_SECONDS = 7_200;

/** A session's run limit when its input sets none. */
export function defaultTimeoutSeconds(runtime: 'lambda' | 'fargate'): number {
  return runtime === 'fargate' ? DEFAULT_FARGATE_TIMEOUT_SECONDS : DEFAULT_LAMBDA_TIMEOUT_SECONDS;
}
/**
 * ECS container overrides are limited to 8 KiB in all, and carry the input with what the
 * workflow adds (derived fields, the milestone's pointer, the task token).
 */
export const MAX_FARGATE_INPUT_BYTES = 5_500;
/** Room the platform gives a Fargate task past the runner's own limit, to report. */
export const FARGATE_REPORT_MARGIN_SECONDS = 300;
