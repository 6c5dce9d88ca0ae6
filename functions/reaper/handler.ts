import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { reapExecution, type ExecutionStatusChange } from '../../lib/sessions/session-reaper.js';
import { MilestoneRepository } from '../../lib/sessions/milestone-repository.js';
import { ProjectSlots } from '../../lib/sessions/project-slots.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';

const logger = new Logger();
const tracer = new Tracer();
const documents = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const repository = new SessionRepository(documents, process.env.TABLE_NAME!);
const milestones = new MilestoneRepository(documents, process.env.TABLE_NAME!);
const slots = new ProjectSlots(documents, process.env.TABLE_NAME!);

export const handler = middy(async (event: EventBridgeEvent<'Step Functions Execution Status Change', ExecutionStatusChange>) => {
  const result = await reapExecution(repository, event.detail, { milestones, slots });
  logger.info('execution ended', { executionArn: event.detail.executionArn, status: event.detail.status, ...result });
  return result;
})
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger));
