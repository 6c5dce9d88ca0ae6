import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { DEFAULT_BEDROCK_MODEL, type AnthropicEndpoint, type BedrockEndpoint } from '../claude/claude-process.js';
import {
  STAND_IN_REGION,
  accessKeyIdOf,
  bedrockChunkEncoder,
  bedrockError,
  bedrockRoute,
  getInferenceProfile,
  listInferenceProfiles,
  type BedrockRoute,
} from './bedrock-event-stream.js';

/** Token counts the stand-in reports for one reply, in the API's own field names. */
export interface StandInUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens?: number;
  cache_creation_input_tokens?: number;
  /** Of the cache writes, how many live 5 minutes and how many an hour (priced higher). */
  cache_creation?: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
  /** The server tools the model ran for this reply (a web search is priced per request). */
  server_tool_use?: { web_search_requests: number; web_fetch_requests: number };
  /** Where the reply was computed: `us` is US-only inference, priced higher. */
  inference_geo?: string;
  /** `fast` is fast mode, priced at its own rates. */
  speed?: string;
}

/** What the stand-in does with the next model call (Anthropic or Bedrock alike). */
export type StandInReply =
  | { kind: 'text'; text?: string; usage?: StandInUsage }
  /**
   * An HTTP error with the provider's error body: the API's (400, 401, 429, 500, 529 …),
   * or Bedrock's for the same status (see `bedrockError`: 529 is served as 503).
   */
  | { kind: 'error'; status: number; message?: string }
  /** Sends message_start (with its usage) and then nothing, holding the connection open. */
  | { kind: 'stall'; usage?: StandInUsage }
  /** Asks for a tool call (by default Glob of *.md), so the CLI takes another turn. */
  | { kind: 'tool_use'; usage?: StandInUsage; name?: string; input?: Record<string, unknown> };

export interface RecordedRequest {
  path: string;
  provider: 'anthropic' | 'bedrock';
  /**
   * message: a model call of the conversation, answered from the queue. probe: the CLI's
   * check that a Bedrock model is enabled (a non-streaming invoke with max_tokens 1, sent in
   * the background: 2.1.197 without the session header, 2.1.332 with it), answered outside the queue.
   */
  call: 'message' | 'probe' | 'other';
  /** From the body (Anthropic) or the URL path, decoded (Bedrock). */
  model: string | undefined;
  sessionId: string | undefined;
  /** The access key id of a SigV4-signed request (Bedrock with credentials). */
  accessKeyId: string | undefined;
  /** For model calls: the usage the stand-in reported (zero for an error; message_start's for a stall). */
  served?: StandInUsage;
  body: { model?: string; messages?: unknown[]; stream?: boolean } & Record<string, unknown>;
}

/**
 * The tools a model call offers the model, by name: a `defer_loading` tool is not among them
 * until a tool search loads it (CLI 2.1.332 sends a deferred "never call" placeholder).
 */
export function offeredTools(request: RecordedRequest): string[] {
  const tools = (request.body.tools ?? []) as { name: string; defer_loading?: boolean }[];
  return tools.filter((t) => !t.defer_loading).map((t) => t.name);
}

const DEFAULT_USAGE: StandInUsage = {
  input_tokens: 12,
  output_tokens: 34,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
};
const NO_USAGE: StandInUsage = { input_tokens: 0, output_tokens: 0, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };

type ContentBlock = { type: 'text'; text: string } | { type: 'tool_use'; id: string; name: string; input: Record<string, unknown> };

/** A complete Messages API message: the non-streaming body, and what a stream spells out event by event. */
interface StandInMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: [ContentBlock];
  stop_reason: 'end_turn' | 'tool_use';
  stop_sequence: null;
  usage: StandInUsage;
}

/** One Messages stream event (`message_start`, `content_block_delta`, …). */
type StreamEvent = { type: string } & Record<string, unknown>;

/** How a stream's events are written: SSE for the API, AWS event-stream frames for Bedrock. */
interface StreamTransport {
  contentType: string;
  frame(event: StreamEvent): string | Uint8Array;
}

const SSE: StreamTransport = {
  contentType: 'text/event-stream',
  frame: (event) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`,
};

/** How the stand-in counts tokens where a reply names none. */
export interface StandInOptions {
  /**
   * fixed: 12 in, 34 out, whatever the request (tests pin costs on it). proportional: about a
   * token for each 4 characters of the request's messages and of the reply, as the built-in
   * stand-in of `run` reports them, so spend tracking can be sanity-checked. @default 'fixed'
   */
  usage?: 'fixed' | 'proportional';
}

/**
 * A prompt's lines `stand-in: <reply as JSON>` script the stand-in's replies to that
 * conversation: the Nth line answers its Nth model call (text, tool_use, stall, error), and
 * the default reply follows when they run out. A stand-in only: it lets a newcomer watch a
 * session edit a file, call a tool, stall or fail without a key, not judge Claude.
 */
export const STAND_IN_DIRECTIVE = 'stand-in:';

/**
 * A local stand-in for Claude's model API on 127.0.0.1, as the Anthropic Messages API
 * (ANTHROPIC_BASE_URL) and as Amazon Bedrock (ANTHROPIC_BEDROCK_BASE_URL) at once: the real
 * `claude` binary talks to it, so tests and offline demos run the real CLI end to end. Both
 * providers take their replies from one queue and stream the same Messages events, SSE or
 * event stream as each provider does, and both can be told to fail.
 */
export class AnthropicStandIn {
  readonly requests: RecordedRequest[] = [];
  private readonly queue: StandInReply[] = [];
  private fallback: StandInReply = { kind: 'text' };
  private readonly modelUsage = new Map<string, StandInUsage>();
  private server?: Server;
  private readonly open = new Set<ServerResponse>();

  constructor(private readonly options: StandInOptions = {}) {}

  /** Replies used in order for the next model calls; the default reply follows when they run out. */
  respondWith(...replies: StandInReply[]): this {
    this.queue.push(...replies);
    return this;
  }

  /** The reply for every model call that has no queued reply. */
  respondByDefault(reply: StandInReply): this {
    this.fallback = reply;
    return this;
  }

  /**
   * The usage of replies to `model` (as recorded: the body's model, or Bedrock's path) that
   * name none, so the CLI's per-model totals can be told apart.
   */
  usageFor(model: string, usage: StandInUsage): this {
    this.modelUsage.set(model, usage);
    return this;
  }

  reset(): void {
    this.queue.length = 0;
    this.requests.length = 0;
    this.fallback = { kind: 'text' };
    this.modelUsage.clear();
  }

  /** The model calls of the conversation, both providers (not the CLI's Bedrock probes), in arrival order. */
  get messageRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.call === 'message');
  }

  /** Streams still open (a stalled reply stays open until its client goes away). */
  get openStreams(): number {
    return this.open.size;
  }

  get url(): string {
    const address = this.server?.address() as AddressInfo | undefined;
    if (!address) throw new Error('the Anthropic stand-in is not started');
    return `http://127.0.0.1:${address.port}`;
  }

  /** What the CLI is given to talk to this stand-in as the Anthropic API. */
  get endpoint(): AnthropicEndpoint {
    return { apiKey: 'sk-ant-local-stand-in', baseUrl: this.url };
  }

  /** What the CLI is given to talk to this stand-in as Bedrock (no credentials: CLAUDE_CODE_SKIP_BEDROCK_AUTH). */
  bedrockEndpoint(model = DEFAULT_BEDROCK_MODEL): BedrockEndpoint {
    return { provider: 'bedrock', region: STAND_IN_REGION, model, baseUrl: this.url };
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    return this;
  }

  async close(): Promise<void> {
    for (const res of this.open) res.destroy();
    this.open.clear();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req);
    const path = (req.url ?? '/').split('?')[0]!;
    const bedrock = bedrockRoute(req.method, path);
    const sessionId = firstHeader(req.headers['x-claude-code-session-id']);
    const recorded: RecordedRequest = {
      path,
      provider: bedrock ? 'bedrock' : 'anthropic',
      call: callOf(req.method, path, bedrock, body),
      model: bedrock && 'modelId' in bedrock ? bedrock.modelId : typeof body.model === 'string' ? body.model : undefined,
      sessionId,
      accessKeyId: accessKeyIdOf(firstHeader(req.headers.authorization)),
      body,
    };
    this.requests.push(recorded);

    if (recorded.call === 'message') return this.reply(recorded, res);
    if (recorded.call === 'probe') {
      recorded.served = { ...NO_USAGE, input_tokens: 8, output_tokens: 1 };
      return sendJson(res, 200, messageOf({ kind: 'text', text: 'ok' }, recorded.model!, recorded.served, body), requestIdHeader('bedrock'));
    }
    if (!bedrock) {
      if (req.method === 'POST' && path === '/v1/messages/count_tokens') return sendJson(res, 200, { input_tokens: DEFAULT_USAGE.input_tokens });
      return sendJson(res, 404, { type: 'error', error: { type: 'not_found_error', message: `no route ${path}` } });
    }
    const headers = requestIdHeader('bedrock');
    if (bedrock.operation === 'ListInferenceProfiles') return sendJson(res, 200, listInferenceProfiles(), headers);
    if (bedrock.operation === 'CountTokens') return sendJson(res, 200, { inputTokens: DEFAULT_USAGE.input_tokens }, headers);
    const profile = bedrock.operation === 'GetInferenceProfile' ? getInferenceProfile(bedrock.profileId) : undefined;
    if (profile) return sendJson(res, 200, profile, headers);
    return sendBedrockError(res, 404, `no inference profile ${path}`);
  }

  /** Answers a model call with the next reply, in the provider's shape. */
  private async reply(recorded: RecordedRequest, res: ServerResponse): Promise<void> {
    const reply = this.queue.shift() ?? scriptedReply(recorded.body) ?? this.fallback;
    if (reply.kind === 'error') {
      recorded.served = NO_USAGE;
      const message = reply.message ?? `stand-in error ${reply.status}`;
      if (recorded.provider === 'bedrock') return sendBedrockError(res, reply.status, message);
      return sendJson(res, reply.status, { type: 'error', error: { type: errorType(reply.status), message } });
    }
    const model = recorded.model ?? 'claude-stand-in';
    const message = messageOf(reply, model, DEFAULT_USAGE, recorded.body);
    const counted = this.options.usage === 'proportional' ? proportionalUsage(recorded.body, message) : DEFAULT_USAGE;
    const usage = { ...counted, ...this.modelUsage.get(model), ...reply.usage };
    message.usage = usage;
    const streaming = recorded.provider === 'bedrock' ? recorded.path.endsWith('/invoke-with-response-stream') : recorded.body.stream !== false;
    recorded.served = reply.kind === 'stall' ? { ...usage, output_tokens: 1 } : usage;
    if (!streaming) {
      if (reply.kind === 'stall') return this.holdOpen(res); // never answers
      // Non-streaming calls (the CLI makes few) get the same message as one JSON body.
      return sendJson(res, 200, message, requestIdHeader(recorded.provider));
    }
    const transport: StreamTransport = recorded.provider === 'bedrock'
      ? { contentType: 'application/vnd.amazon.eventstream', frame: await bedrockChunkEncoder() }
      : SSE;
    res.writeHead(200, { 'content-type': transport.contentType, 'cache-control': 'no-cache', connection: 'keep-alive', ...requestIdHeader(recorded.provider) });
    this.holdOpen(res);
    for (const event of streamEvents(message, reply.kind === 'stall')) res.write(transport.frame(event));
    if (reply.kind === 'stall') return; // the connection stays open until the client gives up
    this.open.delete(res);
    res.end();
  }

  private holdOpen(res: ServerResponse): void {
    this.open.add(res);
    res.on('close', () => this.open.delete(res));
  }
}

/** About a token for each 4 characters: of the request's messages in, of the reply's content out. */
function proportionalUsage(body: RecordedRequest['body'], message: StandInMessage): StandInUsage {
  const tokens = (text: string) => Math.max(1, Math.ceil(text.length / 4));
  return {
    input_tokens: tokens(JSON.stringify(body.messages ?? [])),
    output_tokens: tokens(JSON.stringify(message.content)),
    cache_read_input_tokens: 0,
    cache_creation_input_tokens: 0,
  };
}

/**
 * The reply a conversation's prompt scripts for this call (STAND_IN_DIRECTIVE): its Nth line for
 * the call after N-1 assistant turns. A line that is not a reply is answered with a 400 naming it.
 */
function scriptedReply(body: RecordedRequest['body']): StandInReply | undefined {
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ role?: string; content?: unknown }>) : [];
  const first = messages.find((m) => m.role === 'user');
  const text = typeof first?.content === 'string'
    ? first.content
    : Array.isArray(first?.content) ? (first.content as Array<{ type?: string; text?: string }>).filter((c) => c.type === 'text').map((c) => c.text ?? '').join('\n') : '';
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(STAND_IN_DIRECTIVE));
  const line = lines[messages.filter((m) => m.role === 'assistant').length];
  if (line === undefined) return undefined;
  const json = line.slice(STAND_IN_DIRECTIVE.length).trim();
  const invalid = (why: string): StandInReply => ({ kind: 'error', status: 400, message: `the stand-in's script line ${JSON.stringify(line)} ${why}` });
  let reply: unknown;
  try {
    reply = JSON.parse(json);
  } catch {
    return invalid('is not JSON');
  }
  const kind = (reply as { kind?: unknown } | null)?.kind;
  if (kind === 'error') {
    const status = (reply as { status?: unknown }).status;
    return Number.isInteger(status) && (status as number) >= 400 && (status as number) < 600 ? (reply as StandInReply) : invalid('needs a status from 400 to 599');
  }
  if (kind === 'text' || kind === 'stall' || kind === 'tool_use') return reply as StandInReply;
  return invalid('needs a kind of text, tool_use, stall or error');
}

function callOf(method: string | undefined, path: string, bedrock: BedrockRoute | undefined, body: RecordedRequest['body']): RecordedRequest['call'] {
  if (!bedrock) return method === 'POST' && path === '/v1/messages' ? 'message' : 'other';
  if (bedrock.operation === 'InvokeModelWithResponseStream') return 'message';
  // The model-access probes ask for one token (2.1.197 sent them without the session header, 2.1.332 with it).
  if (bedrock.operation === 'InvokeModel') return body.max_tokens === 1 ? 'probe' : 'message';
  return 'other';
}

/** The message a reply stands for: one text or tool_use block. */
function messageOf(reply: Exclude<StandInReply, { kind: 'error' }>, model: string, usage: StandInUsage, body: RecordedRequest['body']): StandInMessage {
  const block: ContentBlock = reply.kind === 'tool_use'
    ? { type: 'tool_use', id: `toolu_${randomUUID().replaceAll('-', '')}`, name: reply.name ?? 'Glob', input: reply.input ?? { pattern: '*.md' } }
    : { type: 'text', text: replyText(reply, body) };
  return {
    id: `msg_${randomUUID()}`, type: 'message', role: 'assistant', model, content: [block],
    stop_reason: block.type === 'tool_use' ? 'tool_use' : 'end_turn', stop_sequence: null, usage,
  };
}

/** The Messages stream events that spell out a message, as the API streams them; a stall stops after message_start. */
function streamEvents(message: StandInMessage, stall: boolean): StreamEvent[] {
  const { content: [block], stop_reason, usage } = message;
  const start = { type: 'message_start', message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } };
  if (stall) return [start];
  return [
    start,
    { type: 'content_block_start', index: 0, content_block: block.type === 'tool_use' ? { ...block, input: {} } : { type: 'text', text: '' } },
    {
      type: 'content_block_delta', index: 0,
      delta: block.type === 'tool_use' ? { type: 'input_json_delta', partial_json: JSON.stringify(block.input) } : { type: 'text_delta', text: block.text },
    },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason, stop_sequence: null }, usage },
    { type: 'message_stop' },
  ];
}

function replyText(reply: StandInReply, body: RecordedRequest['body']): string {
  if (reply.kind === 'text' && reply.text !== undefined) return reply.text;
  const turns = Array.isArray(body.messages) ? body.messages.length : 0;
  return `Hello from the local Anthropic stand-in. I received ${turns} message(s); ` +
    'set ANTHROPIC_API_KEY to talk to Claude for real.';
}

function errorType(status: number): string {
  if (status === 400) return 'invalid_request_error';
  if (status === 401) return 'authentication_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 529) return 'overloaded_error';
  return 'api_error';
}

async function readJson(req: IncomingMessage): Promise<RecordedRequest['body']> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
  } catch {
    return {};
  }
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function requestIdHeader(provider: RecordedRequest['provider']): Record<string, string> {
  return provider === 'bedrock' ? { 'x-amzn-requestid': randomUUID() } : { 'request-id': `req_${randomUUID()}` };
}

function sendJson(res: ServerResponse, status: number, body: object, headers: Record<string, string> = requestIdHeader('anthropic')): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function sendBedrockError(res: ServerResponse, status: number, message: string): void {
  const error = bedrockError(status);
  sendJson(res, error.status, { message }, { ...requestIdHeader('bedrock'), 'x-amzn-errortype': error.type });
}
