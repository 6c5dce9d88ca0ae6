// The Fargate entry point of the runner image: the session and task token come as environment
// variables (ECS container overrides), the prompt from the execution's input; the outcome goes
// back on the task token.
import { Logger } from '@aws-lambda-powertools/logger';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { readApiKey } from '../../lib/claude/api-key.js';
import { readGitToken } from '../../lib/claude/git-token.js';
import { StepFunctionsCallbacks, executionPrompt, runFargateTask } from '../../lib/claude/fargate-task.js';
import { readRunnerEnvironment, type RunnerEnvironment } from '../../lib/claude/runner-environment.js';
import type { RunnerInput } from '../../lib/claude/run-session-task.js';
import { TranscriptStore } from '../../lib/claude/transcript-store.js';
import type { SessionStart } from '../../lib/sessions/execution-input.js';

const logger = new Logger({ serviceName: 'claude-sessions-task' });
// On ECS there is no Lambda trace context for the Tracer to attach segments to (and Fargate sets
// AWS_EXECUTION_ENV, which would switch it on): it stays off, and wraps clients as a no-op.
const tracer = new Tracer({ serviceName: 'claude-sessions-task', enabled: false });

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
  const sfn = tracer.captureAWSv3Client(new SFNClient({}));
  const callbacks = new StepFunctionsCallbacks(sfn, TASK_TOKEN);
  try {
    const runner = readRunnerEnvironment();
    const transcripts = TranscriptStore.forBucket(runner.transcriptBucket, process.env, (s3) => tracer.captureAWSv3Client(s3));
    // First thing: a cold start that pulled the image has used part of HeartbeatSeconds already.
    await callbacks.heartbeat();
    logger.info('running Claude', { promptChars: session.promptChars, promptSha256: session.promptSha256 });
    const outcome = await runFargateTask(
      { session, milestone, retry },
      () => executionPrompt(sfn, session.executionArn),
      {
        endpoint: { apiKey: await apiKey(runner), baseUrl: process.env.ANTHROPIC_BASE_URL },
        idleTimeoutMs: runner.idleTimeoutMs,
        maxRetries: runner.maxApiRetries,
        tools: runner.tools,
        permissionMode: runner.permissionMode,
        transcripts,
        gitToken: runner.gitTokenSecretArn ? () => readGitToken(new SecretsManagerClient({}), runner.gitTokenSecretArn!) : undefined,
        savePatch: transcripts ? (sessionId, patch) => transcripts.savePatch(sessionId, patch) : undefined,
      },
      callbacks,
      runner.heartbeatIntervalSeconds * 1000,
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

/** From the deployment's secret; a local task (lib/local/local-fargate.ts) is given the key itself. */
async function apiKey(runner: RunnerEnvironment): Promise<string> {
  const key = runner.apiKeySecretArn
    ? await readApiKey(tracer.captureAWSv3Client(new SecretsManagerClient({})), runner.apiKeySecretArn)
    : process.env.ANTHROPIC_API_KEY;
  if (!key) throw new Error('neither API_KEY_SECRET_ARN nor ANTHROPIC_API_KEY is set');
  return key;
}

process.exitCode = await main();
