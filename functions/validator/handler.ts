import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import middy from '@middy/core';
import { prepareSession, type ValidateInputEvent } from '../../lib/sessions/workflow-steps.js';

const logger = new Logger();
const tracer = new Tracer();

export const handler = middy(async (event: ValidateInputEvent) => {
  const prepared = prepareSession(event);
  const { sessionId, projectId, promptChars, promptSha256, trigger } = prepared.session;
  logger.info('session prepared', { sessionId, projectId, promptChars, promptSha256, trigger });
  return prepared;
})
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger));
