import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { SFNClient, SendTaskFailureCommand } from '@aws-sdk/client-sfn';
import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { failStoppedTask, type TaskStateChange } from '../../lib/claude/stopped-task.js';

const logger = new Logger();
const tracer = new Tracer();
const sfn = tracer.captureAWSv3Client(new SFNClient({}));

export const handler = middy(async (event: EventBridgeEvent<'ECS Task State Change', TaskStateChange>) => {
  const outcome = await failStoppedTask(event.detail, async (taskToken, error, cause) => {
    await sfn.send(new SendTaskFailureCommand({ taskToken, error, cause }));
  });
  // The token is a credential for the state: never logged.
  logger.info('task stopped', { taskArn: event.detail.taskArn, stopCode: event.detail.stopCode, outcome });
  return { outcome };
})
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger));
