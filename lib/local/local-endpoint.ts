import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_BEDROCK_MODEL, MODEL_PROVIDERS, type BedrockEndpoint, type ClaudeEndpoint, type ModelCredentials, type ModelProvider } from '../claude/claude-process.js';
// Types only: the stand-in (an HTTP server, the Bedrock codec) loads when a command starts one.
import type { AnthropicStandIn } from './anthropic-stand-in.js';

// Claude's endpoint for a local command: what the environment sets up, the way Claude Code
// itself reads it, else a stand-in. `run` reads its own shell's environment here and hands the
// endpoint to the engine (lib/local/local-engine.ts), so a run talks to the Claude its shell names.

export class ProviderError extends Error {
  override readonly name = 'ProviderError';
}

/** `--provider`, else CLAUDE_SESSIONS_PROVIDER, else bedrock when Claude Code's own CLAUDE_CODE_USE_BEDROCK says so, else anthropic. */
export function localProvider(flag: string | undefined, env: NodeJS.ProcessEnv): ModelProvider {
  const claudeCodeSays = isSet(env.CLAUDE_CODE_USE_BEDROCK) ? 'bedrock' : 'anthropic';
  const value = flag ?? (env.CLAUDE_SESSIONS_PROVIDER || claudeCodeSays);
  if (!MODEL_PROVIDERS.includes(value as ModelProvider)) {
    const source = flag !== undefined ? '--provider' : 'CLAUDE_SESSIONS_PROVIDER';
    throw new ProviderError(`${source} must be ${MODEL_PROVIDERS.join(' or ')}, not ${JSON.stringify(value)}`);
  }
  return value as ModelProvider;
}

/**
 * Anthropic: ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL). Bedrock: Claude Code's own variables
 * (ANTHROPIC_BEDROCK_BASE_URL, CLAUDE_CODE_SKIP_BEDROCK_AUTH, AWS_REGION, ANTHROPIC_MODEL) and
 * the default AWS credential chain (AWS_PROFILE, keys, SSO …), resolved here: the CLI runs in a
 * HOME of its own, where ~/.aws is not. With none of these, a stand-in the caller closes.
 */
export async function localClaudeEndpoint(
  env: NodeJS.ProcessEnv,
  provider: ModelProvider = 'anthropic',
): Promise<{ endpoint: ClaudeEndpoint; standIn?: AnthropicStandIn; source?: EndpointSource }> {
  const source = await configuredEndpointSource(env, provider);
  if (source) return { endpoint: await source(), source };
  const { AnthropicStandIn } = await import('./anthropic-stand-in.js');
  const standIn = await new AnthropicStandIn({ usage: 'proportional' }).start();
  return { endpoint: standInEndpoint(standIn, provider, env.ANTHROPIC_MODEL || undefined), standIn };
}

/** The endpoint the environment names, or undefined where it names none (a stand-in stands in). */
export async function configuredClaudeEndpoint(env: NodeJS.ProcessEnv, provider: ModelProvider = 'anthropic'): Promise<ClaudeEndpoint | undefined> {
  return (await configuredEndpointSource(env, provider))?.();
}

/**
 * Claude's endpoint for a session, resolved when the session starts: AWS credentials expire (SSO,
 * an assumed role, a credential_process), so a process that outlives them (the engine, `serve`)
 * asks again for each session, as `run` does for its own.
 */
export type EndpointSource = (session?: { timeoutSeconds: number }) => Promise<ClaudeEndpoint>;

/** The environment's endpoint as a source (one credential chain, kept), or undefined where it names none. */
export async function configuredEndpointSource(env: NodeJS.ProcessEnv, provider: ModelProvider = 'anthropic'): Promise<EndpointSource | undefined> {
  const model = env.ANTHROPIC_MODEL || undefined;
  if (provider === 'anthropic') {
    if (!env.ANTHROPIC_API_KEY) return undefined;
    const anthropic: ClaudeEndpoint = { apiKey: env.ANTHROPIC_API_KEY, baseUrl: env.ANTHROPIC_BASE_URL || undefined, model };
    return async () => anthropic;
  }
  const bedrock: BedrockEndpoint = {
    provider: 'bedrock',
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    model: model ?? DEFAULT_BEDROCK_MODEL,
    smallFastModel: env.ANTHROPIC_DEFAULT_HAIKU_MODEL || env.ANTHROPIC_SMALL_FAST_MODEL || undefined,
    baseUrl: env.ANTHROPIC_BEDROCK_BASE_URL || undefined,
  };
  const skipAuth = isSet(env.CLAUDE_CODE_SKIP_BEDROCK_AUTH);
  if (!skipAuth && hasAwsCredentials(env)) {
    const credentials = await awsCredentials(env);
    return async (session) => ({ ...bedrock, credentials: await credentials(session?.timeoutSeconds ?? 0) });
  }
  if (bedrock.baseUrl || skipAuth) return async () => bedrock;
  return undefined;
}

/** A stand-in's endpoint for the provider: the Anthropic API's shape or Bedrock's. */
export function standInEndpoint(standIn: AnthropicStandIn, provider: ModelProvider, model: string | undefined): ClaudeEndpoint {
  return provider === 'bedrock' ? standIn.bedrockEndpoint(model ?? DEFAULT_BEDROCK_MODEL) : { ...standIn.endpoint, model };
}

/** How `run` names where Claude is. */
export function describeEndpoint(endpoint: ClaudeEndpoint, standIn: AnthropicStandIn | undefined): string {
  if (endpoint.provider === 'bedrock') {
    const where = standIn
      ? `the built-in local Bedrock stand-in at ${standIn.url} (no AWS credentials or ANTHROPIC_BEDROCK_BASE_URL set)`
      : endpoint.baseUrl ?? `Amazon Bedrock in ${endpoint.region}`;
    return `Claude (${endpoint.model}) runs through ${where}.`;
  }
  if (standIn) return `No ANTHROPIC_API_KEY set: Claude runs against the built-in local stand-in at ${standIn.url}.`;
  return `Claude runs against ${endpoint.baseUrl ?? 'the Anthropic API'}.`;
}

/** A flag variable as Claude Code reads it: 1 or true. */
function isSet(value: string | undefined): boolean {
  return ['1', 'true'].includes((value ?? '').toLowerCase());
}

/** Whether the default chain has something to find, without probing the network (an instance's metadata service). */
export function hasAwsCredentials(env: NodeJS.ProcessEnv): boolean {
  if (env.AWS_ACCESS_KEY_ID || env.AWS_PROFILE || env.AWS_WEB_IDENTITY_TOKEN_FILE) return true;
  if (env.AWS_CONTAINER_CREDENTIALS_FULL_URI || env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI) return true;
  // A config file alone (regions, SSO profiles not selected) is not credentials: AWS_PROFILE selects one.
  return existsSync(env.AWS_SHARED_CREDENTIALS_FILE || join(env.HOME || homedir(), '.aws', 'credentials'));
}

/** How long past a session's limit its credentials must last: the runner stops Claude 30 s before they expire. */
const CREDENTIALS_MARGIN_MS = 60_000;

/**
 * The default AWS credential chain, kept: the SDK holds what it resolved until it nears its
 * expiry. Credentials that would lapse within `seconds` (a session's limit) are fetched anew, so a
 * session started long after its engine gets its own; what they still cannot cover (a source whose
 * credentials live shorter), the runner stops in time, TIMED_OUT with the spend kept.
 */
async function awsCredentials(env: NodeJS.ProcessEnv): Promise<(seconds: number) => Promise<ModelCredentials>> {
  // Loaded only here: the SDK's credential chain is not on the path of every `run`.
  const { fromNodeProviderChain } = await import('@aws-sdk/credential-providers');
  const chain = fromNodeProviderChain({ profile: env.AWS_PROFILE || undefined });
  const lastsFor = (c: { expiration?: Date }, ms: number) => !c.expiration || c.expiration.getTime() - Date.now() >= ms;
  return async (seconds) => {
    try {
      let credentials = await chain();
      if (!lastsFor(credentials, seconds * 1000 + CREDENTIALS_MARGIN_MS)) credentials = await chain({ forceRefresh: true });
      const { accessKeyId, secretAccessKey, sessionToken, expiration } = credentials;
      return { accessKeyId, secretAccessKey, sessionToken, expiration };
    } catch (err) {
      throw new ProviderError(`Bedrock needs AWS credentials and the default chain found none (${(err as Error).message}); run \`aws sso login\`, set AWS_PROFILE, or unset them to use the local stand-in`, { cause: err });
    }
  };
}
