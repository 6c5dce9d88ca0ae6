import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { ModelGateway } from '../lib/claude/model-gateway.js';
import type { AnthropicEndpoint } from '../lib/claude/claude-process.js';

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
});
