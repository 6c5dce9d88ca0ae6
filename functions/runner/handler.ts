import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { STSClient } from '@aws-sdk/client-sts';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { deployedRunnerConfig } from '../../lib/claude/runner-config.js';
import { readRunnerEnvironment } from '../../lib/claude/runner-environment.js';
import { runSessionTask, type RunnerInput } from '../../lib/claude/run-session-task.js';
import { TranscriptStore } from '../../lib/claude/transcript-store.js';
import { describeExecutionWatch } from '../../lib/claude/execution-watch.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';

const logger = new Logger();
const tracer = new Tracer();
const runner = readRunnerEnvironment(); // once per cold start: a bad setting fails the init, naming it
// AWS does not stop this invocation when its execution ends: it asks, and records what a stopped run spent.
const sfn = tracer.captureAWSv3Client(new SFNClient({}));
const sessions = runner.sessionTable
  ? new SessionRepository(DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})), { marshallOptions: { removeUndefinedValues: true } }), runner.sessionTable)
  : undefined;
const secrets = tracer.captureAWSv3Client(new SecretsManagerClient({}));
let sts: STSClient | undefined;
let lambda: LambdaClient | undefined;
const config = deployedRunnerConfig(runner, {
  secrets: () => secrets,
  sts: () => (sts ??= tracer.captureAWSv3Client(new STSClient({}))),
  lambda: () => (lambda ??= tracer.captureAWSv3Client(new LambdaClient({}))),
  transcripts: TranscriptStore.forBucket(runner.transcriptBucket, process.env, (s3) => tracer.captureAWSv3Client(s3)),
  // The function's own role signs git's password for CodeCommit workspaces (resolved only when one needs it).
  codeCommitCredentials: fromNodeProviderChain(),
}, {
  // A Lambda execution environment holds this runtime and what it starts: after a run, every later
  // process of its user is the run's, and goes (one that cleared its environment too).
  ownsSandbox: true,
});

export const handler = middy(async (input: RunnerInput, context: Context) => {
  const { session } = input;
  logger.appendKeys({ sessionId: session.sessionId, projectId: session.projectId, executionArn: session.executionArn });
  logger.info('running Claude', { promptChars: session.promptChars, promptSha256: session.promptSha256, provider: runner.model.provider });
  const result = await runSessionTask(input, {
    ...config,
    remainingMs: () => context.getRemainingTimeInMillis(),
    // The invocation's request id: a retried invoke of the same attempt is another, and starts no Claude.
    watch: sessions ? describeExecutionWatch(sfn, session.executionArn, sessions, context.awsRequestId) : undefined,
  });
  const { status, usage, numTurns, totalCostUsd, durationMs, error } = result.record;
  logger.info('Claude finished', { status, usage, numTurns, totalCostUsd, durationMs, error });
  return result;
})
  // Its response is the record, Claude's reply included: never into a trace.
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger, { resetKeys: true }));
