import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOCAL_TRANSCRIPT_BUCKET } from '../lib/local/local-s3.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

let env: TestRuntime;
const workRoot = await mkdtemp(join(tmpdir(), 'milestone-runner-'));
useTestRuntime((started) => (env = started), { workRoot });

async function waitFor<T>(probe: () => Promise<T | undefined | null | false>, what: string, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function task(milestoneId: string, projectId: string, prompt: string, extra: Record<string, unknown> = {}) {
  return env.runtime.run({ prompt, projectId, mode: 'milestone', milestoneId, ...extra });
}

describe('milestones: several tasks in one Claude conversation', () => {
  // CLI fact: --session-id then --resume <uuid> continue one conversation from its transcript
  // ($CLAUDE_CONFIG_DIR/projects/<cwd>/<uuid>.jsonl); after --resume the top-level usage is that invocation's, while
  // modelUsage and total_cost_usd count the whole conversation (2.1.332: its last cost-state line); the record is what
  // the run's gateway metered, this invocation's model calls alone.
  it('runs three tasks that resume one conversation, with exact usage per task and totals their sum', async () => {
    // Prepare
    const milestone = await env.runtime.milestones.open('m-three');
    env.anthropic.respondWith(
      { kind: 'text', text: 'Plan: three steps.', usage: { input_tokens: 100, output_tokens: 10 } },
      { kind: 'text', text: 'Step one done.', usage: { input_tokens: 200, output_tokens: 20, cache_read_input_tokens: 7 } },
      { kind: 'text', text: 'All steps done.', usage: { input_tokens: 300, output_tokens: 30 } },
    );
    // Act
    const first = await task(milestone.milestoneId, 'm-three', 'Make a plan (ALPHA)');
    expect(await readdir(workRoot)).toEqual([]); // the runner's home is gone after each task
    const second = await task(milestone.milestoneId, 'm-three', 'Do step one (BETA)');
    expect(await readdir(workRoot)).toEqual([]);
    const third = await task(milestone.milestoneId, 'm-three', 'Finish (GAMMA)');
    // Assess
    for (const run of [first, second, third]) {
      expect(run.outcome.status).toBe('SUCCEEDED');
      expect(run.session).toMatchObject({ status: 'COMPLETED', mode: 'milestone', milestoneId: milestone.milestoneId, claudeSessionId: milestone.milestoneId });
    }
    expect(first.session!.usage).toEqual({ inputTokens: 100, outputTokens: 10, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 });
    // Per invocation, not cumulative: the resumed task reports only its own tokens.
    expect(second.session!.usage).toEqual({ inputTokens: 200, outputTokens: 20, cacheReadInputTokens: 7, cacheCreationInputTokens: 0 });
    expect(third.session!.usage).toEqual({ inputTokens: 300, outputTokens: 30, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 });
    // Every request spoke in the milestone's conversation, and the last one carried the earlier turns.
    const requests = env.anthropic.messageRequests;
    expect(requests.map((r) => r.sessionId)).toEqual([milestone.milestoneId, milestone.milestoneId, milestone.milestoneId]);
    const lastMessages = JSON.stringify(requests[2]!.body.messages);
    for (const earlier of ['Make a plan (ALPHA)', 'Plan: three steps.', 'Do step one (BETA)', 'Step one done.', 'Finish (GAMMA)']) {
      expect(lastMessages).toContain(earlier);
    }
    const view = (await env.runtime.milestones.view(milestone.milestoneId))!;
    expect(view.tasks.map((t) => t.sessionId)).toEqual([first.session!.sessionId, second.session!.sessionId, third.session!.sessionId]);
    expect(view.totals.usage).toEqual({ inputTokens: 600, outputTokens: 60, cacheReadInputTokens: 7, cacheCreationInputTokens: 0 });
    expect(view.totals.totalCostUsd).toBeCloseTo(first.session!.totalCostUsd + second.session!.totalCostUsd + third.session!.totalCostUsd, 6);
    expect(view).toMatchObject({ status: 'OPEN', leaseSessionId: null, lastSessionId: third.session!.sessionId });
    // The transcript in S3 is the one the milestone item points at.
    const object = await (await env.runtime.s3()).client.send(new GetObjectCommand({ Bucket: LOCAL_TRANSCRIPT_BUCKET, Key: view.transcript!.key }));
    const body = Buffer.from(await object.Body!.transformToByteArray());
    expect(createHash('sha256').update(body).digest('hex')).toBe(view.transcript!.sha256);
    expect(body.toString('utf8')).toContain('Finish (GAMMA)');
  });

  it('refuses a second task while one runs, leaving nothing RUNNING, then takes the next one', async () => {
    // Prepare: the first task stalls until its own timeout.
    const milestone = await env.runtime.milestones.open('m-busy');
    env.anthropic.respondWith({ kind: 'stall', usage: { input_tokens: 40, output_tokens: 1 } });
    // Act
    const slow = env.runtime.startExecution({ prompt: 'slow', projectId: 'm-busy', mode: 'milestone', milestoneId: milestone.milestoneId, timeoutSeconds: 4 });
    const held = await waitFor(async () => (await env.runtime.milestones.get(milestone.milestoneId))?.leaseSessionId, 'the lease');
    await expect(env.runtime.milestones.assertStartable(milestone.milestoneId)).rejects.toThrow(`task ${held} is running`);
    const refused = await task(milestone.milestoneId, 'm-busy', 'too early');
    const slowOutcome = await slow.outcome;
    const after = await task(milestone.milestoneId, 'm-busy', 'next');
    // Assess
    expect(refused.outcome).toMatchObject({ status: 'FAILED', error: 'MilestoneUnavailable' });
    expect(refused.session).toMatchObject({ status: 'FAILED', error: 'MilestoneUnavailable' });
    expect(slowOutcome.status).toBe('FAILED');
    expect(await env.runtime.repository.get(held)).toMatchObject({ status: 'TIMED_OUT', usage: { inputTokens: 40, outputTokens: 1 } });
    expect(after.session).toMatchObject({ status: 'COMPLETED' });
    expect(await env.runtime.repository.listRunning('m-busy')).toEqual([]);
    expect((await env.runtime.milestones.get(milestone.milestoneId))!.leaseSessionId).toBeNull();
  });

  it('takes no task on a closed milestone, and closing twice changes nothing', async () => {
    // Prepare
    const milestone = await env.runtime.milestones.open('m-closed');
    await task(milestone.milestoneId, 'm-closed', 'one');
    // Act
    const closed = await env.runtime.milestones.close(milestone.milestoneId, 'm-closed');
    const again = await env.runtime.milestones.close(milestone.milestoneId, 'm-closed');
    const refused = await task(milestone.milestoneId, 'm-closed', 'two');
    // Assess
    expect(closed).toMatchObject({ status: 'CLOSED' });
    expect(again.closedAt).toBe(closed.closedAt);
    await expect(env.runtime.milestones.assertStartable(milestone.milestoneId)).rejects.toThrow('is closed and takes no more tasks');
    expect(refused.session).toMatchObject({ status: 'FAILED', error: 'MilestoneUnavailable' });
    expect(env.anthropic.messageRequests).toHaveLength(1);
  });

  it('fails a task whose transcript was altered, marks the milestone broken, and never starts a new conversation', async () => {
    // Prepare
    const milestone = await env.runtime.milestones.open('m-corrupt');
    await task(milestone.milestoneId, 'm-corrupt', 'one');
    const { transcript } = (await env.runtime.milestones.get(milestone.milestoneId))!;
    await (await env.runtime.s3()).client.send(new PutObjectCommand({ Bucket: LOCAL_TRANSCRIPT_BUCKET, Key: transcript!.key, Body: 'not json\n' }));
    // Act
    const broken = await task(milestone.milestoneId, 'm-corrupt', 'two');
    const refused = await task(milestone.milestoneId, 'm-corrupt', 'three');
    // Assess
    expect(broken.session).toMatchObject({ status: 'FAILED', error: 'TranscriptUnusableError' });
    expect(broken.session!.cause).toMatch(/not the one its last task left/);
    expect(await env.runtime.milestones.get(milestone.milestoneId)).toMatchObject({
      status: 'BROKEN', leaseSessionId: null, brokenReason: expect.stringMatching(/not the one its last task left/),
    });
    await expect(env.runtime.milestones.assertStartable(milestone.milestoneId)).rejects.toThrow(/is broken/);
    expect(refused.session).toMatchObject({ status: 'FAILED', error: 'MilestoneUnavailable' });
    expect(env.anthropic.messageRequests).toHaveLength(1); // Claude never ran on a broken transcript
  });

  it('frees the lease of an aborted task (the reaper), so the milestone goes on', async () => {
    // Prepare
    const milestone = await env.runtime.milestones.open('m-abort');
    env.anthropic.respondWith({ kind: 'stall' });
    // Act
    const stuck = env.runtime.startExecution({ prompt: 'stuck', projectId: 'm-abort', mode: 'milestone', milestoneId: milestone.milestoneId });
    await waitFor(async () => env.anthropic.messageRequests.length > 0, 'the stalled request');
    stuck.abort();
    const outcome = await stuck.outcome;
    const next = await task(milestone.milestoneId, 'm-abort', 'next');
    // Assess
    expect(outcome.status).toBe('ABORTED');
    expect(await env.runtime.repository.get(stuck.name)).toMatchObject({ status: 'ABORTED' });
    expect(next.session).toMatchObject({ status: 'COMPLETED' });
  });

  it('refuses a milestone task of another project', async () => {
    const milestone = await env.runtime.milestones.open('m-owner');
    await expect(env.runtime.milestones.assertStartable(milestone.milestoneId, 'm-other')).rejects.toThrow('belongs to project m-owner');
    const refused = await task(milestone.milestoneId, 'm-other', 'x');
    expect(refused.session).toMatchObject({ status: 'FAILED', error: 'MilestoneUnavailable' });
  });
});
