import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { readApiKey } from '../../lib/claude/api-key.js';
import { toolSettingsFromEnv } from '../../lib/claude/claude-args.js';
import { DEFAULT_IDLE_TIMEOUT_MS, runSessionTask, type RunnerInput } from '../../lib/claude/run-session-task.js';
import { TranscriptStore } from '../../lib/claude/transcript-store.js';

const logger = new Logger();
const tracer = new Tracer();
const secrets = new SecretsManagerClient({});
let apiKey: Promise<string> | undefined; // read once per cold start
const transcripts = TranscriptStore.fromEnv(process.env);

export const handler = middy(async (input: RunnerInput, context: Context) => {
  const { session } = input;
  logger.appendKeys({ sessionId: session.sessionId, projectId: session.projectId, executionArn: session.executionArn });
  apiKey ??= readApiKey(secrets, process.env.API_KEY_SECRET_ARN!).catch((err: unknown) => {
    apiKey = undefined; // a fixed secret is picked up by the next invocation
    throw err;
  });
  logger.info('running Claude', { promptChars: session.promptChars, promptSha256: session.promptSha256 });
  const result = await runSessionTask(input, {
    endpoint: { apiKey: await apiKey, baseUrl: process.env.ANTHROPIC_BASE_URL },
    idleTimeoutMs: Number(process.env.CLAUDE_IDLE_TIMEOUT_MS ?? DEFAULT_IDLE_TIMEOUT_MS),
    maxRetries: Number(process.env.CLAUDE_CODE_MAX_RETRIES ?? 2),
    remainingMs: () => context.getRemainingTimeInMillis(),
    transcripts,
    ...toolSettingsFromEnv(process.env),
  });
  const { status, usage, numTurns, totalCostUsd, durationMs, error } = result.record;
  logger.info('Claude finished', { status, usage, numTurns, totalCostUsd, durationMs, error });
  return result;
})
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger, { resetKeys: true }));
