import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { reapExecution, type ExecutionStatusChange } from '../../lib/sessions/session-reaper.js';
import { describeExecution } from '../shared/describe-execution.js';
import { tableStores } from '../shared/table-stores.js';

const logger = new Logger();
const tracer = new Tracer();
const documents = DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})));
// For the input EventBridge leaves out of a large execution's event.
const describe = describeExecution(tracer.captureAWSv3Client(new SFNClient({})));
const stores = tableStores(documents);

export const handler = middy(async (event: EventBridgeEvent<'Step Functions Execution Status Change', ExecutionStatusChange>) => {
  const { repository, milestones, slots } = stores();
  const result = await reapExecution(repository, event.detail, { milestones, slots, describe });
  logger.info('execution ended', { executionArn: event.detail.executionArn, status: event.detail.status, ...result });
  return result;
})
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger));
