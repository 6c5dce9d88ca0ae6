import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import middy from '@middy/core';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { publishSessionChanges } from '../../lib/sessions/session-publisher.js';
import { METRIC_NAMESPACE } from '../../lib/sessions/session-events.js';

type MetricUnitValue = (typeof MetricUnit)[keyof typeof MetricUnit];

const logger = new Logger();
const metrics = new Metrics({ namespace: METRIC_NAMESPACE });
const tracer = new Tracer();
const events = tracer.captureAWSv3Client(new EventBridgeClient({}));
const busName = getStringFromEnv({ key: 'EVENT_BUS_NAME', defaultValue: 'default' });

/** The table's stream: a "Session Closed" event and the session metrics for every close, whichever path closed it (and "Session Usage Recorded" for spend written after it). */
export const handler = middy(async (event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> => {
  const { failed } = await publishSessionChanges(event.Records, {
    events,
    busName,
    metric: (name, unit, value, dimensions) => {
      if (!dimensions) return metrics.addMetric(name, unit as MetricUnitValue, value);
      // Per-project and per-error figures in their own EMF blobs, so the main set keeps low cardinality.
      const single = metrics.singleMetric();
      for (const [key, v] of Object.entries(dimensions)) single.addDimension(key, v);
      single.addMetric(name, unit as MetricUnitValue, value);
    },
    log: (message, fields) => logger.info(message, fields),
  });
  return { batchItemFailures: failed.map((itemIdentifier) => ({ itemIdentifier })) };
})
  .use(captureLambdaHandler(tracer, { captureResponse: false }))
  .use(logMetrics(metrics))
  .use(injectLambdaContext(logger));
