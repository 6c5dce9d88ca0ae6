import type { EventStreamCodec } from '@smithy/core/event-streams';

// Amazon Bedrock's side of the model stand-in: its routes, its error shapes and its
// event stream, as the `claude` CLI (2.1.197, CLAUDE_CODE_USE_BEDROCK=1) meets them.

/** The region the stand-in plays; the CLI's cross-region profiles for it start `us.`. */
export const STAND_IN_REGION = 'us-east-1';
const ACCOUNT = '123456789012';

/** A Bedrock operation the stand-in answers, with the model id of its path (decoded). */
export type BedrockRoute =
  | { operation: 'InvokeModelWithResponseStream' | 'InvokeModel' | 'CountTokens'; modelId: string }
  | { operation: 'ListInferenceProfiles' }
  | { operation: 'GetInferenceProfile'; profileId: string };

/** The Bedrock operation of a request, or undefined for any other path. */
export function bedrockRoute(method: string | undefined, path: string): BedrockRoute | undefined {
  if (method === 'GET' && path === '/inference-profiles') return { operation: 'ListInferenceProfiles' };
  const profile = /^\/inference-profiles\/([^/]+)$/.exec(path);
  if (method === 'GET' && profile) return { operation: 'GetInferenceProfile', profileId: decodeURIComponent(profile[1]!) };
  // The model id is one path segment, percent-encoded when it is an ARN (it holds slashes).
  const invoke = /^\/model\/([^/]+)\/(invoke|invoke-with-response-stream|count-tokens)$/.exec(path);
  if (method !== 'POST' || !invoke) return undefined;
  const operation = ({ invoke: 'InvokeModel', 'invoke-with-response-stream': 'InvokeModelWithResponseStream', 'count-tokens': 'CountTokens' } as const)[
    invoke[2] as 'invoke' | 'invoke-with-response-stream' | 'count-tokens'
  ];
  return { operation, modelId: decodeURIComponent(invoke[1]!) };
}

/** The access key id of a SigV4 `Authorization` header (`Credential=<id>/<date>/<region>/bedrock/aws4_request`). */
export function accessKeyIdOf(authorization: string | undefined): string | undefined {
  return authorization ? /\bCredential=([^/,\s]+)\//.exec(authorization)?.[1] : undefined;
}

/**
 * Bedrock's status and `x-amzn-errortype` for a status the stand-in is told to fail with
 * (the bedrock-runtime service model: Throttling and ModelNotReady 429, Validation and
 * ServiceQuotaExceeded 400, AccessDenied 403, ResourceNotFound 404, ModelTimeout 408,
 * ModelError 424, InternalServer 500, ServiceUnavailable 503). Bedrock has no 529: the
 * API's "overloaded" is a capacity shortage, which Bedrock reports as 503
 * ServiceUnavailableException (429 ThrottlingException is the account's own quota).
 */
export function bedrockError(status: number): { status: number; type: string } {
  if (status === 529 || status === 503) return { status: 503, type: 'ServiceUnavailableException' };
  if (status === 429) return { status, type: 'ThrottlingException' };
  // A bad or unknown key is refused as 403 by AWS; Bedrock answers no 401.
  if (status === 401) return { status: 403, type: 'UnrecognizedClientException' };
  if (status === 403) return { status, type: 'AccessDeniedException' };
  if (status === 404) return { status, type: 'ResourceNotFoundException' };
  if (status === 408) return { status, type: 'ModelTimeoutException' };
  if (status === 424) return { status, type: 'ModelErrorException' };
  if (status >= 500) return { status, type: 'InternalServerException' };
  return { status, type: 'ValidationException' };
}

/** Foundation models with a system-defined `us.` profile (the CLI keeps the ones whose id says "anthropic"). */
const PROFILED_MODELS = [
  'anthropic.claude-sonnet-4-5-20250929-v1:0',
  'anthropic.claude-haiku-4-5-20251001-v1:0',
  'anthropic.claude-opus-4-5-20251101-v1:0',
  'anthropic.claude-opus-4-1-20250805-v1:0',
  'anthropic.claude-sonnet-4-20250514-v1:0',
  'anthropic.claude-3-7-sonnet-20250219-v1:0',
  'anthropic.claude-3-5-haiku-20241022-v1:0',
  'amazon.nova-pro-v1:0',
];

/** One system-defined cross-region profile, as ListInferenceProfiles and GetInferenceProfile describe it. */
function inferenceProfile(foundationModel: string): Record<string, unknown> {
  const id = `us.${foundationModel}`;
  return {
    inferenceProfileId: id,
    inferenceProfileName: `US ${foundationModel}`,
    inferenceProfileArn: `arn:aws:bedrock:${STAND_IN_REGION}:${ACCOUNT}:inference-profile/${id}`,
    description: `Routes requests to ${foundationModel} in us-east-1, us-east-2 and us-west-2.`,
    models: ['us-east-1', 'us-east-2', 'us-west-2'].map((region) => ({ modelArn: `arn:aws:bedrock:${region}::foundation-model/${foundationModel}` })),
    status: 'ACTIVE',
    type: 'SYSTEM_DEFINED',
    createdAt: '2025-01-01T00:00:00Z',
    updatedAt: '2025-01-01T00:00:00Z',
  };
}

/**
 * The answer to `GET /inference-profiles?type=SYSTEM_DEFINED`, which the CLI sends first: it
 * maps the tiers it is not pinned to (haiku for side calls, …) onto the listed ids of its region.
 */
export function listInferenceProfiles(): { inferenceProfileSummaries: Record<string, unknown>[] } {
  return { inferenceProfileSummaries: PROFILED_MODELS.map(inferenceProfile) };
}

export function getInferenceProfile(profileId: string): Record<string, unknown> | undefined {
  const model = PROFILED_MODELS.find((m) => `us.${m}` === profileId || inferenceProfile(m).inferenceProfileArn === profileId);
  return model === undefined ? undefined : inferenceProfile(model);
}

const toUtf8 = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');
const fromUtf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));
let codec: Promise<EventStreamCodec> | undefined;

/**
 * The encoder of Bedrock's response stream: each Messages stream event is one `chunk`
 * event-stream message whose payload is `{"bytes": <the event's JSON, base64>}`.
 * The codec is loaded on the first Bedrock stream, not with the stand-in: its import
 * costs ~100 ms, and `claude-sessions run` starts the stand-in on its cold path.
 */
export async function bedrockChunkEncoder(): Promise<(event: object) => Uint8Array> {
  codec ??= import('@smithy/core/event-streams').then(({ EventStreamCodec }) => new EventStreamCodec(toUtf8, fromUtf8));
  const eventStream = await codec;
  return (event) =>
    eventStream.encode({
      headers: {
        ':event-type': { type: 'string', value: 'chunk' },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'event' },
      },
      body: fromUtf8(JSON.stringify({ bytes: Buffer.from(JSON.stringify(event), 'utf8').toString('base64') })),
    });
}
