import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { reapExecution, type ExecutionStatusChange } from '../../lib/sessions/session-reaper.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';

const logger = new Logger();
const repository = new SessionRepository(DynamoDBDocumentClient.from(new DynamoDBClient({})), process.env.TABLE_NAME!);

export const handler = middy(async (event: EventBridgeEvent<'Step Functions Execution Status Change', ExecutionStatusChange>) => {
  const result = await reapExecution(repository, event.detail);
  logger.info('execution ended', { executionArn: event.detail.executionArn, status: event.detail.status, ...result });
  return result;
}).use(injectLambdaContext(logger));
