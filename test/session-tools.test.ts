import { v4 as uuidv4 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { createApiHandler } from '../lib/api/router.js';
import { startLocalApiServer } from '../lib/local/local-api-server.js';
import { offeredTools } from '../lib/local/anthropic-stand-in.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
// A deployment that lets sessions ask for a shell (as a workspace's tests would need), on Lambda too.
useTestRuntime((started) => (env = started), {}, { policy: { allowedTools: ['Read', 'Glob', 'Grep', 'Edit', 'Write', 'Bash'], shellOnLambda: true } });

// Offered: CLI 2.1.332 also sends a deferred placeholder tool, which the model is not offered.
const offered = (i: number) => offeredTools(env.anthropic.messageRequests[i]!).sort();

describe('a session\'s own tools, bounded by the deployment\'s allow-list', () => {
  it('offers the model exactly the tools the session names', async () => {
    // Act
    const { session } = await env.runtime.run({ prompt: 'run the tests', projectId: 'tools', tools: ['Read', 'Bash'] });
    // Assess
    expect(session).toMatchObject({ status: 'COMPLETED' });
    expect(offered(0)).toEqual(['Bash', 'Read']);
  });

  it('refuses a tool the deployment does not allow, naming the field: no session, no Claude', async () => {
    // Act
    const { outcome, session } = await env.runtime.run({ prompt: 'browse', projectId: 'tools-refused', sessionId: uuidv4(), tools: ['Read', 'WebFetch'] });
    // Assess
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInputError', cause: expect.stringMatching(/tools may name only the tools this deployment allows \(.*Bash\), not WebFetch/) });
    expect(session).toBeUndefined();
    expect(env.anthropic.messageRequests).toEqual([]);
  });

  it('answers 400 over HTTP before starting anything', async () => {
    const handler = createApiHandler({ repository: env.runtime.repository, milestones: env.runtime.milestones, starter: env.runtime, policy: env.runtime.policy });
    const server = await startLocalApiServer(handler, 0);
    try {
      const res = await fetch(`${server.url}/projects/tools-http/sessions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'p', tools: ['WebSearch'] }),
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ errors: [{ field: 'tools', message: expect.stringMatching(/not WebSearch/) }] });
      expect(env.anthropic.messageRequests).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
