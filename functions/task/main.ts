// The Fargate entry point of the runner image: the session and task token come as environment
// variables (ECS container overrides), the prompt from the execution's input; the outcome goes
// back on the task token.
import { Logger } from '@aws-lambda-powertools/logger';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { STSClient } from '@aws-sdk/client-sts';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { StepFunctionsCallbacks, executionPrompt, runFargateTask } from '../../lib/claude/fargate-task.js';
import { deployedRunnerConfig } from '../../lib/claude/runner-config.js';
import { readRunnerEnvironment } from '../../lib/claude/runner-environment.js';
import type { RunnerInput } from '../../lib/claude/run-session-task.js';
import { TranscriptStore } from '../../lib/claude/transcript-store.js';
import { describeExecutionWatch } from '../../lib/claude/execution-watch.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
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
    // First thing: a cold start that pulled the image has used part of HeartbeatSeconds already.
    await callbacks.heartbeat();
    logger.info('running Claude', { promptChars: session.promptChars, promptSha256: session.promptSha256 });
    if (runner.separateUser && process.getuid?.() !== 0) {
      logger.warn('the task is not root: the Claude CLI runs as the task\'s own user, and a shell it starts can read the task\'s environment');
    }
    // One client for both secrets a session may read (the API key, a git token).
    let secrets: SecretsManagerClient | undefined;
    const secretsClient = () => (secrets ??= tracer.captureAWSv3Client(new SecretsManagerClient({})));
    const outcome = await runFargateTask(
      // RunTask names the family, so the newest image runs executions started before a deploy too: their definition says its contract.
      { session, milestone, retry, contract: Number(process.env.RUNNER_CONTRACT) },
      () => executionPrompt(sfn, session.executionArn),
      {
        ...deployedRunnerConfig(runner, {
          secrets: secretsClient,
          sts: () => tracer.captureAWSv3Client(new STSClient({})),
          // The git token minter: a GitHub App's key never reaches the task, only a token for its one repository.
          lambda: () => tracer.captureAWSv3Client(new LambdaClient({})),
          transcripts: TranscriptStore.forBucket(runner.transcriptBucket, process.env, (s3) => tracer.captureAWSv3Client(s3)),
          // The task role signs git's password for CodeCommit workspaces, refreshed as ECS rotates it.
          codeCommitCredentials: fromNodeProviderChain(),
        }),
        // The heartbeat says when nobody waits any more; DescribeExecution says how the execution ended.
        watch: runner.sessionTable
          ? describeExecutionWatch(sfn, session.executionArn, new SessionRepository(
            DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } }), runner.sessionTable), TASK_TOKEN.slice(-64))
          : undefined,
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

process.exitCode = await main();
