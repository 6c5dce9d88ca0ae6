import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { GitHubClient, checkedGitHubApiUrl } from '../../lib/github/github-client.js';
import { readGitHubToken } from '../../lib/github/github-token.js';
import { invokeGitTokenMinter, reportTokenFromMinter } from '../../lib/github/git-token-minter.js';
import { reportSession } from '../../lib/github/session-report.js';
import type { SessionClosedDetail } from '../../lib/sessions/session-events.js';
import { MilestoneRepository } from '../../lib/sessions/milestone-repository.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { lazy } from '../shared/lazy.js';

// Clients once per cold start; the environment at the first event, a missing variable named.
const logger = new Logger();
const tracer = new Tracer();
const documents = DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})));
const secrets = tracer.captureAWSv3Client(new SecretsManagerClient({}));
const lambda = tracer.captureAWSv3Client(new LambdaClient({}));
const deps = lazy(() => {
  const tableName = getStringFromEnv({ key: 'TABLE_NAME' });
  const repository = new SessionRepository(documents, tableName);
  const milestones = new MilestoneRepository(documents, tableName);
  const apiUrl = checkedGitHubApiUrl(process.env.GITHUB_API_URL, 'GITHUB_API_URL');
  // A GitHub App's token per report, scoped to the session's repository (issues and pull requests write), from the
  // report minter, which alone here holds the App's key; else the deployment's token.
  const minter = process.env.REPORT_TOKEN_MINTER_ARN;
  const token = minter
    ? reportTokenFromMinter(invokeGitTokenMinter(lambda, minter, 'the report token minter'), apiUrl)
    : readGitHubToken(secrets, getStringFromEnv({ key: 'GITHUB_TOKEN_SECRET_ARN' }));
  return {
    github: new GitHubClient(apiUrl, token),
    session: (id: string) => repository.get(id), milestone: (id: string, tasksAfter: string) => milestones.view(id, { tasksAfter }),
    recordPullRequest: (id: string, projectId: string, pull: { number: number; url: string }) => milestones.recordPullRequest(id, projectId, pull),
  };
});

/**
 * "Session Closed" of a GitHub session: its pull request and comment. A GitHub failure throws, so
 * Lambda retries the event and then sends it to the dead-letter queue; the session is never written.
 */
export const handler = middy(async (event: EventBridgeEvent<'Session Closed', SessionClosedDetail>) => {
  const outcome = await reportSession(event.detail, deps());
  logger.info('github report', { sessionId: event.detail.sessionId, ...outcome });
  return outcome;
})
  // Claude's reply is in the pull request: never in a trace.
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger));
