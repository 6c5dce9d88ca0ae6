import { AssumeRoleCommand, type STSClient } from '@aws-sdk/client-sts';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { readApiKey } from './api-key.js';
import type { ClaudeEndpoint, ModelCredentials } from './claude-process.js';
import { invokeGrant, invokeStatements, modelForProject } from './model-provider.js';
import type { RunnerEnvironment } from './runner-environment.js';
import type { SessionStart } from '../sessions/execution-input.js';

/** What a deployed runner reaches to give Claude its endpoint: the key's secret, or STS for Bedrock-only credentials. */
export interface EndpointClients {
  secrets: () => SecretsManagerClient;
  sts: () => STSClient;
}

/** Role chaining (a Lambda's or a task's role assuming another) caps a session at one hour. */
const MAX_CHAINED_SECONDS = 3_600;
const MIN_ASSUMED_SECONDS = 900;

export class ModelCredentialsError extends Error {
  override readonly name = 'ModelCredentialsError';
}

/**
 * Claude's endpoint for each session on a deployed runner (docs/ARCHITECTURE.md#bedrock): the
 * Anthropic key from its secret (read once per runner), or Bedrock with the session's model
 * (its project's application inference profile, if it has one) and credentials of the model
 * role, assumed for this session alone, which can invoke the model and nothing else.
 * `env` is the runner's process environment (AWS_REGION, and base URLs a test points elsewhere).
 */
export function sessionEndpoints(runner: RunnerEnvironment, clients: EndpointClients, env: NodeJS.ProcessEnv = process.env) {
  let apiKey: Promise<string> | undefined;
  return async (session: SessionStart): Promise<ClaudeEndpoint> => {
    const settings = runner.model;
    if (settings.provider === 'anthropic') {
      apiKey ??= anthropicKey(runner, clients, env).catch((err: unknown) => {
        apiKey = undefined; // a fixed secret is picked up by the next session
        throw err;
      });
      return { apiKey: await apiKey, baseUrl: env.ANTHROPIC_BASE_URL || undefined, model: settings.model };
    }
    const region = env.AWS_REGION;
    if (!region) throw new ModelCredentialsError('AWS_REGION is not set: Bedrock is invoked in the runner\'s region');
    const baseUrl = env.ANTHROPIC_BEDROCK_BASE_URL || undefined;
    const model = modelForProject(settings, session.projectId)!;
    const models = [model, ...(settings.smallFastModel ? [settings.smallFastModel] : [])];
    return {
      provider: 'bedrock',
      region,
      model,
      smallFastModel: settings.smallFastModel,
      baseUrl,
      credentials: await modelCredentials(runner, clients, session, models, region, Boolean(baseUrl)),
    };
  };
}

async function anthropicKey(runner: RunnerEnvironment, clients: EndpointClients, env: NodeJS.ProcessEnv): Promise<string> {
  // A local Fargate task (lib/local/local-fargate.ts) is given the key itself.
  if (!runner.apiKeySecretArn && env.ANTHROPIC_API_KEY) return env.ANTHROPIC_API_KEY;
  if (!runner.apiKeySecretArn) throw new Error('API_KEY_SECRET_ARN is not set: the deployment names the secret with the Anthropic API key');
  return readApiKey(clients.secrets(), runner.apiKeySecretArn);
}

async function modelCredentials(
  runner: RunnerEnvironment, clients: EndpointClients, session: SessionStart, models: string[], region: string, hasBaseUrl: boolean,
): Promise<ModelCredentials | undefined> {
  if (!runner.modelRoleArn) {
    // A stand-in or a signing gateway at ANTHROPIC_BEDROCK_BASE_URL needs no credentials; Bedrock itself does.
    if (hasBaseUrl) return undefined;
    throw new ModelCredentialsError('MODEL_ROLE_ARN is not set: the deployment names the role Claude invokes Bedrock with');
  }
  const seconds = Math.min(MAX_CHAINED_SECONDS, Math.max(MIN_ASSUMED_SECONDS, session.timeoutSeconds + 120));
  const { Credentials } = await clients.sts().send(new AssumeRoleCommand({
    RoleArn: runner.modelRoleArn,
    // CloudTrail then names the session behind each model call.
    RoleSessionName: `claude-${session.sessionId}`,
    DurationSeconds: seconds,
    // The role may invoke every project's profile; this session only its own models.
    Policy: JSON.stringify(sessionPolicy(runner.modelRoleArn, models, region)),
  }));
  if (!Credentials?.AccessKeyId || !Credentials.SecretAccessKey) {
    throw new ModelCredentialsError(`AssumeRole of ${runner.modelRoleArn} returned no credentials`);
  }
  return {
    accessKeyId: Credentials.AccessKeyId, secretAccessKey: Credentials.SecretAccessKey, sessionToken: Credentials.SessionToken,
    expiration: Credentials.Expiration,
  };
}

/**
 * The session policy: what the assumed credentials may do is the role's policy intersected with
 * this, so one project's Claude cannot invoke (and bill) another project's inference profile.
 */
export function sessionPolicy(roleArn: string, models: string[], region: string): object {
  const [, partition, , , account] = roleArn.split(':');
  return { Version: '2012-10-17', Statement: invokeStatements(invokeGrant(models, { partition: partition!, region, account: account! })) };
}
