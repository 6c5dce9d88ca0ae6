import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiRequestError, SessionsApiClient, apiUrlOf, regionOf } from '../lib/cli/api-client.js';

// The CLI's client of a deployed API signs each request with SigV4 for execute-api, as API
// Gateway's IAM authorisation checks it: here a server re-derives the signature from what it
// received, with the same secret, and answers 403 when it differs (as API Gateway would).
const CREDENTIALS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', sessionToken: 'session-token' };
const received: { method: string; path: string; body: string; verified: boolean }[] = [];
let base: URL;
let server: ReturnType<typeof createServer>;

async function verify(req: IncomingMessage, body: string): Promise<boolean> {
  const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
  const authorization = String(req.headers.authorization ?? '');
  const signedHeaders = /SignedHeaders=([^,]+)/.exec(authorization)?.[1]?.split(';') ?? [];
  const region = /Credential=[^/]+\/\d{8}\/([^/]+)\/execute-api\/aws4_request/.exec(authorization)?.[1];
  if (!region || !signedHeaders.length) return false;
  const headers = Object.fromEntries(signedHeaders.map((h) => [h, String(req.headers[h] ?? '')]));
  const amzDate = String(req.headers['x-amz-date']);
  const signingDate = new Date(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`);
  const signer = new SignatureV4({ service: 'execute-api', region, credentials: CREDENTIALS, sha256: Hash.bind(null, 'sha256') });
  const expected = await signer.sign(
    { method: req.method!, protocol: 'http:', hostname: url.hostname, port: Number(url.port), path: url.pathname, query: Object.fromEntries(url.searchParams), headers, body: body || undefined },
    { signingDate },
  );
  return expected.headers.authorization === authorization;
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      void verify(req, body).then((verified) => {
        received.push({ method: req.method!, path: req.url!, body, verified });
        res.writeHead(verified ? 200 : 403, { 'content-type': 'application/json' });
        res.end(JSON.stringify(verified ? { ok: true } : { message: 'The request signature we calculated does not match the signature you provided.' }));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('the API client', () => {
  it('signs a POST and a GET for execute-api with the SDK\'s signer, under the API\'s stage path', async () => {
    const client = new SessionsApiClient(base, { credentials: async () => CREDENTIALS, env: { AWS_REGION: 'eu-west-1' } });
    const started = await client.request('POST', '/projects/demo/sessions', { prompt: 'Summarise the README' });
    const read = await client.request('GET', '/projects/demo/sessions/abc?x=1');
    expect([started.status, read.status]).toEqual([200, 200]);
    expect(received.slice(-2)).toEqual([
      { method: 'POST', path: '/v1/projects/demo/sessions', body: JSON.stringify({ prompt: 'Summarise the README' }), verified: true },
      { method: 'GET', path: '/v1/projects/demo/sessions/abc?x=1', body: '', verified: true },
    ]);
  });

  it('says which credentials to fix when the API refuses the signature', async () => {
    const wrong = new SessionsApiClient(base, { credentials: async () => ({ ...CREDENTIALS, secretAccessKey: 'not-the-secret' }) });
    await expect(wrong.request('POST', '/projects/demo/sessions', {})).rejects.toMatchObject({
      name: 'ApiRequestError', status: 403, message: expect.stringMatching(/refused the request's AWS signature .*AWS_PROFILE/),
    });
  });

  it('takes --api or CLAUDE_SESSIONS_API, https only but for loopback, naming the source of a bad one', () => {
    expect(apiUrlOf(undefined, {})).toBeUndefined();
    expect(apiUrlOf(undefined, { CLAUDE_SESSIONS_API: 'https://abc.execute-api.eu-west-1.amazonaws.com/v1' })?.pathname).toBe('/v1');
    expect(() => apiUrlOf('http://example.com/v1', {})).toThrow(/--api must be https/);
    expect(() => apiUrlOf(undefined, { CLAUDE_SESSIONS_API: 'not a url' })).toThrow(ApiRequestError);
    expect(regionOf(new URL('https://abc.execute-api.ap-southeast-2.amazonaws.com/v1'), {})).toBe('ap-southeast-2');
    expect(regionOf(new URL('http://127.0.0.1:8787'), { AWS_REGION: 'eu-west-1' })).toBe('eu-west-1');
  });
});
