import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { ModelGateway } from '../lib/claude/model-gateway.js';
import { messageCostUsd } from '../lib/claude/model-prices.js';
import type { AnthropicEndpoint } from '../lib/claude/claude-process.js';
import table from '../lib/claude/model-prices.json' with { type: 'json' };

// The gateway a run's CLI reaches the model through (test/session-sandbox.test.ts runs the CLI
// behind it): it serves that run's token on the model API's own paths, and nothing else.

let standIn: AnthropicStandIn;
let gateway: ModelGateway;
let given: AnthropicEndpoint;
beforeAll(async () => {
  standIn = await new AnthropicStandIn().start();
  gateway = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: standIn.url });
  given = gateway.endpoint as AnthropicEndpoint;
});
afterAll(async () => {
  await gateway.close();
  await standIn.close();
});

const message = { model: 'claude-sonnet-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };
const post = (path: string, key: string, body: unknown = message) =>
  fetch(`${given.baseUrl}${path}`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify(body) });

describe('the model gateway', () => {
  it('gives the CLI its own URL and token, never the key', () => {
    expect(given.baseUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/[0-9a-f]{48}$/);
    expect(given.apiKey).toBe(given.baseUrl!.split('/').at(-1));
    expect(JSON.stringify(given)).not.toContain('sk-ant-real-key');
  });

  it('passes a Messages call with the run\'s token on, as the deployment\'s key', async () => {
    const answer = await post('/v1/messages', given.apiKey);
    expect(answer.status).toBe(200);
    expect(standIn.messageRequests).toHaveLength(1);
  });

  it('refuses another token, another path under the API (batches, files, models) and a path outside its prefix', async () => {
    expect((await post('/v1/messages', 'sk-ant-guess')).status).toBe(401);
    for (const path of ['/v1/messages/batches', '/v1/files', '/v1/models', '/v1/messages/../files']) {
      expect({ path, status: (await post(path, given.apiKey)).status }).toEqual({ path, status: 403 });
    }
    const outside = await fetch(`${new URL(given.baseUrl!).origin}/v1/messages`, { method: 'POST', headers: { 'x-api-key': given.apiKey }, body: '{}' });
    expect(outside.status).toBe(401);
    expect(standIn.messageRequests).toHaveLength(1);
  });

  it('refuses a call asking for a server tool whose cost it cannot meter, naming the field, and serves web search and web fetch', async () => {
    // Prepare: a client tool first, then a server tool billed by what the answer's usage does not show
    standIn.reset();
    const read = { name: 'Read', description: 'reads', input_schema: { type: 'object' } };
    const unmetered = ['code_execution_20250825', 'advisor_20260301', 'tool_search_tool_regex_20251119', 'mcp_toolset'];
    for (const type of unmetered) {
      // Act
      const answer = await post('/v1/messages', given.apiKey, { ...message, tools: [read, { type, name: 'server_tool' }] });
      // Assess
      const body = (await answer.json()) as { error: { type: string; message: string } };
      expect({ type, status: answer.status }).toEqual({ type, status: 400 });
      expect(body.error).toMatchObject({ type: 'invalid_request_error', message: expect.stringContaining(`tools[1].type "${type}"`) });
    }
    expect(standIn.messageRequests).toHaveLength(0);
    // The CLI's own WebSearch sends web_search_20250305 (max_uses 8); web fetch costs its tokens only
    const served = await post('/v1/messages', given.apiKey, {
      ...message, tools: [read, { type: 'web_search_20250305', name: 'web_search', max_uses: 8 }, { type: 'web_fetch_20250910', name: 'web_fetch' }],
    });
    expect(served.status).toBe(200);
    expect(standIn.messageRequests).toHaveLength(1);
  });

  it('refuses a compaction edit, whose iterations are billed apart from the usage it meters, and serves the CLI\'s own edits', async () => {
    standIn.reset();
    const compact = await post('/v1/messages', given.apiKey, { ...message, context_management: { edits: [{ type: 'compact_20260112' }] } });
    expect(compact.status).toBe(400);
    expect(((await compact.json()) as { error: { message: string } }).error.message).toContain('context_management.edits[0].type "compact_20260112"');
    expect(standIn.messageRequests).toHaveLength(0);
    const cleared = await post('/v1/messages', given.apiKey, { ...message, context_management: { edits: [{ type: 'clear_thinking_20251015', keep: 'all' }, { type: 'clear_tool_uses_20250919' }] } });
    expect(cleared.status).toBe(200);
    expect(standIn.messageRequests).toHaveLength(1);
  });
});

/** An upstream the stand-in cannot play: it compresses, streams slowly, and says what it was asked. */
async function scriptedUpstream(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; seen: IncomingMessage[]; close: () => Promise<void> }> {
  const seen: IncomingMessage[] = [];
  const server = createServer((req, res) => {
    seen.push(req);
    req.resume();
    req.once('end', () => answer(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

const sse = (event: object) => `event: ${(event as { type: string }).type}\ndata: ${JSON.stringify(event)}\n\n`;
const MESSAGE = { id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-opus-5-5', content: [], stop_reason: null };

describe('what the model gateway meters', () => {
  it('asks for uncompressed answers, and still reads one that comes compressed', async () => {
    const upstream = await scriptedUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync(JSON.stringify({ ...MESSAGE, usage: { input_tokens: 1_000, output_tokens: 500 } })));
    });
    const run = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: upstream.url });
    try {
      const endpoint = run.endpoint as AnthropicEndpoint;
      const answer = await fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey, 'accept-encoding': 'gzip, br' }, body: JSON.stringify(message) });
      expect(answer.status).toBe(200);
      await answer.arrayBuffer();
      expect(upstream.seen[0]!.headers['accept-encoding']).toBe('identity');
      expect(await run.drain()).toMatchObject({ usage: { inputTokens: 1_000, outputTokens: 500 }, unreadAnswers: 0 });
    } finally {
      await run.close();
      await upstream.close();
    }
  });

  it('prices the surcharges a streamed answer\'s usage shows, its start and its delta merged as the CLI merges them', async () => {
    // Prepare: fast mode in the US, 3,000 of 4,000 cache writes living an hour, and 2 web searches that only the delta counts
    const upstream = await scriptedUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const usage = { input_tokens: 1_000, output_tokens: 1, cache_read_input_tokens: 2_000, cache_creation_input_tokens: 4_000, cache_creation: { ephemeral_5m_input_tokens: 1_000, ephemeral_1h_input_tokens: 3_000 }, inference_geo: 'us', speed: 'fast', server_tool_use: { web_search_requests: 0, web_fetch_requests: 0 } };
      res.write(sse({ type: 'message_start', message: { ...MESSAGE, usage } }));
      res.end(sse({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 500, server_tool_use: { web_search_requests: 2, web_fetch_requests: 1 } } }) + sse({ type: 'message_stop' }));
    });
    const run = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: upstream.url });
    try {
      const endpoint = run.endpoint as AnthropicEndpoint;
      // Act
      const answer = await fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey }, body: JSON.stringify({ ...message, stream: true }) });
      await answer.arrayBuffer();
      // Assess: the row's fast rates (1-hour writes at their own), times the US factor, and each search
      const spent = await run.drain();
      const row = table.prices['claude-opus-5-5'];
      const tokens = (1_000 * row.fast.inputPerMTok + 500 * row.fast.outputPerMTok + 2_000 * row.fast.cacheReadPerMTok
        + 1_000 * row.fast.cacheWritePerMTok + 3_000 * row.fast.cacheWrite1hPerMTok) / 1e6;
      expect(spent.usage).toEqual({ inputTokens: 1_000, outputTokens: 500, cacheReadInputTokens: 2_000, cacheCreationInputTokens: 4_000 });
      expect(spent.totalCostUsd).toBeCloseTo(tokens * table.inferenceGeoMultiplier.us + 2 * row.webSearchPerRequest, 9);
    } finally {
      await run.close();
      await upstream.close();
    }
  });

  it('prices an answer that does not say its speed or place as the call asked for them', async () => {
    // Prepare: a call asking for fast mode in the US, answered by a usage that names neither (as an older API or a provider may)
    const upstream = await scriptedUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...MESSAGE, usage: { input_tokens: 1_000, output_tokens: 500 } }));
    });
    const run = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: upstream.url });
    try {
      const endpoint = run.endpoint as AnthropicEndpoint;
      // Act
      const answer = await fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey }, body: JSON.stringify({ ...message, model: 'claude-opus-5-5', speed: 'fast', inference_geo: 'us' }) });
      await answer.arrayBuffer();
      // Assess
      const row = table.prices['claude-opus-5-5'];
      const spent = await run.drain();
      expect(spent.totalCostUsd).toBeCloseTo(((1_000 * row.fast.inputPerMTok + 500 * row.fast.outputPerMTok) / 1e6) * table.inferenceGeoMultiplier.us, 9);
    } finally {
      await run.close();
      await upstream.close();
    }
  });

  it('charges an answer it cannot read the call\'s worst case, never nothing', async () => {
    // Prepare: a billed 200 in an encoding the meter cannot undo, for a call asking for 4,000 tokens of claude-opus-5-5
    const upstream = await scriptedUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' });
      res.end(Buffer.from('(not a message the meter can read)'));
    });
    const run = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: upstream.url });
    try {
      const endpoint = run.endpoint as AnthropicEndpoint;
      const body = JSON.stringify({ ...message, model: 'claude-opus-5-5', max_tokens: 4_000 });
      // Act
      const answer = await fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey }, body });
      await answer.arrayBuffer();
      // Assess: its max_tokens of output and its body as input (~4 bytes a token), priced as the model asked for
      const spent = await run.drain();
      expect(spent.unreadAnswers).toBe(1);
      const worstCase = { inputTokens: Math.ceil(Buffer.byteLength(body) / 4), outputTokens: 4_000, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
      expect(spent.usage).toEqual(worstCase);
      expect(spent.totalCostUsd).toBeGreaterThan(0);
      expect(spent.totalCostUsd).toBeCloseTo(messageCostUsd('claude-opus-5-5', worstCase), 6);
    } finally {
      await run.close();
      await upstream.close();
    }
  });

  it('charges an unreadable answer its worst case while a parallel call\'s answer is read', async () => {
    // Prepare: the unreadable answer ends 300 ms after a readable one served meanwhile
    const upstream = await scriptedUpstream((req, res) => {
      if (req.headers['x-call'] === 'unreadable') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' });
        res.write(Buffer.from('(not a message'));
        setTimeout(() => res.end(Buffer.from(' the meter can read)')), 300);
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ...MESSAGE, usage: { input_tokens: 10, output_tokens: 5 } }));
      }
    });
    const run = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: upstream.url });
    try {
      const endpoint = run.endpoint as AnthropicEndpoint;
      const body = JSON.stringify({ ...message, model: 'claude-opus-5-5', max_tokens: 4_000 });
      const call = (kind: string) => fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey, 'x-call': kind }, body })
        .then((r) => r.arrayBuffer());
      // Act
      const unreadable = call('unreadable');
      await new Promise((r) => setTimeout(r, 100));
      await call('readable');
      await unreadable;
      // Assess: the readable one's message, and the unreadable one's worst case
      const spent = await run.drain();
      expect(spent.unreadAnswers).toBe(1);
      expect(spent.messages).toBe(2);
      expect(spent.usage).toMatchObject({ inputTokens: 10 + Math.ceil(Buffer.byteLength(body) / 4), outputTokens: 5 + 4_000 });
    } finally {
      await run.close();
      await upstream.close();
    }
  });

  it('reads an answer on after its caller hung up, and drains what is under way before it says what was spent', async () => {
    // The model streams its start, then its output count 300 ms later; the caller leaves after the start
    const upstream = await scriptedUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sse({ type: 'message_start', message: { ...MESSAGE, usage: { input_tokens: 1_000, output_tokens: 1 } } }));
      setTimeout(() => res.end(sse({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 30_000 } }) + sse({ type: 'message_stop' })), 300);
    });
    const run = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: upstream.url });
    try {
      const endpoint = run.endpoint as AnthropicEndpoint;
      const caller = new AbortController();
      const answer = await fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey }, body: JSON.stringify({ ...message, stream: true }), signal: caller.signal });
      await answer.body!.getReader().read();
      caller.abort();
      const spent = await run.drain();
      expect(spent.usage).toMatchObject({ inputTokens: 1_000, outputTokens: 30_000 });
      // Drained: the run is over, and nothing more goes through
      const late = await fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey }, body: JSON.stringify(message) });
      expect(late.status).toBe(503);
      expect(upstream.seen).toHaveLength(1);
    } finally {
      await run.close();
      await upstream.close();
    }
  });

  it('does not let parallel calls all start under the budget: a session ends at most one reply past it', async () => {
    // Prepare: replies of $0.000728 (the stand-in's 12 in, 34 out), a $0.002 budget, five calls at once asking for 34 tokens each
    standIn.reset();
    const run = await ModelGateway.open({ apiKey: 'sk-ant-real-key', baseUrl: standIn.url }, { budgetUsd: 0.002 });
    try {
      const endpoint = run.endpoint as AnthropicEndpoint;
      const call = () => fetch(`${endpoint.baseUrl}/v1/messages`, { method: 'POST', headers: { 'x-api-key': endpoint.apiKey, 'content-type': 'application/json' }, body: JSON.stringify({ ...message, model: 'claude-opus-5-5', max_tokens: 34 }) })
        .then(async (r) => (await r.arrayBuffer(), r.status));
      // Act
      const statuses = await Promise.all([call(), call(), call(), call(), call()]);
      // Assess: three served (the third after the first two, once it could see they left room), two refused
      expect(statuses.sort()).toEqual([200, 200, 200, 402, 402]);
      const spent = await run.drain();
      expect(spent.totalCostUsd).toBeCloseTo(3 * 0.000728, 9);
      expect(spent.refusedOverBudget).toBe(2);
      expect(standIn.messageRequests).toHaveLength(3);
    } finally {
      await run.close();
    }
  });
});
