import type { WorkspaceSpec } from './execution-input.js';
import type { MilestoneRepository } from './milestone-repository.js';
import { milestoneTaskWorkspace } from './milestone-workspace.js';
import type { ProjectSlots } from './project-slots.js';
import { assertWithinProjectLimit } from './project-limits.js';
import type { SessionRepository } from './session-repository.js';
import { assertBranchAllowed, assertToolsAllowed, assertWithinBudget, type SessionPolicy } from './session-creation.js';

export interface StartCheckDeps {
  repository: SessionRepository;
  milestones: MilestoneRepository;
  slots?: ProjectSlots;
  policy?: SessionPolicy;
}

type StartInput = {
  projectId: string; milestoneId?: string; tools?: string[]; workspace?: WorkspaceSpec; runtime?: 'lambda' | 'fargate';
  maxBudgetUsd?: number; timeoutSeconds?: number;
};

/**
 * What the input and the deployment's policy alone refuse: more than the project's caps allow,
 * tools it may not name, a protected branch (a milestone task's branch is its milestone's:
 * `assertCanStart` checks that one). Every start checks it (`startSession`), and schedules at synth.
 */
export function assertStartAllowed(input: StartInput, policy: SessionPolicy = {}): void {
  assertWithinProjectLimit(input, policy.projectLimits);
  assertToolsAllowed(input.tools, policy, input.runtime);
  if (!input.milestoneId) assertBranchAllowed(input.workspace, policy);
}

/**
 * What a trigger (the API, the CLI) refuses before starting an execution, with words a user
 * can act on: more than the project's caps allow, a milestone that takes no task or works on
 * another repository, a spent budget, a full project. The workflow enforces each of them anyway;
 * this spares a doomed execution.
 */
export async function assertCanStart(input: StartInput, deps: StartCheckDeps): Promise<void> {
  assertStartAllowed(input, deps.policy);
  // A milestone task's branch is its milestone's, inherited or named: that is the one checked.
  if (input.milestoneId) {
    const milestone = await deps.milestones.assertStartable(input.milestoneId, input.projectId);
    assertBranchAllowed(milestoneTaskWorkspace(milestone, input.workspace) ?? undefined, deps.policy ?? {});
  }
  if (!deps.policy) return;
  await assertWithinBudget(input.projectId, deps.policy, (p, since) => deps.repository.costSince(p, since));
  // A project's own limit holds with no deployment-wide one too.
  if (deps.slots) await deps.slots.assertCapacity(input.projectId, deps.policy.maxConcurrentSessions);
}
