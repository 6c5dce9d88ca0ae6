import { v4 as uuidv4 } from 'uuid';
import type { StandbyClaude } from '../claude/claude-process.js';
import { DEFAULT_PROJECT_ID, InvalidInputError, parseExecutionInput, type ExecutionInput } from '../sessions/execution-input.js';
import { MilestoneUnavailableError } from '../sessions/milestone-repository.js';
import { assertCanStart, type StartCheckDeps } from '../sessions/start-checks.js';
import type { LocalStartOptions, SessionStarter, StartedSession } from './session-starter.js';

/** A CLI booted ahead (the local engine's `NextRunStandby`), for a session that names no id of its own. */
export interface StandbySource {
  /** The booted CLI this input can take, if one waits; the session takes its id. */
  take(input: ExecutionInput): Promise<StandbyClaude | undefined>;
  /** A CLI taken for a session that did not start. */
  release(standby: StandbyClaude): Promise<void>;
}

export interface StartContext {
  /** Who starts it; replaces any `trigger` the input names. */
  trigger: ExecutionInput['trigger'];
  /**
   * The project the caller is confined to (the API's path, the repository's project for GitHub):
   * the input may repeat it, never name another, and another project's milestone is not found.
   */
  project?: string;
  /**
   * What the early refusals read (`assertCanStart`). Absent for a caller without the table (the
   * GitHub webhook): CreateSession refuses what it must, as a FAILED session.
   */
  checks?: StartCheckDeps;
  /** Where the execution starts: Step Functions, or the local runtime. */
  starter: SessionStarter;
  /** Local starts only: the Claude the runner talks to, and where a booted CLI may come from. */
  local?: { endpoint?: LocalStartOptions['endpoint']; standby?: StandbySource };
}

/**
 * Starting a session, the one way every trigger does it (the API's POST /projects/{projectId}/sessions
 * and so the page, the GitHub webhook, the engine's `run`): the defaults applied (the caller's
 * project, else a milestone task's milestone's, else `default`; the session id given, else a booted
 * CLI's, else a new UUID), the input checked with the workflow's schema, the early refusals made with
 * words a user can act on, then the execution started with the session id as its name. A taken id
 * starts nothing and answers `started: false`, on AWS and locally. Schedules are checked at synth
 * with the part of this that needs no table (`assertStartAllowed`).
 */
export async function startSession(raw: unknown, context: StartContext): Promise<StartedSession & { projectId: string }> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidInputError([{ field: '(body)', message: 'must be a JSON object' }]);
  }
  const given = raw as Record<string, unknown>;
  if (context.project !== undefined) assertSameProject(given.projectId, context.project);
  // The caller's project goes through the input's schema, so a bad one is named beside the other bad fields.
  const projectId = context.project ?? given.projectId ?? (await milestoneProject(given.milestoneId, context.checks)) ?? DEFAULT_PROJECT_ID;
  const input = parseExecutionInput({ ...given, projectId, trigger: context.trigger });
  // Refused here with a 400/404/409/429 that says why, rather than as a FAILED session a moment later.
  if (context.checks) {
    await assertCanStart(input, context.checks).catch((err: unknown) => {
      // A caller confined to a project learns nothing of another's milestone: not found, as a GET of it is.
      if (context.project !== undefined && err instanceof MilestoneUnavailableError && err.reason === 'other-project') {
        throw milestoneNotFound(err.milestoneId, input.projectId);
      }
      throw err;
    });
  }
  const standby = input.sessionId === undefined ? await context.local?.standby?.take(input) : undefined;
  const sessionId = input.sessionId ?? standby?.sessionId ?? uuidv4();
  let started: StartedSession;
  try {
    started = await context.starter.start({ ...input, sessionId }, context.local && { endpoint: context.local.endpoint, standby });
  } catch (err) {
    if (standby) await context.local!.standby!.release(standby);
    throw err;
  }
  if (!started.started && standby) await context.local!.standby!.release(standby);
  return { ...started, projectId: input.projectId };
}

/** A body's `projectId` may repeat the caller's (the path's), never name another. */
export function assertSameProject(givenProjectId: unknown, projectId: string | undefined): void {
  if (givenProjectId !== undefined && givenProjectId !== projectId) {
    throw new InvalidInputError([{ field: 'projectId', message: `must be the path's project (${projectId}) or left out` }]);
  }
}

/** Another project's milestone, said as an unknown one: its project is not said. */
export function milestoneNotFound(milestoneId: string, projectId: string): MilestoneUnavailableError {
  return new MilestoneUnavailableError(milestoneId, 'not-found', `milestone ${milestoneId} does not exist in project ${projectId}`);
}

/** A milestone task that names no project is in its milestone's (an unknown milestone: the checks say so). */
async function milestoneProject(milestoneId: unknown, checks: StartCheckDeps | undefined): Promise<string | undefined> {
  if (typeof milestoneId !== 'string' || !checks) return undefined;
  return (await checks.milestones.get(milestoneId))?.projectId;
}
