import { getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { GitHubWebhook, parseGitHubTriggers } from '../../lib/api/github-webhook.js';
import { createGitHubWebhookHandler } from '../../lib/api/router.js';
import { StepFunctionsStarter } from '../../lib/api/session-starter.js';
import { readWebhookSecret } from '../../lib/api/webhook-secret.js';
import { checkedTokenScopes } from '../../lib/claude/repository-scopes.js';
import { TranscriptStore } from '../../lib/claude/transcript-store.js';
import { MilestoneRepository } from '../../lib/sessions/milestone-repository.js';
import { lazy } from '../shared/lazy.js';

// Clients once per cold start; the environment at the first delivery, a missing variable named.
const tracer = new Tracer();
const secrets = tracer.captureAWSv3Client(new SecretsManagerClient({}));
const documents = DynamoDBDocumentClient.from(tracer.captureAWSv3Client(new DynamoDBClient({})));
const webhook = lazy(() => {
  const secretId = getStringFromEnv({ key: 'WEBHOOK_SECRET_ARN' });
  return new GitHubWebhook({
    secret: readWebhookSecret(secrets, secretId),
    triggers: parseGitHubTriggers(getStringFromEnv({ key: 'GITHUB_TRIGGERS' }), 'GITHUB_TRIGGERS')!,
    gitTokenScopes: checkedTokenScopes(process.env.GIT_TOKEN_SCOPES?.split(',').filter(Boolean), 'GIT_TOKEN_SCOPES'),
    // An issue's milestone opened, a pull request's closed: MILESTONE# items and the closed transcript's tag only.
    milestones: new MilestoneRepository(documents, getStringFromEnv({ key: 'TABLE_NAME' })),
    transcripts: TranscriptStore.forBucket(getStringFromEnv({ key: 'TRANSCRIPT_BUCKET' }), process.env, (s3) => tracer.captureAWSv3Client(s3)),
    starter: new StepFunctionsStarter(tracer.captureAWSv3Client(new SFNClient({})), getStringFromEnv({ key: 'STATE_MACHINE_ARN' })),
  });
});

// A delivery carries issue text: never into a trace.
export const handler = createGitHubWebhookHandler(webhook).use(captureLambdaHandler(tracer, { captureResponse: false }));
