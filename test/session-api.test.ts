import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { createApiHandler } from '../lib/api/router.js';
import { startLocalApiServer } from '../lib/local/local-api-server.js';
import { startTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
let server: Awaited<ReturnType<typeof startLocalApiServer>>;

beforeAll(async () => {
  env = await startTestRuntime();
  const handler = createApiHandler({
    repository: env.runtime.repository, milestones: env.runtime.milestones, starter: env.runtime, transcripts: env.runtime.transcripts,
  });
  server = await startLocalApiServer(handler, 0);
});
afterAll(async () => {
  await server.close();
  await env.close();
});
beforeEach(() => env.anthropic.reset());

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function waitForFinal(sessionId: string) {
  const seen: string[] = [];
  for (let i = 0; i < 300; i++) {
    const { status, body } = await call('GET', `/sessions/${sessionId}`);
    if (status === 200) {
      seen.push(body.status);
      if (body.status !== 'RUNNING') return { session: body, seen };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`session ${sessionId} did not close`);
}

describe('the HTTP API over real HTTP, with the real CLI behind it', () => {
  it('POST /sessions answers 202, then GET shows the session RUNNING and then COMPLETED with exact usage', async () => {
    env.anthropic.respondWith({ kind: 'text', text: 'done', usage: { input_tokens: 321, output_tokens: 54, cache_read_input_tokens: 7 } });
    const post = await call('POST', '/sessions', { prompt: 'Summarise the README', projectId: 'api-demo' });
    expect(post.status).toBe(202);
    expect(post.body).toMatchObject({
      sessionId: expect.any(String),
      executionArn: expect.stringContaining(post.body.sessionId),
      links: { self: `/sessions/${post.body.sessionId}` },
    });
    const { session, seen } = await waitForFinal(post.body.sessionId);
    expect(seen[0]).toBe('RUNNING');
    expect(session).toMatchObject({
      status: 'COMPLETED', trigger: 'api', projectId: 'api-demo', claudeSessionId: post.body.sessionId,
      usage: { inputTokens: 321, outputTokens: 54, cacheReadInputTokens: 7, cacheCreationInputTokens: 0 },
    });
  });

  it('a repeated POST with the same sessionId answers 202 with the same session and starts nothing new', async () => {
    const sessionId = uuidv4();
    const first = await call('POST', '/sessions', { prompt: 'once', projectId: 'api-idem', sessionId });
    await waitForFinal(sessionId);
    const requests = env.anthropic.messageRequests.length;
    const again = await call('POST', '/sessions', { prompt: 'once', projectId: 'api-idem', sessionId });
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ sessionId, executionArn: first.body.executionArn, started: false });
    expect(env.anthropic.messageRequests.length).toBe(requests);
  });

  it.each([
    ['a missing prompt', { projectId: 'p' }, [{ field: 'prompt', message: 'is required' }]],
    ['an invalid sessionId', { prompt: 'x', projectId: 'p', sessionId: 'nope' }, [{ field: 'sessionId', message: 'must be a UUID' }]],
    ['an unknown mode', { prompt: 'x', projectId: 'p', mode: 'often' }, [{ field: 'mode', message: 'must be one of fresh, milestone' }]],
    ['an unknown field', { prompt: 'x', projectId: 'p', colour: 'red' }, [{ field: 'colour', message: 'is not a known field' }]],
  ])('answers 400 naming the field for %s, and creates no session', async (_label, body, errors) => {
    const res = await call('POST', '/sessions', body);
    expect(res).toEqual({ status: 400, body: { message: 'Invalid request', errors } });
    expect(await env.runtime.repository.listRunning('p')).toEqual([]);
  });

  it('answers 400 to malformed JSON, 415 to a body that is not JSON, 413 to an oversized body', async () => {
    expect(await call('POST', '/sessions', '{"prompt":')).toEqual({ status: 400, body: { message: 'Malformed JSON body' } });
    expect((await call('POST', '/sessions', 'prompt=x', { 'content-type': 'text/plain' })).status).toBe(415);
    const huge = await call('POST', '/sessions', { prompt: 'x'.repeat(300_000), projectId: 'p' });
    expect(huge.status).toBe(413);
  });

  it('answers 404 to an unknown session or route, 400 to a bad id, 405 to a wrong method', async () => {
    expect((await call('GET', `/sessions/${uuidv4()}`)).status).toBe(404);
    expect(await call('GET', '/sessions/123')).toEqual({
      status: 400, body: { message: 'Invalid request', errors: [{ field: 'id', message: 'must be a UUID' }] },
    });
    expect((await call('GET', '/nowhere')).status).toBe(404);
    expect(await call('DELETE', '/sessions')).toEqual({ status: 405, body: { message: 'DELETE is not allowed on /sessions; use POST' } });
  });

  it('lists a project newest first across pages, filters by status, and derives usage totals from the sessions', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      env.anthropic.respondWith(i === 2 ? { kind: 'error', status: 400 } : { kind: 'text', usage: { input_tokens: 10 * (i + 1), output_tokens: i + 1 } });
      const post = await call('POST', '/sessions', { prompt: `task ${i}`, projectId: 'api-list' });
      await waitForFinal(post.body.sessionId);
      ids.push(post.body.sessionId);
    }
    const seen: string[] = [];
    let next: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: { items: { sessionId: string }[]; nextToken: string | null } } = await call(
        'GET', `/projects/api-list/sessions?limit=2${next ? `&nextToken=${encodeURIComponent(next)}` : ''}`,
      );
      expect(res.status).toBe(200);
      seen.push(...res.body.items.map((s) => s.sessionId));
      next = res.body.nextToken;
      pages += 1;
    } while (next);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual([...ids].reverse());

    const failed = await call('GET', '/projects/api-list/sessions?status=failed');
    expect(failed.body.items.map((s: { sessionId: string }) => s.sessionId)).toEqual([ids[2]]);

    const usage = await call('GET', '/projects/api-list/usage');
    const sessions = await Promise.all(ids.map(async (id) => (await call('GET', `/sessions/${id}`)).body));
    expect(usage.body).toMatchObject({
      projectId: 'api-list',
      sessions: 5,
      byStatus: { COMPLETED: 4, FAILED: 1 },
      usage: {
        inputTokens: sessions.reduce((n, s) => n + s.usage.inputTokens, 0),
        outputTokens: sessions.reduce((n, s) => n + s.usage.outputTokens, 0),
      },
    });
    expect(usage.body.usage.inputTokens).toBe(10 + 20 + 40 + 50);
  });

  it('answers 400 naming the query field for a bad status, limit or nextToken', async () => {
    const res = await call('GET', '/projects/p/sessions?status=weird&limit=0');
    expect(res.status).toBe(400);
    expect(res.body.errors.map((e: { field: string }) => e.field).sort()).toEqual(['limit', 'status']);
    expect((await call('GET', '/projects/p/sessions?nextToken=garbage')).body).toMatchObject({ errors: [{ field: 'nextToken' }] });
  });
});

describe('milestones over the HTTP API', () => {
  it('opens a milestone, runs two tasks in it, shows each task and the totals, closes it, then refuses a task', async () => {
    // Prepare
    env.anthropic.respondWith(
      { kind: 'text', text: 'first', usage: { input_tokens: 11, output_tokens: 2 } },
      { kind: 'text', text: 'second', usage: { input_tokens: 22, output_tokens: 3 } },
    );
    // Act
    const opened = await call('POST', '/milestones', { projectId: 'api-ms' });
    const id = opened.body.milestoneId as string;
    const one = await call('POST', '/sessions', { prompt: 'step one', projectId: 'api-ms', milestoneId: id });
    await waitForFinal(one.body.sessionId);
    const two = await call('POST', '/sessions', { prompt: 'step two', projectId: 'api-ms', milestoneId: id });
    await waitForFinal(two.body.sessionId);
    const shown = await call('GET', `/milestones/${id}`);
    const closed = await call('POST', `/milestones/${id}/close`);
    const refused = await call('POST', '/sessions', { prompt: 'step three', projectId: 'api-ms', milestoneId: id });
    // Assess
    expect(opened).toMatchObject({ status: 201, body: { projectId: 'api-ms', status: 'OPEN', claudeSessionId: id, links: { self: `/milestones/${id}` } } });
    expect(shown.status).toBe(200);
    expect(shown.body.tasks.map((t: { sessionId: string }) => t.sessionId)).toEqual([one.body.sessionId, two.body.sessionId]);
    expect(shown.body.tasks.map((t: { mode: string; status: string }) => `${t.mode} ${t.status}`)).toEqual(['milestone COMPLETED', 'milestone COMPLETED']);
    expect(shown.body.totals).toMatchObject({ sessions: 2, usage: { inputTokens: 33, outputTokens: 5 } });
    expect(closed).toMatchObject({ status: 200, body: { status: 'CLOSED' } });
    expect(refused).toMatchObject({ status: 409, body: { reason: 'closed', message: expect.stringContaining('is closed') } });
    expect(env.anthropic.messageRequests).toHaveLength(2);
  });

  it('answers 409 while a task holds the milestone, 404 for an unknown one, 400 naming bad fields', async () => {
    env.anthropic.respondWith({ kind: 'stall' });
    const { body: opened } = await call('POST', '/milestones', { projectId: 'api-busy' });
    const first = await call('POST', '/sessions', { prompt: 'long', projectId: 'api-busy', milestoneId: opened.milestoneId, timeoutSeconds: 3 });
    for (let i = 0; i < 200 && !(await env.runtime.milestones.get(opened.milestoneId))?.leaseSessionId; i++) await new Promise((r) => setTimeout(r, 50));
    const busy = await call('POST', '/sessions', { prompt: 'second', projectId: 'api-busy', milestoneId: opened.milestoneId });
    const closeBusy = await call('POST', `/milestones/${opened.milestoneId}/close`);
    const otherProject = await call('POST', '/sessions', { prompt: 'x', projectId: 'someone-else', milestoneId: opened.milestoneId });
    await waitForFinal(first.body.sessionId);
    const unknown = uuidv4();
    expect(busy).toMatchObject({ status: 409, body: { reason: 'busy', message: expect.stringContaining(`task ${first.body.sessionId} is running`) } });
    expect(closeBusy.status).toBe(409);
    expect(otherProject).toMatchObject({ status: 409, body: { reason: 'other-project' } });
    expect(await call('POST', '/sessions', { prompt: 'x', projectId: 'api-busy', milestoneId: unknown })).toMatchObject({ status: 404 });
    expect(await call('GET', `/milestones/${unknown}`)).toMatchObject({ status: 404 });
    expect(await call('GET', '/milestones/not-a-uuid')).toMatchObject({ status: 400, body: { errors: [{ field: 'id', message: 'must be a UUID' }] } });
    expect(await call('POST', '/milestones', { projectId: 'bad project!' })).toMatchObject({ status: 400, body: { errors: [{ field: 'projectId' }] } });
    expect(await env.runtime.repository.listRunning('api-busy')).toEqual([]);
  });
});
