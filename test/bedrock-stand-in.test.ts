import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EventStreamCodec, getChunkedStream, type Message } from '@smithy/core/event-streams';
import { AnthropicStandIn, offeredTools, type RecordedRequest, type StandInUsage } from '../lib/local/anthropic-stand-in.js';
import { buildClaudeArgs, promptMessage } from '../lib/claude/claude-args.js';
import { baseClaudeEnv, defaultClaudePath } from '../lib/claude/claude-process.js';

// The stand-in as Amazon Bedrock, met by the real `claude` binary (2.1.197), next to the
// Anthropic route it always served. Every fact asserted below was measured with this CLI.

const BEDROCK_MODEL = 'us.anthropic.claude-sonnet-4-5-20250929-v1:0';
const HAIKU_PROFILE = 'us.anthropic.claude-haiku-4-5-20251001-v1:0';
const ANTHROPIC_MODEL = 'claude-sonnet-4-5-20250929';

/** The CLI's final `result` line, the fields read here. */
interface CliResult {
  is_error: boolean;
  api_error_status: number | null;
  result: string;
  num_turns: number;
  total_cost_usd: number;
  usage: StandInUsage;
  modelUsage: Record<string, { inputTokens: number; outputTokens: number; cacheReadInputTokens: number; cacheCreationInputTokens: number; costUSD: number }>;
}

interface RunOptions {
  provider: 'anthropic' | 'bedrock';
  tools?: string[];
  /** Variables added to (a value) or taken from (undefined) the provider's environment. */
  env?: Record<string, string | undefined>;
}

let standIn: AnthropicStandIn;

beforeAll(async () => {
  standIn = await new AnthropicStandIn().start();
});
afterEach(() => standIn.reset());
afterAll(() => standIn.close());

/** Runs the real CLI once against the stand-in, in a HOME of its own, prompt on stdin, no shell. */
async function runClaude(options: RunOptions): Promise<{ sessionId: string; result: CliResult; lines: { type: string; subtype?: string }[] }> {
  const home = await mkdtemp(join(tmpdir(), 'bedrock-stand-in-'));
  const workDir = join(home, 'work');
  await mkdir(workDir);
  const sessionId = randomUUID();
  const bedrock = standIn.bedrockEndpoint(BEDROCK_MODEL);
  const provider: Record<string, string> = options.provider === 'bedrock'
    ? {
      CLAUDE_CODE_USE_BEDROCK: '1',
      ANTHROPIC_BEDROCK_BASE_URL: bedrock.baseUrl!,
      CLAUDE_CODE_SKIP_BEDROCK_AUTH: '1',
      AWS_REGION: bedrock.region,
      ANTHROPIC_MODEL: bedrock.model,
    }
    : { ANTHROPIC_API_KEY: standIn.endpoint.apiKey, ANTHROPIC_BASE_URL: standIn.endpoint.baseUrl! };
  // The runner's base environment, and Claude Code's own provider variables rather than ours
  // (ours pin every tier alias, which would change what these measurements see).
  const env: NodeJS.ProcessEnv = { ...baseClaudeEnv(home, { maxRetries: 0, timeoutMs: 90_000 }), ...provider, ...options.env };
  const args = buildClaudeArgs({
    sessionId,
    conversation: 'fresh',
    tools: options.tools ?? ['Read', 'Glob'],
    permissionMode: 'acceptEdits',
    // Pinned on the Anthropic route too, so modelUsage is keyed by the model the stand-in sees.
    model: options.provider === 'anthropic' ? ANTHROPIC_MODEL : undefined,
  });
  try {
    const child = spawn(defaultClaudePath(), args, { cwd: workDir, env, stdio: ['pipe', 'pipe', 'pipe'], timeout: 90_000 });
    child.stdin.end(promptMessage('Look around, please.'));
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.resume();
    await new Promise((resolve, reject) => child.once('close', resolve).once('error', reject));
    const lines = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; subtype?: string });
    const result = lines.find((l) => l.type === 'result') as unknown as CliResult | undefined;
    if (!result) throw new Error(`the CLI printed no result:\n${stdout.slice(-2_000)}`);
    return { sessionId, result, lines };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

const sum = (requests: RecordedRequest[]) =>
  requests.reduce(
    (total, r) => ({
      inputTokens: total.inputTokens + r.served!.input_tokens,
      outputTokens: total.outputTokens + r.served!.output_tokens,
      cacheReadInputTokens: total.cacheReadInputTokens + (r.served!.cache_read_input_tokens ?? 0),
      cacheCreationInputTokens: total.cacheCreationInputTokens + (r.served!.cache_creation_input_tokens ?? 0),
    }),
    { inputTokens: 0, outputTokens: 0, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 },
  );

describe('the stand-in as Bedrock, with the real claude CLI', () => {
  it('lists the inference profiles first, then streams /model/<pinned model>/invoke-with-response-stream with its session header; the text is the result', async () => {
    // Prepare
    standIn.respondWith({ kind: 'text', text: 'Hello over Bedrock.' });
    // Act
    const run = await runClaude({ provider: 'bedrock' });
    // Assess
    expect(run.result).toMatchObject({ is_error: false, result: 'Hello over Bedrock.', num_turns: 1 });
    expect(standIn.requests[0]).toMatchObject({ path: '/inference-profiles', provider: 'bedrock', call: 'other' });
    expect(standIn.messageRequests).toEqual([
      expect.objectContaining({
        path: `/model/${BEDROCK_MODEL}/invoke-with-response-stream`,
        provider: 'bedrock',
        model: BEDROCK_MODEL,
        sessionId: run.sessionId,
        accessKeyId: undefined, // CLAUDE_CODE_SKIP_BEDROCK_AUTH: nothing signed
      }),
    ]);
    // Bedrock takes the model from the path and the API version from the body.
    expect(standIn.messageRequests[0]!.body).toMatchObject({ anthropic_version: 'bedrock-2023-05-31' });
    expect(standIn.messageRequests[0]!.body).not.toHaveProperty('model');
    expect(Object.keys(run.result.modelUsage)).toEqual([BEDROCK_MODEL]);
  });

  it('takes a second turn after a tool_use reply', async () => {
    // Prepare
    standIn.respondWith({ kind: 'tool_use' }, { kind: 'text', text: 'Found nothing.' });
    // Act
    const run = await runClaude({ provider: 'bedrock' });
    // Assess
    expect(run.result).toMatchObject({ is_error: false, result: 'Found nothing.', num_turns: 2 });
    expect(standIn.messageRequests.map((r) => r.sessionId)).toEqual([run.sessionId, run.sessionId]);
  });

  it('429 ThrottlingException: retried like the API, then is_error with api_error_status 429, "Request rejected (429)"', async () => {
    // Prepare
    standIn.respondByDefault({ kind: 'error', status: 429, message: 'Too many requests, please wait before trying again.' });
    // Act
    const run = await runClaude({ provider: 'bedrock', env: { CLAUDE_CODE_MAX_RETRIES: '1' } });
    // Assess
    expect(run.result).toMatchObject({
      is_error: true,
      api_error_status: 429,
      result: 'API Error: Request rejected (429) · Too many requests, please wait before trying again.',
    });
    expect(standIn.messageRequests).toHaveLength(2);
    expect(run.lines).toContainEqual(expect.objectContaining({ type: 'system', subtype: 'api_retry', error_status: 429, error: 'rate_limit' }));
  });

  it('400 ValidationException: not retried, is_error with api_error_status 400 and Bedrock\'s message', async () => {
    // Prepare
    standIn.respondByDefault({ kind: 'error', status: 400, message: 'messages: field required' });
    // Act
    const run = await runClaude({ provider: 'bedrock', env: { CLAUDE_CODE_MAX_RETRIES: '1' } });
    // Assess
    expect(run.result).toMatchObject({ is_error: true, api_error_status: 400, result: 'API Error: 400 messages: field required' });
    expect(standIn.messageRequests).toHaveLength(1);
  });

  it('403 AccessDeniedException: retried over Bedrock (not over the API), then an authentication failure, api_error_status 403', async () => {
    // Prepare
    standIn.respondByDefault({ kind: 'error', status: 403, message: 'not allowed' });
    // Act
    const run = await runClaude({ provider: 'bedrock', env: { CLAUDE_CODE_MAX_RETRIES: '1' } });
    // Assess
    // CLI fact: the wording of the result changed in 2.1.332 ("AWS authentication failed · … · API Error: 403 …").
    expect(run.result).toMatchObject({ is_error: true, api_error_status: 403, result: expect.stringMatching(/API Error: 403 not allowed$/) });
    // CLI fact: with CLAUDE_CODE_MAX_RETRIES=1, 2.1.197 called twice; 2.1.332 called 4 times (once measured), still bounded.
    expect(standIn.messageRequests.length).toBeGreaterThanOrEqual(2);
    expect(standIn.messageRequests.length).toBeLessThanOrEqual(6);
    expect(run.lines).toContainEqual(expect.objectContaining({ subtype: 'api_retry', error_status: 403, error: 'authentication_failed' }));
  });

  it('503 ServiceUnavailableException (also what an overload, 529 on the API, is on Bedrock): retried, and the retry\'s reply is the result', async () => {
    // Prepare
    standIn.respondWith({ kind: 'error', status: 529 }, { kind: 'text', text: 'Second time lucky.' });
    // Act
    const run = await runClaude({ provider: 'bedrock', env: { CLAUDE_CODE_MAX_RETRIES: '1' } });
    // Assess
    expect(run.result).toMatchObject({ is_error: false, result: 'Second time lucky.' });
    expect(standIn.messageRequests).toHaveLength(2);
    expect(run.lines).toContainEqual(expect.objectContaining({ subtype: 'api_retry', error_status: 503, error: 'server_error' }));
  });

  // CLI fact: with AWS credentials the CLI signs SigV4, and probes model access with non-streaming InvokeModel calls of
  // max_tokens 1 in the background (2.1.197 without the session header, 2.1.332 with it).
  it('signs with SigV4 when given AWS credentials; its model-access probes (InvokeModel, max_tokens 1) take no queued reply', async () => {
    // Prepare
    standIn.respondWith({ kind: 'text', text: 'Signed.' });
    // Act
    const run = await runClaude({
      provider: 'bedrock',
      env: { CLAUDE_CODE_SKIP_BEDROCK_AUTH: undefined, AWS_ACCESS_KEY_ID: 'AKIASTANDINTEST00001', AWS_SECRET_ACCESS_KEY: 'not-a-secret', AWS_SESSION_TOKEN: 'token' },
    });
    // Assess
    expect(run.result).toMatchObject({ is_error: false, result: 'Signed.' });
    expect(standIn.requests.map((r) => r.accessKeyId)).toEqual(standIn.requests.map(() => 'AKIASTANDINTEST00001'));
    expect(standIn.messageRequests.map((r) => r.path)).toEqual([`/model/${BEDROCK_MODEL}/invoke-with-response-stream`]);
    // Measured: the pinned model, the default opus and haiku, probed in the background (when they come is not ours to wait for).
    for (const probe of standIn.requests.filter((r) => r.call === 'probe')) {
      expect(probe).toMatchObject({ path: `/model/${probe.model}/invoke`, body: { max_tokens: 1 } });
    }
  });
});

describe('the stand-in as the Anthropic API, unchanged', () => {
  it('streams SSE on POST /v1/messages, the model read from the body', async () => {
    // Prepare
    standIn.respondWith({ kind: 'text', text: 'Hello over the API.' });
    // Act
    const run = await runClaude({ provider: 'anthropic' });
    // Assess
    expect(run.result).toMatchObject({ is_error: false, result: 'Hello over the API.' });
    expect(standIn.messageRequests).toEqual([
      expect.objectContaining({ path: '/v1/messages', provider: 'anthropic', model: ANTHROPIC_MODEL, sessionId: run.sessionId }),
    ]);
  });
});

// Measured with 2.1.197, both providers: the subagent tool is `Agent` (the init line still
// lists it as `Task`); a subagent runs on the main model unless its input names one
// (`model: 'haiku'` maps to the haiku profile of the listed inference profiles on Bedrock);
// its calls carry the parent's session id. The result's top-level `usage` counts the main
// conversation's calls only; `modelUsage` and `total_cost_usd` count every call, subagents'
// included. So a session's usage is the sum of modelUsage, not the top-level usage.
// CLI fact (2.1.332): a subagent runs in the background by default ("Async agent launched"), and its
// completion brings a main-model call after the result line, counted nowhere; with
// CLAUDE_CODE_DISABLE_BACKGROUND_TASKS=1 (baseClaudeEnv) it runs in the foreground, as 2.1.197's did.
// Without it these tests see a fourth call.
describe('a subagent\'s calls in the CLI\'s result', () => {
  const MAIN_FIRST: StandInUsage = { input_tokens: 100, output_tokens: 10, cache_read_input_tokens: 1_000, cache_creation_input_tokens: 10_000 };
  const SUBAGENT: StandInUsage = { input_tokens: 200, output_tokens: 20, cache_read_input_tokens: 2_000, cache_creation_input_tokens: 20_000 };
  const MAIN_LAST: StandInUsage = { input_tokens: 300, output_tokens: 30, cache_read_input_tokens: 3_000, cache_creation_input_tokens: 30_000 };
  const agentCall = (input: Record<string, unknown>) =>
    ({ kind: 'tool_use', name: 'Agent', input: { description: 'look', prompt: 'Say hi', subagent_type: 'general-purpose', ...input }, usage: MAIN_FIRST }) as const;

  it('Anthropic, subagent on the main model: top-level usage is the main calls only (400 in, 40 out), modelUsage and the cost all three', async () => {
    // Prepare
    standIn.respondWith(agentCall({}), { kind: 'text', text: 'hi', usage: SUBAGENT }, { kind: 'text', text: 'Done.', usage: MAIN_LAST });
    // Act
    const run = await runClaude({ provider: 'anthropic', tools: ['Read', 'Glob', 'Agent'] });
    // Assess
    expect(run.result).toMatchObject({ is_error: false, result: 'Done.', num_turns: 2 });
    const calls = standIn.messageRequests;
    expect(calls.map((r) => [r.model, r.sessionId])).toEqual([0, 1, 2].map(() => [ANTHROPIC_MODEL, run.sessionId]));
    expect(offeredTools(calls[0]!)).toContain('Agent');
    const [main, subagent] = [[calls[0]!, calls[2]!], [calls[1]!]];
    expect(run.result.usage).toMatchObject({ input_tokens: 400, output_tokens: 40, cache_read_input_tokens: 4_000, cache_creation_input_tokens: 40_000 });
    expect(sum(main)).toEqual({ inputTokens: 400, outputTokens: 40, cacheReadInputTokens: 4_000, cacheCreationInputTokens: 40_000 });
    expect(run.result.modelUsage).toEqual({ [ANTHROPIC_MODEL]: expect.objectContaining(sum([...main, ...subagent])) });
    expect(sum(calls)).toEqual({ inputTokens: 600, outputTokens: 60, cacheReadInputTokens: 6_000, cacheCreationInputTokens: 60_000 });
    // Sonnet 4.5 at $3 / $15 / $0.30 / $3.75 per million: 0.0018 + 0.0009 + 0.0018 + 0.225.
    expect(run.result.total_cost_usd).toBeCloseTo(0.2295, 6);
    expect(run.result.modelUsage[ANTHROPIC_MODEL]!.costUSD).toBeCloseTo(0.2295, 6);
  });

  it('Bedrock, subagent on haiku: modelUsage has both profiles, as served; top-level usage still the main model\'s calls only', async () => {
    // Prepare
    standIn.respondWith(agentCall({ model: 'haiku' }), { kind: 'text', text: 'hi', usage: SUBAGENT }, { kind: 'text', text: 'Done.', usage: MAIN_LAST });
    // Act
    const run = await runClaude({ provider: 'bedrock', tools: ['Read', 'Glob', 'Agent'] });
    // Assess
    expect(run.result).toMatchObject({ is_error: false, result: 'Done.', num_turns: 2 });
    const calls = standIn.messageRequests;
    expect(calls.map((r) => r.model)).toEqual([BEDROCK_MODEL, HAIKU_PROFILE, BEDROCK_MODEL]);
    expect(calls.map((r) => r.sessionId)).toEqual([0, 1, 2].map(() => run.sessionId));
    const byModel = (model: string) => sum(calls.filter((r) => r.model === model));
    expect(run.result.modelUsage).toEqual({
      [BEDROCK_MODEL]: expect.objectContaining(byModel(BEDROCK_MODEL)),
      [HAIKU_PROFILE]: expect.objectContaining(byModel(HAIKU_PROFILE)),
    });
    expect(byModel(BEDROCK_MODEL)).toEqual({ inputTokens: 400, outputTokens: 40, cacheReadInputTokens: 4_000, cacheCreationInputTokens: 40_000 });
    expect(run.result.usage).toMatchObject({ input_tokens: 400, output_tokens: 40, cache_read_input_tokens: 4_000, cache_creation_input_tokens: 40_000 });
    // Sonnet 4.5: 0.0012 + 0.0006 + 0.0012 + 0.15 = 0.153; Haiku 4.5 at $1 / $5 / $0.10 / $1.25: 0.0002 + 0.0001 + 0.0002 + 0.025 = 0.0255.
    expect(run.result.modelUsage[BEDROCK_MODEL]!.costUSD).toBeCloseTo(0.153, 6);
    expect(run.result.modelUsage[HAIKU_PROFILE]!.costUSD).toBeCloseTo(0.0255, 6);
    expect(run.result.total_cost_usd).toBeCloseTo(0.1785, 6);
  });
});

describe('the stand-in\'s wire shapes (no CLI)', () => {
  const post = (path: string, body: object, headers: Record<string, string> = {}, signal?: AbortSignal) =>
    fetch(`${standIn.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal });
  const codec = new EventStreamCodec((b) => Buffer.from(b).toString('utf8'), (s) => Buffer.from(s, 'utf8'));
  /** Bedrock's stream decoded by the AWS codec: each frame's headers, and the Messages event in its base64 `bytes`. */
  async function decodeFrames(body: AsyncIterable<Uint8Array>, headers: Message['headers'][] = []): Promise<{ type: string }[]> {
    const events = [];
    for await (const frame of getChunkedStream(body)) {
      const message = codec.decode(frame);
      headers.push(message.headers);
      events.push(JSON.parse(Buffer.from(JSON.parse(Buffer.from(message.body).toString('utf8')).bytes, 'base64').toString('utf8')));
    }
    return events;
  }
  /** Ids are fresh per reply; everything else must match. */
  const sameIds = (events: unknown[]) => JSON.parse(JSON.stringify(events).replace(/msg_[0-9a-f-]+/g, 'msg_').replace(/toolu_[0-9a-f]+/g, 'toolu_'));

  it('sends the same Messages events as SSE and as Bedrock event-stream chunks', async () => {
    // Prepare
    const reply = { kind: 'tool_use', name: 'Read', input: { file_path: 'README.md' } } as const;
    standIn.respondWith(reply, reply);
    // Act
    const sse = await post('/v1/messages', { model: 'm', stream: true, messages: [] });
    const stream = await post('/model/m/invoke-with-response-stream', { messages: [] });
    // Assess
    const sseEvents = (await sse.text()).split('\n\n').filter(Boolean).map((block) => JSON.parse(block.split('\ndata: ')[1]!));
    expect(stream.headers.get('content-type')).toBe('application/vnd.amazon.eventstream');
    const headers: Message['headers'][] = [];
    const chunkEvents = await decodeFrames(stream.body!, headers);
    expect(headers).toEqual(chunkEvents.map(() => ({
      ':event-type': { type: 'string', value: 'chunk' },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'event' },
    })));
    expect(sseEvents.map((e) => e.type)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(sameIds(chunkEvents)).toEqual(sameIds(sseEvents));
  });

  it('stalls over the event stream as over SSE: message_start, then the stream stays open', async () => {
    // Prepare
    standIn.respondWith({ kind: 'stall', usage: { input_tokens: 5, output_tokens: 6 } });
    const abort = new AbortController();
    // Act
    const res = await post('/model/m/invoke-with-response-stream', { messages: [] }, {}, abort.signal);
    const first = await res.body!.getReader().read(); // the one frame sent; reading on would wait for ever
    // Assess
    const [frame] = await decodeFrames((async function* () { yield first.value!; })());
    expect(frame).toMatchObject({ type: 'message_start', message: { usage: { input_tokens: 5, output_tokens: 1 } } });
    expect(standIn.openStreams).toBe(1);
    expect(standIn.messageRequests[0]!.served).toMatchObject({ input_tokens: 5, output_tokens: 1 });
    abort.abort();
  });

  it.each([
    [429, 429, 'ThrottlingException'],
    [400, 400, 'ValidationException'],
    [403, 403, 'AccessDeniedException'],
    [500, 500, 'InternalServerException'],
    [503, 503, 'ServiceUnavailableException'],
    [529, 503, 'ServiceUnavailableException'],
  ])('an error reply %i is Bedrock\'s %i %s, with a {message} body', async (status, bedrockStatus, type) => {
    // Prepare
    standIn.respondWith({ kind: 'error', status, message: 'no' });
    // Act
    const res = await post('/model/m/invoke-with-response-stream', { messages: [] });
    // Assess
    expect([res.status, res.headers.get('x-amzn-errortype'), await res.json()]).toEqual([bedrockStatus, type, { message: 'no' }]);
  });

  it('records the provider, the decoded model of the path, the SigV4 key id and the usage served for the model', async () => {
    // Prepare
    const arn = 'arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc';
    const usage = { input_tokens: 7, output_tokens: 8, cache_read_input_tokens: 9, cache_creation_input_tokens: 10 };
    standIn.usageFor(arn, usage);
    const authorization = 'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00';
    // Act
    const res = await post(`/model/${encodeURIComponent(arn)}/invoke`, { messages: [], max_tokens: 5 }, { authorization, 'x-claude-code-session-id': 's' });
    // Assess
    expect(await res.json()).toMatchObject({ type: 'message', model: arn, usage });
    expect(standIn.messageRequests).toEqual([
      expect.objectContaining({ provider: 'bedrock', call: 'message', model: arn, accessKeyId: 'AKIAEXAMPLE', sessionId: 's', served: usage }),
    ]);
  });

  it('answers ListInferenceProfiles with the region\'s system-defined profiles', async () => {
    // Act
    const res = await fetch(`${standIn.url}/inference-profiles?type=SYSTEM_DEFINED`);
    // Assess
    const { inferenceProfileSummaries } = (await res.json()) as { inferenceProfileSummaries: { inferenceProfileId: string; type: string }[] };
    expect(inferenceProfileSummaries).toContainEqual(expect.objectContaining({ inferenceProfileId: HAIKU_PROFILE, type: 'SYSTEM_DEFINED', status: 'ACTIVE' }));
    expect(inferenceProfileSummaries).toContainEqual(expect.objectContaining({ inferenceProfileId: BEDROCK_MODEL }));
  });
});
