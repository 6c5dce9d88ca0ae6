import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';

// The binding of a GitHub pull request to its issue's milestone (docs/GITHUB.md#why-the-marker-alone-binds-nothing):
// the reporter's one write, on the local runtime's table (dynalite, created from the synthesized template).

let env: TestRuntime;
useTestRuntime((started) => (env = started));

const pull = (number: number) => ({ number, url: `https://github.com/acme/widgets/pull/${number}` });

describe('MilestoneRepository.recordPullRequest', () => {
  it('records the pull request on a milestone of the project; the same one again is a no-op, another number is refused and the first stays', async () => {
    // Prepare
    const { milestoneId } = await env.runtime.milestones.open('widgets');

    // Act
    const first = await env.runtime.milestones.recordPullRequest(milestoneId, 'widgets', pull(12));
    const retried = await env.runtime.milestones.recordPullRequest(milestoneId, 'widgets', pull(12));
    const another = await env.runtime.milestones.recordPullRequest(milestoneId, 'widgets', pull(13));

    // Assess
    expect([first, retried, another]).toEqual([true, true, false]);
    expect(await env.runtime.milestones.get(milestoneId)).toMatchObject({ status: 'OPEN', projectId: 'widgets', pullRequest: pull(12) });
  });

  it('writes nothing on another project\'s milestone, nor on one that does not exist', async () => {
    // Prepare
    const { milestoneId } = await env.runtime.milestones.open('gadgets');
    const missing = randomUUID();

    // Act
    const otherProject = await env.runtime.milestones.recordPullRequest(milestoneId, 'widgets', pull(7));
    const none = await env.runtime.milestones.recordPullRequest(missing, 'widgets', pull(7));

    // Assess
    expect([otherProject, none]).toEqual([false, false]);
    expect(await env.runtime.milestones.get(milestoneId)).toMatchObject({ pullRequest: null });
    expect(await env.runtime.milestones.get(missing)).toBeUndefined();
  });
});
