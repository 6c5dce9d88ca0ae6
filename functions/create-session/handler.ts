import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { ProjectSlots } from '../../lib/sessions/project-slots.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { lazy } from '../shared/lazy.js';
import { createSession, sessionPolicyFromEnv, type ValidateInputEvent } from '../../lib/sessions/session-creation.js';

const logger = new Logger();
const tracer = new Tracer();
const policy = sessionPolicyFromEnv(process.env);

const documents = DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})));
const sessions = lazy(() => new SessionRepository(documents, getStringFromEnv({ key: 'TABLE_NAME' })));
// A project's own concurrency limit is read only where the deployment sets none of its own.
const slots = lazy(() => (policy.maxConcurrentSessions ? undefined : new ProjectSlots(documents, getStringFromEnv({ key: 'TABLE_NAME' }))));

export const handler = middy(async (event: ValidateInputEvent) => {
  const prepared = await createSession(event, policy, sessions(), slots());
  const { sessionId, projectId, promptChars, promptSha256, trigger } = prepared.session;
  logger.info('session created', { sessionId, projectId, promptChars, promptSha256, trigger });
  return prepared;
})
  // Its response carries the prompt: never into a trace.
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger));
