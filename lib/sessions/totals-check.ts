import type { SessionRepository } from './session-repository.js';

/** One project's totals items held against its session items (`claude-sessions totals check`). */
export interface ProjectDrift {
  projectId: string;
  /** Sessions its items hold (derived), to say what was compared. */
  sessions: number;
  /** Each figure that differs, `<ALL or day> <figure>: kept <n>, derived <n>`; empty when the totals are lossless. */
  drift: string[];
}

/**
 * `totalsDrift` for one project, or every project the table lists: reads each project's whole
 * history, so it is a check to run now and then (docs/ARCHITECTURE.md#project-totals), never on a start.
 */
export async function projectTotalsDrift(repository: SessionRepository, projectId?: string): Promise<ProjectDrift[]> {
  const projects = projectId ? [projectId] : await repository.projectIds();
  const checked: ProjectDrift[] = [];
  for (const id of projects) {
    const { drift, sessions } = await repository.totalsCheck(id);
    checked.push({ projectId: id, sessions, drift });
  }
  return checked;
}
