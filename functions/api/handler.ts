import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { StepFunctionsStarter } from '../../lib/api/session-starter.js';
import { SessionRepository } from '../../lib/sessions/session-repository.js';
import { MilestoneRepository } from '../../lib/sessions/milestone-repository.js';
import { TranscriptStore } from '../../lib/claude/transcript-store.js';
import { ProjectSlots } from '../../lib/sessions/project-slots.js';
import { sessionPolicyFromEnv } from '../../lib/sessions/session-creation.js';
import { createApiHandler } from '../../lib/api/router.js';
import type { ApiOperationsDeps } from '../../lib/api/api-operations.js';
import { lazy } from '../shared/lazy.js';

// Clients once per cold start; the environment at the first request, a missing variable named.
const tracer = new Tracer();
const documentClient = DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})), { marshallOptions: { removeUndefinedValues: true } });
const deps = lazy((): ApiOperationsDeps => {
  const tableName = getStringFromEnv({ key: 'TABLE_NAME' });
  return {
    repository: new SessionRepository(documentClient, tableName),
    milestones: new MilestoneRepository(documentClient, tableName),
    transcripts: TranscriptStore.forBucket(getStringFromEnv({ key: 'TRANSCRIPT_BUCKET' }), process.env, (s3) => tracer.captureAWSv3Client(s3)),
    policy: sessionPolicyFromEnv(process.env),
    slots: new ProjectSlots(documentClient, tableName),
    starter: new StepFunctionsStarter(tracer.captureAWSv3Client(new SFNClient({})), getStringFromEnv({ key: 'STATE_MACHINE_ARN' })),
  };
});

// Traced on AWS only: the same router also serves `claude-sessions serve`.
export const handler = createApiHandler({
  get repository() { return deps().repository; },
  get milestones() { return deps().milestones; },
  get transcripts() { return deps().transcripts; },
  get policy() { return deps().policy; },
  get slots() { return deps().slots; },
  get starter() { return deps().starter; },
})
  // A response carries records, Claude's replies included: never into a trace.
  .use(captureLambdaHandler(tracer, { captureResponse: false }));
