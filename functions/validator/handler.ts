import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { assertWithinBudget, prepareSession, sessionPolicyFromEnv, type ValidateInputEvent } from '../../lib/sessions/workflow-steps.js';

const logger = new Logger();
const tracer = new Tracer();
const policy = sessionPolicyFromEnv(process.env);

// Read only where a monthly budget is set: the month's recorded cost of the project.
const sessions = policy.monthlyBudgetUsd
  ? new SessionRepository(DynamoDBDocumentClient.from(new DynamoDBClient({})), process.env.TABLE_NAME!)
  : undefined;

export const handler = middy(async (event: ValidateInputEvent) => {
  const prepared = prepareSession(event, policy);
  if (sessions) await assertWithinBudget(prepared.session.projectId, policy, (p, since) => sessions.costSince(p, since));
  const { sessionId, projectId, promptChars, promptSha256, trigger } = prepared.session;
  logger.info('session prepared', { sessionId, projectId, promptChars, promptSha256, trigger });
  return prepared;
})
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger));
