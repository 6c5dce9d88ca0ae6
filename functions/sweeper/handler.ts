import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import { sweepEndedExecutions } from '../../lib/sessions/session-sweeper.js';
import { describeExecution } from '../shared/describe-execution.js';
import { tableStores } from '../shared/table-stores.js';

const logger = new Logger();
const tracer = new Tracer();
const documents = DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})));
const describe = describeExecution(tracer.captureAWSv3Client(new SFNClient({})));
const stores = tableStores(documents);

/** The schedule's tick: the scheduled event carries nothing the sweep needs. */
export const handler = middy(async () => {
  const { repository, milestones, slots } = stores();
  const swept = await sweepEndedExecutions(repository, { milestones, slots, describe });
  for (const session of swept) logger.warn('closed what an execution left open (its event was lost)', { ...session });
  return { swept };
})
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(injectLambdaContext(logger));
