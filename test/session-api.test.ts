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

async function waitForFinal(projectId: string, sessionId: string) {
  const seen: string[] = [];
  for (let i = 0; i < 300; i++) {
    const { status, body } = await call('GET', `/projects/${projectId}/sessions/${sessionId}`);
    if (status === 200) {
      seen.push(body.status);
      if (body.status !== 'RUNNING') return { session: body, seen };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`session ${sessionId} did not close`);
}

describe('the HTTP API over real HTTP, with the real CLI behind it', () => {
  it('POST /projects/{projectId}/sessions answers 202, then GET shows the session RUNNING and then COMPLETED with exact usage', async () => {
    env.anthropic.respondWith({ kind: 'text', text: 'done', usage: { input_tokens: 321, output_tokens: 54, cache_read_input_tokens: 7 } });
    const post = await call('POST', '/projects/api-demo/sessions', { prompt: 'Summarise the README' });
    expect(post.status).toBe(202);
    expect(post.body).toMatchObject({
      sessionId: expect.any(String),
      executionArn: expect.stringContaining(post.body.sessionId),
      links: { self: `/projects/api-demo/sessions/${post.body.sessionId}` },
    });
    const { session, seen } = await waitForFinal('api-demo', post.body.sessionId);
    expect(seen[0]).toBe('RUNNING');
    expect(session).toMatchObject({
      status: 'COMPLETED', trigger: 'api', projectId: 'api-demo', claudeSessionId: post.body.sessionId,
      usage: { inputTokens: 321, outputTokens: 54, cacheReadInputTokens: 7, cacheCreationInputTokens: 0 },
    });
  });

  it('a repeated POST with the same sessionId answers 202 with the same session and starts nothing new', async () => {
    const sessionId = uuidv4();
    const first = await call('POST', '/projects/api-idem/sessions', { prompt: 'once', projectId: 'api-idem', sessionId });
    await waitForFinal('api-idem', sessionId);
    const requests = env.anthropic.messageRequests.length;
    const again = await call('POST', '/projects/api-idem/sessions', { prompt: 'once', sessionId });
    expect(again.status).toBe(202);
    expect(again.body).toMatchObject({ sessionId, executionArn: first.body.executionArn, started: false });
    expect(env.anthropic.messageRequests.length).toBe(requests);
  });

  it.each([
    ['a missing prompt', { projectId: 'p' }, [{ field: 'prompt', message: 'is required' }]],
    ['a projectId other than the path\'s', { prompt: 'x', projectId: 'q' }, [{ field: 'projectId', message: 'must be the path\'s project (p) or left out' }]],
    ['an invalid sessionId', { prompt: 'x', projectId: 'p', sessionId: 'nope' }, [{ field: 'sessionId', message: 'must be a UUID' }]],
    ['an unknown mode', { prompt: 'x', projectId: 'p', mode: 'often' }, [{ field: 'mode', message: 'must be one of fresh, milestone' }]],
    ['an unknown field', { prompt: 'x', projectId: 'p', colour: 'red' }, [{ field: 'colour', message: 'is not a known field' }]],
  ])('answers 400 naming the field for %s, and creates no session', async (_label, body, errors) => {
    const res = await call('POST', '/projects/p/sessions', body);
    expect(res).toEqual({ status: 400, body: { message: 'Invalid request', errors } });
    expect(await env.runtime.repository.listRunning('p')).toEqual([]);
    expect(await env.runtime.repository.listRunning('q')).toEqual([]);
  });

  it('answers 400 naming projectId for a path whose project id breaks the input schema\'s rule, on every route', async () => {
    const rule = { field: 'projectId', message: 'must be 1-64 characters of A-Z a-z 0-9 . _ -' };
    const bad = encodeURIComponent('bad project!');
    const id = uuidv4();
    const replies = await Promise.all([
      call('POST', `/projects/${bad}/sessions`, { prompt: 'x' }),
      call('GET', `/projects/${bad}/sessions`),
      call('GET', `/projects/${bad}/sessions/${id}`),
      call('GET', `/projects/${bad}/usage`),
      call('POST', `/projects/${bad}/milestones`),
      call('GET', `/projects/${bad}/milestones/${id}`),
      call('POST', `/projects/${bad}/milestones/${id}/close`),
      call('GET', `/projects/${'x'.repeat(65)}/usage`),
    ]);
    for (const reply of replies) expect(reply).toEqual({ status: 400, body: { message: 'Invalid request', errors: [rule] } });
  });

  it('answers 400 to malformed JSON, 415 to a body that is not JSON, 413 to an oversized body', async () => {
    expect(await call('POST', '/projects/p/sessions', '{"prompt":')).toEqual({ status: 400, body: { message: 'Malformed JSON body' } });
    expect((await call('POST', '/projects/p/sessions', 'prompt=x', { 'content-type': 'text/plain' })).status).toBe(415);
    const huge = await call('POST', '/projects/p/sessions', { prompt: 'x'.repeat(300_000) });
    expect(huge.status).toBe(413);
  });

  it('answers 404 to an unknown session or route, 400 to a bad id, 405 to a wrong method', async () => {
    expect((await call('GET', `/projects/p/sessions/${uuidv4()}`)).status).toBe(404);
    expect(await call('GET', '/projects/p/sessions/123')).toEqual({
      status: 400, body: { message: 'Invalid request', errors: [{ field: 'id', message: 'must be a UUID' }] },
    });
    expect((await call('GET', '/nowhere')).status).toBe(404);
    expect(await call('DELETE', '/projects/p/sessions')).toEqual({ status: 405, body: { message: 'DELETE is not allowed on /projects/p/sessions; use POST, GET' } });
    expect(await call('PUT', '/projects')).toEqual({ status: 405, body: { message: 'PUT is not allowed on /projects; use GET' } });
  });

  it('has no route without the project: a policy on /projects/{projectId}/* cannot be gone around', async () => {
    const id = uuidv4();
    const replies = await Promise.all([
      call('POST', '/sessions', { prompt: 'x', projectId: 'p' }), call('GET', `/sessions/${id}`),
      call('POST', '/milestones', { projectId: 'p' }), call('GET', `/milestones/${id}`), call('POST', `/milestones/${id}/close`),
    ]);
    expect(replies.map((r) => r.status)).toEqual([404, 404, 404, 404, 404]);
    expect(await env.runtime.repository.listRunning('p')).toEqual([]);
  });

  it('answers 404 to a session read through another project\'s path, saying nothing of where it is', async () => {
    // Prepare
    const post = await call('POST', '/projects/api-owner/sessions', { prompt: 'mine' });
    const { session } = await waitForFinal('api-owner', post.body.sessionId);
    // Act
    const other = await call('GET', `/projects/api-intruder/sessions/${session.sessionId}`);
    const unknown = await call('GET', `/projects/api-intruder/sessions/${uuidv4()}`);
    // Assess: the same answer as for a session that does not exist
    expect(other).toEqual({ status: 404, body: { message: `no session ${session.sessionId} in project api-intruder` } });
    expect(JSON.stringify(other.body)).not.toContain('api-owner');
    expect(unknown.status).toBe(404);
    expect((await call('GET', '/projects/api-intruder/sessions')).body.items).toEqual([]);
    // ...and a query cannot name another project than the path IAM granted
    expect((await call('GET', '/projects/api-intruder/sessions?projectId=api-owner')).body.items).toEqual([]);
  });

  it('lists a project newest first across pages, filters by status, and derives usage totals from the sessions', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      // CLI fact: a 400 is re-sent up to 5 times (2.1.332), so the failing session's every call is refused.
      if (i === 2) env.anthropic.respondByDefault({ kind: 'error', status: 400 });
      else env.anthropic.respondWith({ kind: 'text', usage: { input_tokens: 10 * (i + 1), output_tokens: i + 1 } });
      const post = await call('POST', '/projects/api-list/sessions', { prompt: `task ${i}` });
      await waitForFinal('api-list', post.body.sessionId);
      if (i === 2) env.anthropic.respondByDefault({ kind: 'text' });
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
    const sessions = await Promise.all(ids.map(async (id) => (await call('GET', `/projects/api-list/sessions/${id}`)).body));
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
    // A well-formed token of another project's pages: DynamoDB would refuse its start key as a ValidationException
    const otherProjects = Buffer.from(JSON.stringify({ pk: 'SESSION#x', sk: 'SESSION', projectId: 'other', startedAt: '2026-01-01T00:00:00.000Z' })).toString('base64url');
    const foreign = await call('GET', `/projects/p/sessions?nextToken=${otherProjects}`);
    expect(foreign.status).toBe(400);
    expect(foreign.body).toMatchObject({ errors: [{ field: 'nextToken' }] });
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
    const opened = await call('POST', '/projects/api-ms/milestones');
    const id = opened.body.milestoneId as string;
    const one = await call('POST', '/projects/api-ms/sessions', { prompt: 'step one', milestoneId: id });
    await waitForFinal('api-ms', one.body.sessionId);
    const two = await call('POST', '/projects/api-ms/sessions', { prompt: 'step two', milestoneId: id });
    await waitForFinal('api-ms', two.body.sessionId);
    const shown = await call('GET', `/projects/api-ms/milestones/${id}`);
    const closed = await call('POST', `/projects/api-ms/milestones/${id}/close`);
    const refused = await call('POST', '/projects/api-ms/sessions', { prompt: 'step three', milestoneId: id });
    // Assess
    expect(opened).toMatchObject({ status: 201, body: { projectId: 'api-ms', status: 'OPEN', claudeSessionId: id, links: { self: `/projects/api-ms/milestones/${id}` } } });
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
    const { body: opened } = await call('POST', '/projects/api-busy/milestones', { projectId: 'api-busy' });
    const first = await call('POST', '/projects/api-busy/sessions', { prompt: 'long', milestoneId: opened.milestoneId, timeoutSeconds: 3 });
    for (let i = 0; i < 200 && !(await env.runtime.milestones.get(opened.milestoneId))?.leaseSessionId; i++) await new Promise((r) => setTimeout(r, 50));
    const busy = await call('POST', '/projects/api-busy/sessions', { prompt: 'second', milestoneId: opened.milestoneId });
    const closeBusy = await call('POST', `/projects/api-busy/milestones/${opened.milestoneId}/close`);
    await waitForFinal('api-busy', first.body.sessionId);
    const unknown = uuidv4();
    expect(busy).toMatchObject({ status: 409, body: { reason: 'busy', message: expect.stringContaining(`task ${first.body.sessionId} is running`) } });
    expect(closeBusy.status).toBe(409);
    expect(await call('POST', '/projects/api-busy/sessions', { prompt: 'x', milestoneId: unknown })).toMatchObject({ status: 404 });
    expect(await call('GET', `/projects/api-busy/milestones/${unknown}`)).toMatchObject({ status: 404 });
    expect(await call('GET', '/projects/api-busy/milestones/not-a-uuid')).toMatchObject({ status: 400, body: { errors: [{ field: 'id', message: 'must be a UUID' }] } });
    expect(await call('POST', '/projects/api-busy/milestones', { projectId: 'another' })).toMatchObject({
      status: 400, body: { errors: [{ field: 'projectId', message: 'must be the path\'s project (api-busy) or left out' }] },
    });
    expect(await call('POST', '/projects/api-busy/milestones', { colour: 'red' })).toMatchObject({ status: 400, body: { errors: [{ field: 'colour' }] } });
    expect(await env.runtime.repository.listRunning('api-busy')).toEqual([]);
  });

  it('answers 404 to another project\'s milestone, whether read, closed or given a task, as if it did not exist', async () => {
    // Prepare
    const { body: opened } = await call('POST', '/projects/api-ms-owner/milestones');
    const id = opened.milestoneId as string;
    // Act
    const read = await call('GET', `/projects/api-ms-intruder/milestones/${id}`);
    const closed = await call('POST', `/projects/api-ms-intruder/milestones/${id}/close`);
    const task = await call('POST', '/projects/api-ms-intruder/sessions', { prompt: 'x', milestoneId: id });
    // Assess: each answer is the unknown milestone's, and the milestone is untouched
    const notFound = { message: `milestone ${id} does not exist in project api-ms-intruder`, reason: 'not-found' };
    expect([read, closed, task]).toEqual([{ status: 404, body: notFound }, { status: 404, body: notFound }, { status: 404, body: notFound }]);
    expect(await env.runtime.milestones.get(id)).toMatchObject({ projectId: 'api-ms-owner', status: 'OPEN' });
    expect(await env.runtime.repository.listRunning('api-ms-intruder')).toEqual([]);
    expect((await call('GET', `/projects/api-ms-owner/milestones/${id}`)).status).toBe(200);
  });
});
