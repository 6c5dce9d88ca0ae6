import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import middy from '@middy/core';
import { MilestoneRepository } from '../../lib/sessions/milestone-repository.js';
import { ProjectSlots } from '../../lib/sessions/project-slots.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { sweepEndedExecutions } from '../../lib/sessions/session-sweeper.js';
import { describeExecution } from '../shared/describe-execution.js';
import { lazy } from '../shared/lazy.js';

const logger = new Logger();
const tracer = new Tracer();
const documents = DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})));
const describe = describeExecution(tracer.captureAWSv3Client(new SFNClient({})));
const stores = lazy(() => {
  const tableName = getStringFromEnv({ key: 'TABLE_NAME' });
  return { repository: new SessionRepository(documents, tableName), milestones: new MilestoneRepository(documents, tableName), slots: new ProjectSlots(documents, tableName) };
});

/** The schedule's tick: the scheduled event carries nothing the sweep needs. */
export const handler = middy(async () => {
  const { repository, milestones, slots } = stores();
  const swept = await sweepEndedExecutions(repository, { milestones, slots, describe });
  for (const session of swept) logger.warn('closed what an execution left open (its event was lost)', { ...session });
  return { swept };
})
  .use(captureLambdaHandler(tracer))
  .use(injectLambdaContext(logger));
