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
import { readGitToken } from '../../lib/claude/git-token.js';
import { invokeGitTokenMinter } from '../../lib/github/git-token-minter.js';
import { sessionEndpoints } from '../../lib/claude/model-endpoint.js';
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
const transcripts = TranscriptStore.forBucket(runner.transcriptBucket, process.env, (s3) => tracer.captureAWSv3Client(s3));
// The function's own role signs git's password for CodeCommit workspaces (resolved only when one needs it).
const codeCommitCredentials = fromNodeProviderChain();
let sts: STSClient | undefined;
// git's token: a GitHub App's, minted per repository by the minter (which alone holds the App's key), else the deployment's secret.
const gitToken = runner.gitTokenMinterArn
  ? invokeGitTokenMinter(tracer.captureAWSv3Client(new LambdaClient({})), runner.gitTokenMinterArn)
  : runner.gitTokenSecretArn ? () => readGitToken(secrets, runner.gitTokenSecretArn!) : undefined;
const endpointFor = sessionEndpoints(runner, { secrets: () => secrets, sts: () => (sts ??= tracer.captureAWSv3Client(new STSClient({}))) });

export const handler = middy(async (input: RunnerInput, context: Context) => {
  const { session } = input;
  logger.appendKeys({ sessionId: session.sessionId, projectId: session.projectId, executionArn: session.executionArn });
  logger.info('running Claude', { promptChars: session.promptChars, promptSha256: session.promptSha256, provider: runner.model.provider });
  const result = await runSessionTask(input, {
    sessionEndpoint: endpointFor,
    idleTimeoutMs: runner.idleTimeoutMs,
    maxRetries: runner.maxApiRetries,
    tools: runner.tools,
    permissionMode: runner.permissionMode,
    permissionRules: runner.permissionRules,
    // A Lambda execution environment holds this runtime and what it starts: after a run, every later
    // process of its user is the run's, and goes (one that cleared its environment too).
    ownsSandbox: true,
    remainingMs: () => context.getRemainingTimeInMillis(),
    transcripts,
    gitToken,
    gitTokenScopes: runner.gitTokenScopes,
    trustedSettingsRepositories: runner.trustedSettingsRepositories,
    maxCloneMiB: runner.maxCloneMiB,
    codeCommitCredentials,
    // The invocation's request id: a retried invoke of the same attempt is another, and starts no Claude.
    watch: sessions ? describeExecutionWatch(sfn, session.executionArn, sessions, context.awsRequestId) : undefined,
    savePatch: transcripts ? (sessionId, patch) => transcripts.savePatch(sessionId, patch) : undefined,
  });
  const { status, usage, numTurns, totalCostUsd, durationMs, error } = result.record;
  logger.info('Claude finished', { status, usage, numTurns, totalCostUsd, durationMs, error });
  return result;
})
  // Its response is the record, Claude's reply included: never into a trace.
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger, { resetKeys: true }));
