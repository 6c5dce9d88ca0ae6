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
import { sessionPolicyFromEnv } from '../../lib/sessions/workflow-steps.js';
import { createApiHandler } from './router.js';

// Clients once per cold start.
const documentClient = DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } });

// Traced on AWS only: the same router also serves `claude-sessions serve`.
export const handler = createApiHandler({
  repository: new SessionRepository(documentClient, process.env.TABLE_NAME!),
  milestones: new MilestoneRepository(documentClient, process.env.TABLE_NAME!),
  transcripts: TranscriptStore.fromEnv(process.env),
  policy: sessionPolicyFromEnv(process.env),
  slots: new ProjectSlots(documentClient, process.env.TABLE_NAME!),
  starter: new StepFunctionsStarter(new SFNClient({}), process.env.STATE_MACHINE_ARN!),
}).use(captureLambdaHandler(new Tracer()));
