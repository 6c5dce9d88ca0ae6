// The Fargate entry point of the runner image: the session and task token come as environment
// variables (ECS container overrides), the prompt from the execution's input; the outcome goes
// back on the task token.
import { Logger } from '@aws-lambda-powertools/logger';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { readApiKey } from '../../lib/claude/api-key.js';
import { toolSettingsFromEnv } from '../../lib/claude/claude-args.js';
import { StepFunctionsCallbacks, executionPrompt, runFargateTask } from '../../lib/claude/fargate-task.js';
import { DEFAULT_IDLE_TIMEOUT_MS, type RunnerInput } from '../../lib/claude/run-session-task.js';
import { TranscriptStore } from '../../lib/claude/transcript-store.js';
import type { SessionStart } from '../../lib/sessions/execution-input.js';

const logger = new Logger({ serviceName: 'claude-sessions-task' });

async function main(): Promise<number> {
  const { SESSION_JSON, TASK_TOKEN } = process.env;
  if (!SESSION_JSON || !TASK_TOKEN) {
    logger.error('SESSION_JSON and TASK_TOKEN must be set (they come from the workflow\'s container overrides)');
    return 2;
  }
  const session = JSON.parse(SESSION_JSON) as SessionStart;
  const milestone = JSON.parse(process.env.MILESTONE_JSON ?? '{"item":null}') as RunnerInput['milestone'];
  const retry = JSON.parse(process.env.RETRY_JSON ?? 'null') as RunnerInput['retry'];
  logger.appendKeys({ sessionId: session.sessionId, projectId: session.projectId, executionArn: session.executionArn });
  const sfn = new SFNClient(process.env.AWS_ENDPOINT_URL_SFN ? { endpoint: process.env.AWS_ENDPOINT_URL_SFN } : {});
  const callbacks = new StepFunctionsCallbacks(sfn, TASK_TOKEN);
  try {
    // First thing: a cold start that pulled the image has used part of HeartbeatSeconds already.
    await callbacks.heartbeat();
    logger.info('running Claude', { promptChars: session.promptChars, promptSha256: session.promptSha256 });
    const outcome = await runFargateTask(
      { session, milestone, retry },
      () => executionPrompt(sfn, session.executionArn),
      {
        endpoint: { apiKey: await apiKey(), baseUrl: process.env.ANTHROPIC_BASE_URL },
        idleTimeoutMs: Number(process.env.CLAUDE_IDLE_TIMEOUT_MS ?? DEFAULT_IDLE_TIMEOUT_MS),
        maxRetries: Number(process.env.CLAUDE_CODE_MAX_RETRIES ?? 2),
        transcripts: TranscriptStore.fromEnv(process.env),
        ...toolSettingsFromEnv(process.env),
      },
      callbacks,
      Number(process.env.HEARTBEAT_INTERVAL_SECONDS ?? 30) * 1000,
    );
    logger.info('task reported', { outcome });
    return 0;
  } catch (err) {
    // Could not run or could not report: say so on the token if possible, and exit non-zero.
    logger.error('task failed', err as Error);
    await callbacks.fail((err as Error).name ?? 'Error', (err as Error).message ?? String(err)).catch(() => undefined);
    return 1;
  }
}

async function apiKey(): Promise<string> {
  const key = process.env.API_KEY_SECRET_ARN
    ? await readApiKey(new SecretsManagerClient({}), process.env.API_KEY_SECRET_ARN)
    : process.env.ANTHROPIC_API_KEY;
  if (!key) throw new Error('neither API_KEY_SECRET_ARN nor ANTHROPIC_API_KEY is set');
  return key;
}

process.exitCode = await main();
