import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { createApiHandler } from '../lib/api/router.js';
import { startLocalApiServer } from '../lib/local/local-api-server.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
useTestRuntime((started) => (env = started), {}, { policy: { maxConcurrentSessions: 2 } });

async function until(probe: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('per-project maxConcurrentSessions', () => {
  it('refuses a third session of a project while two run, leaves nothing RUNNING, and frees every slot', async () => {
    // Prepare: the two first stall until their own 3 s limit.
    env.anthropic.respondWith({ kind: 'stall' }, { kind: 'stall' });
    const start = () => env.runtime.startExecution({ prompt: 'p', projectId: 'cap', timeoutSeconds: 3 });
    // Act
    const first = start();
    const second = start();
    await until(async () => (await env.runtime.slots.get('cap')).running.length === 2 && env.anthropic.messageRequests.length === 2, 'two running');
    const third = start();
    const other = env.runtime.startExecution({ prompt: 'another project is not limited by this one', projectId: 'cap-other' });
    const otherStates: string[] = [];
    for await (const e of other.events) if (e.type === 'StateEntered') otherStates.push(e.state.name);
    await other.outcome;
    const outcomes = await Promise.all([first.outcome, second.outcome, third.outcome]);
    // Assess
    expect(outcomes.map((o) => o.error)).toEqual(['ClaudeTimeoutError', 'ClaudeTimeoutError', 'ProjectAtCapacity']);
    expect(await env.runtime.repository.get(third.name)).toMatchObject({ status: 'FAILED', error: 'ProjectAtCapacity' });
    expect(await env.runtime.repository.get(other.name)).toMatchObject({ status: 'COMPLETED' });
    // A completed limited session ends on its slot's release.
    expect(otherStates.slice(-3)).toEqual(['ClaudeSucceeded', 'RecordLimitedUsage', 'ReleaseSlotAndEnd']);
    expect(await env.runtime.repository.listRunning('cap')).toEqual([]);
    expect(await env.runtime.slots.get('cap')).toEqual({ running: [], maxConcurrentSessions: null });
    expect(await env.runtime.slots.get('cap-other')).toEqual({ running: [], maxConcurrentSessions: null });
  });

  it('frees the slot of a session closed by any path: completed, Claude-level failure, crash, abort (the reaper)', async () => {
    env.anthropic.respondWith({ kind: 'text' });
    await env.runtime.run({ prompt: 'ok', projectId: 'cap-paths' });
    // CLI fact: a 400 is re-sent up to 5 times (2.1.332): every call of this session is refused.
    env.anthropic.respondByDefault({ kind: 'error', status: 400 });
    await env.runtime.run({ prompt: 'api error', projectId: 'cap-paths' });
    env.anthropic.respondByDefault({ kind: 'stall' });
    const before = env.anthropic.messageRequests.length;
    const stuck = env.runtime.startExecution({ prompt: 'stuck', projectId: 'cap-paths' });
    await until(async () => env.anthropic.messageRequests.length === before + 1, 'the stalled request');
    expect((await env.runtime.slots.get('cap-paths')).running).toEqual([stuck.name]);
    stuck.abort();
    expect((await stuck.outcome).status).toBe('ABORTED');
    const statuses = (await env.runtime.repository.listByProject('cap-paths')).items.map((s) => s.status).sort();
    expect(statuses).toEqual(['ABORTED', 'COMPLETED', 'FAILED']);
    expect((await env.runtime.slots.get('cap-paths')).running).toEqual([]);
  });

  it('lets a project\'s own limit win over the deployment\'s', async () => {
    await env.runtime.slots.setLimit('cap-one', 1);
    env.anthropic.respondWith({ kind: 'stall' });
    const first = env.runtime.startExecution({ prompt: 'p', projectId: 'cap-one', timeoutSeconds: 2 });
    await until(async () => (await env.runtime.slots.get('cap-one')).running.length === 1, 'the slot');
    const second = await env.runtime.run({ prompt: 'p', projectId: 'cap-one' });
    expect(second.session).toMatchObject({ status: 'FAILED', error: 'ProjectAtCapacity' });
    await first.outcome;
    expect((await env.runtime.run({ prompt: 'p', projectId: 'cap-one' })).session).toMatchObject({ status: 'COMPLETED' });
  });

  it('answers 429 over HTTP before any execution when the project is full', async () => {
    const handler = createApiHandler({
      repository: env.runtime.repository, milestones: env.runtime.milestones, starter: env.runtime,
      policy: env.runtime.policy, slots: env.runtime.slots,
    });
    const server = await startLocalApiServer(handler, 0);
    try {
      env.anthropic.respondWith({ kind: 'stall' }, { kind: 'stall' });
      const post = () => fetch(`${server.url}/projects/cap-http/sessions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'p', timeoutSeconds: 2, sessionId: uuidv4() }),
      });
      expect((await post()).status).toBe(202);
      expect((await post()).status).toBe(202);
      await until(async () => (await env.runtime.slots.get('cap-http')).running.length === 2, 'two slots');
      const refused = await post();
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect(await refused.json()).toMatchObject({ message: expect.stringContaining('project cap-http already runs 2 session(s)'), limit: 2 });
      await until(async () => (await env.runtime.repository.listRunning('cap-http')).length === 0, 'the two to end');
      expect((await env.runtime.repository.listByProject('cap-http')).items).toHaveLength(2); // the refused one never started
    } finally {
      await server.close();
    }
  });
});
