import { describe, expect, it } from 'vitest';
import { v4 as uuidv4 } from 'uuid';
import { createApiHandler } from '../lib/api/router.js';
import { startLocalApiServer } from '../lib/local/local-api-server.js';
import { monthStart } from '../lib/sessions/session-creation.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
// CLI fact: 2.1.332 prices each stand-in reply (12 in, 34 out, its default model) at $0.000728 (2.1.197: $0.00091):
// two stay under $0.002, the third reaches it, a fourth is refused.
useTestRuntime((started) => (env = started), {}, { policy: { monthlyBudgetUsd: 0.002 } });

describe('a per-project monthly budget', () => {
  it('refuses a start once the month\'s recorded cost reaches the budget, creating no session', async () => {
    for (let i = 0; i < 3; i++) expect((await env.runtime.run({ prompt: 'p', projectId: 'budget' })).session).toMatchObject({ status: 'COMPLETED' });
    expect(await env.runtime.repository.costSince('budget', monthStart(new Date()))).toBeCloseTo(0.002184, 6);
    // Act
    const refused = await env.runtime.run({ prompt: 'one too many', projectId: 'budget' });
    const otherProject = await env.runtime.run({ prompt: 'p', projectId: 'budget-other' });
    // Assess
    expect(refused.outcome).toMatchObject({ status: 'FAILED', error: 'BudgetExceededError' });
    expect(refused.outcome.cause).toContain('project budget has spent $0.002184 this month, at or over its monthly budget of $0.002000');
    expect(refused.session).toBeUndefined();
    expect((await env.runtime.repository.listByProject('budget')).items).toHaveLength(3);
    expect(otherProject.session).toMatchObject({ status: 'COMPLETED' });
    expect(env.anthropic.messageRequests).toHaveLength(4); // Claude never ran for the refused one
  });

  it('answers 429 over HTTP, naming the budget and the spend', async () => {
    // Prepare: a project of its own that has reached its budget
    for (let i = 0; i < 3; i++) expect((await env.runtime.run({ prompt: 'p', projectId: 'budget-http' })).session).toMatchObject({ status: 'COMPLETED' });
    const handler = createApiHandler({ repository: env.runtime.repository, milestones: env.runtime.milestones, starter: env.runtime, policy: env.runtime.policy });
    const server = await startLocalApiServer(handler, 0);
    try {
      const res = await fetch(`${server.url}/projects/budget-http/sessions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'p', sessionId: uuidv4() }),
      });
      expect(res.status).toBe(429);
      expect(await res.json()).toMatchObject({ budgetUsd: 0.002, spentUsd: expect.closeTo(0.002184, 6) });
    } finally {
      await server.close();
    }
  });
});
