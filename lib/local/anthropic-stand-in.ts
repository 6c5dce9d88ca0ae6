import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { ClaudeEndpoint } from '../claude/claude-process.js';

/** Token counts the stand-in reports for one reply, in the API's own field names. */
export interface StandInUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens?: number;
  cache_creation_input_tokens?: number;
}

/** What the stand-in does with the next `POST /v1/messages`. */
export type StandInReply =
  | { kind: 'text'; text?: string; usage?: StandInUsage }
  /** An HTTP error with the API's error body (400, 401, 429, 500, 529 …). */
  | { kind: 'error'; status: number; message?: string }
  /** Sends message_start (with its usage) and then nothing, holding the connection open. */
  | { kind: 'stall'; usage?: StandInUsage }
  /** Asks for a tool call (by default Glob of *.md), so the CLI takes another turn. */
  | { kind: 'tool_use'; usage?: StandInUsage; name?: string; input?: Record<string, unknown> };

export interface RecordedRequest {
  path: string;
  sessionId: string | undefined;
  body: { model?: string; messages?: unknown[]; stream?: boolean } & Record<string, unknown>;
}

const DEFAULT_USAGE: StandInUsage = {
  input_tokens: 12,
  output_tokens: 34,
  cache_read_input_tokens: 0,
  cache_creation_input_tokens: 0,
};

/**
 * A local stand-in for the Anthropic Messages API on 127.0.0.1: the real `claude`
 * binary talks to it through ANTHROPIC_BASE_URL, so tests and offline demos run the
 * real CLI end to end. It streams SSE exactly as the API does, and can be told to fail.
 */
export class AnthropicStandIn {
  readonly requests: RecordedRequest[] = [];
  private readonly queue: StandInReply[] = [];
  private fallback: StandInReply = { kind: 'text' };
  private server?: Server;
  private readonly open = new Set<ServerResponse>();

  /** Replies used in order for the next requests; the default reply follows when they run out. */
  respondWith(...replies: StandInReply[]): this {
    this.queue.push(...replies);
    return this;
  }

  /** The reply for every request that has no queued reply. */
  respondByDefault(reply: StandInReply): this {
    this.fallback = reply;
    return this;
  }

  reset(): void {
    this.queue.length = 0;
    this.requests.length = 0;
    this.fallback = { kind: 'text' };
  }

  /** Messages requests only (the CLI may make others), in arrival order. */
  get messageRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.path === '/v1/messages');
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

  /** What the CLI is given to talk to this stand-in. */
  get endpoint(): ClaudeEndpoint {
    return { apiKey: 'sk-ant-local-stand-in', baseUrl: this.url };
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
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = (req.url ?? '/').split('?')[0]!;
    let body: RecordedRequest['body'] = {};
    try {
      body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
    } catch {
      body = {};
    }
    const sessionHeader = req.headers['x-claude-code-session-id'];
    this.requests.push({
      path,
      sessionId: Array.isArray(sessionHeader) ? sessionHeader[0] : sessionHeader,
      body,
    });

    if (req.method === 'POST' && path === '/v1/messages/count_tokens') {
      return sendJson(res, 200, { input_tokens: DEFAULT_USAGE.input_tokens });
    }
    if (req.method !== 'POST' || path !== '/v1/messages') {
      return sendJson(res, 404, { type: 'error', error: { type: 'not_found_error', message: `no route ${path}` } });
    }
    const reply = this.queue.shift() ?? this.fallback;
    const model = typeof body.model === 'string' ? body.model : 'claude-stand-in';
    if (reply.kind === 'error') {
      return sendJson(res, reply.status, {
        type: 'error',
        error: { type: errorType(reply.status), message: reply.message ?? `stand-in error ${reply.status}` },
      });
    }
    const usage = { ...DEFAULT_USAGE, ...reply.usage };
    if (body.stream === false) {
      // Non-streaming calls (the CLI makes few) get the same content as one JSON body.
      return sendJson(res, 200, {
        id: `msg_${randomUUID()}`, type: 'message', role: 'assistant', model,
        content: [{ type: 'text', text: replyText(reply, body) }],
        stop_reason: 'end_turn', stop_sequence: null, usage,
      });
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    this.open.add(res);
    res.on('close', () => this.open.delete(res));
    const send = (event: string, data: object) => res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`);
    send('message_start', {
      message: {
        id: `msg_${randomUUID()}`, type: 'message', role: 'assistant', model, content: [],
        stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 },
      },
    });
    if (reply.kind === 'stall') return; // the connection stays open until the client gives up
    let stopReason = 'end_turn';
    if (reply.kind === 'tool_use') {
      stopReason = 'tool_use';
      send('content_block_start', {
        index: 0,
        content_block: { type: 'tool_use', id: `toolu_${randomUUID().replaceAll('-', '')}`, name: reply.name ?? 'Glob', input: {} },
      });
      send('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(reply.input ?? { pattern: '*.md' }) } });
    } else {
      send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: replyText(reply, body) } });
    }
    send('content_block_stop', { index: 0 });
    send('message_delta', { delta: { stop_reason: stopReason, stop_sequence: null }, usage });
    send('message_stop', {});
    this.open.delete(res);
    res.end();
  }
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

function sendJson(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': `req_${randomUUID()}` });
  res.end(JSON.stringify(body));
}

/**
 * Claude's endpoint for a local command: ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL) when
 * set, else a stand-in started here, which the caller closes.
 */
export async function localClaudeEndpoint(env: NodeJS.ProcessEnv): Promise<{ endpoint: ClaudeEndpoint; standIn?: AnthropicStandIn }> {
  if (env.ANTHROPIC_API_KEY) return { endpoint: { apiKey: env.ANTHROPIC_API_KEY, baseUrl: env.ANTHROPIC_BASE_URL || undefined } };
  const standIn = await new AnthropicStandIn().start();
  return { endpoint: standIn.endpoint, standIn };
}
