import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { v4 as uuidv4 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { ACQUIRE_SLOT_UPDATE, SLOTS_SK, slotsPk } from '../lib/sessions/project-slots.js';
import { reapExecution } from '../lib/sessions/session-reaper.js';
import { SESSION_SK, sessionPk } from '../lib/sessions/session-item.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { waitFor } from './support/wait-for.js';

// Slots are taken only under a limit: the deployment's here, a project's own below.
let env: TestRuntime;
useTestRuntime((started) => (env = started), {}, { policy: { maxConcurrentSessions: 5 } });


/** A milestone task of a project limited to one session, its Claude streaming a reply that stalls. */
async function stalledMilestoneTask(projectId: string) {
  await env.runtime.slots.setLimit(projectId, 1);
  const milestone = await env.runtime.milestones.open(projectId);
  env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 5, output_tokens: 1 } });
  const execution = env.runtime.startExecution({ prompt: 'long job', projectId, mode: 'milestone', milestoneId: milestone.milestoneId });
  await waitFor(async () => (env.anthropic.messageRequests.length > 0 && env.anthropic.openStreams > 0) || undefined, 'Claude streaming');
  return { milestone, execution };
}

describe('the reaper given an event without the input (EventBridge omits a large one)', () => {
  it('reads the input from DescribeExecution and frees the slot and lease', async () => {
    // Prepare: an aborted milestone task of a limited project, its event not delivered in-process
    const projectId = 'reap-no-input';
    const { milestone, execution } = await stalledMilestoneTask(projectId);
    env.runtime.dropExecutionEvents = true;
    try {
      execution.abort();
      await execution.outcome;
    } finally {
      env.runtime.dropExecutionEvents = false;
    }
    expect((await env.runtime.slots.get(projectId)).running).toEqual([execution.name]);
    // Act: the event as EventBridge sends it for a large input
    const reaped = await reapExecution(env.runtime.repository, {
      executionArn: execution.executionArn, name: execution.name, status: 'ABORTED', inputDetails: { included: false },
    }, { slots: env.runtime.slots, milestones: env.runtime.milestones, describe: (arn) => env.runtime.describeExecution(arn) });
    // Assess
    expect(reaped).toMatchObject({ sessionId: execution.name, slotReleased: true, milestoneReleased: true });
    expect((await env.runtime.slots.get(projectId)).running).toEqual([]);
    expect((await env.runtime.milestones.get(milestone.milestoneId))!.leaseSessionId).toBeNull();
    await waitFor(async () => env.anthropic.openStreams === 0 || undefined, 'the runner stopping Claude');
  });
});

describe('the sweeper: a session whose close event was lost is closed all the same', () => {
  it('frees the slot and lease an aborted milestone task held when EventBridge dropped its event', async () => {
    // Prepare: a milestone task of a project limited to one session, stalled in Claude
    const projectId = 'sweep-lost';
    const { milestone, execution } = await stalledMilestoneTask(projectId);
    // Act: the abort's status-change event is lost
    env.runtime.dropExecutionEvents = true;
    try {
      execution.abort();
      expect((await execution.outcome).status).toBe('ABORTED');
    } finally {
      env.runtime.dropExecutionEvents = false;
    }
    // the runner notices and records its spend, but closes nothing: the session stays RUNNING, its slot and lease held
    await waitFor(async () => (await env.runtime.repository.get(execution.name))?.usage.inputTokens === 5 || undefined, 'the runner\'s spend');
    expect(await env.runtime.repository.get(execution.name)).toMatchObject({ status: 'RUNNING' });
    expect((await env.runtime.slots.get(projectId)).running).toEqual([execution.name]);
    expect((await env.runtime.milestones.get(milestone.milestoneId))!.leaseSessionId).toBe(execution.name);
    const swept = await env.runtime.sweep({ minAgeMs: 0 });
    // Assess
    expect(swept).toContainEqual(expect.objectContaining({ sessionId: execution.name, executionStatus: 'ABORTED', slotReleased: true, milestoneReleased: true }));
    expect((await env.runtime.slots.get(projectId)).running).toEqual([]);
    expect((await env.runtime.milestones.get(milestone.milestoneId))!.leaseSessionId).toBeNull();
    expect(await env.runtime.repository.get(execution.name)).toMatchObject({ status: 'ABORTED', error: 'ExecutionAborted', usage: { inputTokens: 5 } });
    // a second sweep finds nothing of it
    expect((await env.runtime.sweep({ minAgeMs: 0 })).map((s) => s.sessionId)).not.toContain(execution.name);
  });

  it('closes a RUNNING session whose execution is gone, frees its slot, and leaves a live or young one alone', async () => {
    // Prepare: a session left RUNNING, holding a slot, by an execution that no longer exists (its history expired)
    const projectId = 'sweep-gone';
    const { session } = prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4() }, {
      executionArn: `arn:aws:states:us-east-1:000000000000:execution:ClaudeSessionsWorkflow:${uuidv4()}`,
    });
    await env.runtime.repository.create(session);
    await env.runtime.dynamodb.documentClient.send(new UpdateCommand({
      TableName: env.runtime.dynamodb.tableName, Key: { pk: slotsPk(projectId), sk: SLOTS_SK },
      UpdateExpression: ACQUIRE_SLOT_UPDATE, ExpressionAttributeValues: { ':session': new Set([session.sessionId]) },
    }));
    env.anthropic.respondByDefault({ kind: 'stall' });
    const live = env.runtime.startExecution({ prompt: 'still running', projectId });
    await waitFor(async () => (env.anthropic.messageRequests.length > 0 && env.anthropic.openStreams > 0) || undefined, 'Claude streaming');
    // Act
    const young = await env.runtime.sweep(); // the default minimum age leaves the reaper its turn
    const swept = await env.runtime.sweep({ minAgeMs: 0 });
    live.abort();
    await live.outcome;
    // Assess
    expect(young.map((s) => s.sessionId)).not.toContain(session.sessionId);
    expect(swept.map((s) => s.sessionId)).not.toContain(live.name);
    expect(swept.find((s) => s.sessionId === session.sessionId)).toMatchObject({ closed: true, slotReleased: true, executionStatus: 'ExecutionDoesNotExist' });
    expect(await env.runtime.repository.get(session.sessionId)).toMatchObject({
      status: 'ABORTED', error: 'ExecutionDoesNotExist', cause: expect.stringMatching(/history expired/),
    });
    expect((await env.runtime.slots.get(projectId)).running).toEqual([]);
  });

  it('takes out of the running index a session an older definition closed without removing its key, and reports nothing of it', async () => {
    // Prepare: a close as an execution started before the running index wrote it (no REMOVE of the key)
    const projectId = 'sweep-stale';
    const { session } = prepareSessionStart({ prompt: 'p', projectId, sessionId: uuidv4() }, {
      executionArn: `arn:aws:states:us-east-1:000000000000:execution:ClaudeSessionsWorkflow:${uuidv4()}`,
    });
    await env.runtime.repository.create(session);
    await env.runtime.dynamodb.documentClient.send(new UpdateCommand({
      TableName: env.runtime.dynamodb.tableName, Key: { pk: sessionPk(session.sessionId), sk: SESSION_SK },
      UpdateExpression: 'SET #status = :completed', ExpressionAttributeNames: { '#status': 'status' }, ExpressionAttributeValues: { ':completed': 'COMPLETED' },
    }));
    expect((await env.runtime.repository.runningExecutions(projectId)).map((s) => s.sessionId)).toEqual([session.sessionId]);
    // Act
    const swept = await env.runtime.sweep({ minAgeMs: 0 });
    // Assess
    expect(swept.map((s) => s.sessionId)).not.toContain(session.sessionId);
    expect(await env.runtime.repository.runningExecutions(projectId)).toEqual([]);
    expect(await env.runtime.repository.get(session.sessionId)).toMatchObject({ status: 'COMPLETED' });
  });
});
