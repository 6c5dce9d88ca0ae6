import { InvalidInputError, type FieldError, type WorkspaceSpec } from './execution-input.js';
import type { MilestoneRecord, MilestoneWorkspace } from './milestone-item.js';

/** The branch a milestone's tasks push when the task that fixed its workspace named none. */
export function milestoneBranch(milestoneId: string): string {
  return `claude-sessions/milestone-${milestoneId}`;
}

/**
 * The workspace a milestone task works on (docs/ARCHITECTURE.md#workspaces): the milestone's,
 * once a task of it ran on one, which a later task may leave out or name again; else the task's
 * own, on the milestone's branch. A task naming another repository, branch or ref than the
 * milestone's is refused naming the field: its tasks continue one branch. The triggers check
 * it (assertCanStart) and the runner again, under the lease, before Claude runs.
 */
export function milestoneTaskWorkspace(
  milestone: Pick<MilestoneRecord, 'milestoneId' | 'workspace'>,
  given: WorkspaceSpec | undefined,
): MilestoneWorkspace | null {
  const fixed = milestone.workspace;
  if (!fixed) return given ? { repo: given.repo, ref: given.ref ?? null, branch: given.branch ?? milestoneBranch(milestone.milestoneId) } : null;
  if (!given) return fixed;
  const of = `milestone ${milestone.milestoneId}`;
  const errors: FieldError[] = [];
  if (given.repo !== fixed.repo) {
    errors.push({ field: 'workspace.repo', message: `must be ${fixed.repo}, the repository of ${of}, or be left out: a milestone's tasks work on one repository` });
  }
  if (given.branch !== undefined && given.branch !== fixed.branch) {
    errors.push({ field: 'workspace.branch', message: `must be ${fixed.branch}, the branch of ${of}, or be left out` });
  }
  if (given.ref !== undefined && given.ref !== fixed.ref) {
    errors.push({ field: 'workspace.ref', message: fixed.ref ? `must be ${fixed.ref}, the ref of ${of}, or be left out` : `must be left out: ${of} starts from the remote's default branch` });
  }
  if (errors.length) throw new InvalidInputError(errors);
  return fixed;
}
