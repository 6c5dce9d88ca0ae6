import { validate as isUuid } from 'uuid';
import { z } from 'zod';
import { InvalidInputError, idField } from '../sessions/execution-input.js';
import { SESSION_STATUSES, type SessionRecord, type SessionStatus } from '../sessions/session-item.js';
import type { SessionPage, SessionRepository, UsageTotals } from '../sessions/session-repository.js';
import { HttpError } from './http-errors.js';
import type { SessionStarter, StartedSession } from './session-starter.js';
import type { MilestoneRepository, MilestoneView } from '../sessions/milestone-repository.js';
import type { MilestoneRecord } from '../sessions/milestone-item.js';
import type { TranscriptStorage } from '../claude/transcript-store.js';
import type { SessionPolicy } from '../sessions/session-creation.js';
import { assertSameProject, milestoneNotFound, startSession } from './start-session.js';
import type { ProjectSlots } from '../sessions/project-slots.js';

export interface ApiOperationsDeps {
  repository: SessionRepository;
  milestones: MilestoneRepository;
  starter: SessionStarter;
  /** Tags a closed milestone's transcript for expiry; absent where there is no bucket. */
  transcripts?: TranscriptStorage;
  /** The deployment's limits, checked before an execution starts (the workflow enforces them). */
  policy?: SessionPolicy;
  slots?: ProjectSlots;
}

/** The path of a session or a milestone: the project first, so IAM can scope a caller to it. */
export function sessionPath(projectId: string, sessionId: string): string {
  return `/projects/${encodeURIComponent(projectId)}/sessions/${sessionId}`;
}
export function milestonePath(projectId: string, milestoneId: string): string {
  return `/projects/${encodeURIComponent(projectId)}/milestones/${milestoneId}`;
}

/**
 * The HTTP API's operations, free of any HTTP or Lambda type (handlers adapt them). Each takes the
 * project from the request's path: a session or milestone of another project is not found here,
 * so a caller allowed `/projects/demo/*` learns nothing of any other project.
 */
export class ApiOperations {
  constructor(private readonly deps: ApiOperationsDeps) {}

  async startSession(pathProjectId: string | undefined, body: unknown): Promise<StartedSession & { projectId: string; links: { self: string } }> {
    const started = await startSession(body, { trigger: 'api', project: pathProjectId, checks: this.deps, starter: this.deps.starter });
    return { ...started, links: { self: sessionPath(started.projectId, started.sessionId) } };
  }

  async getSession(pathProjectId: string | undefined, sessionId: string | undefined): Promise<SessionRecord> {
    const projectId = projectIdOf(pathProjectId);
    if (!sessionId || !isUuid(sessionId)) {
      throw new InvalidInputError([{ field: 'id', message: 'must be a UUID' }]);
    }
    const session = await this.deps.repository.get(sessionId);
    if (!session || session.projectId !== projectId) throw new HttpError(404, `no session ${sessionId} in project ${projectId}`);
    return session;
  }

  async listProjectSessions(projectId: string | undefined, query: Record<string, string | undefined> | null): Promise<SessionPage> {
    // The path's project last: a `?projectId=` must never widen what IAM granted on the path.
    const parsed = ListQuery.safeParse({ ...query, projectId });
    if (!parsed.success) throw new InvalidInputError(parsed.error.issues.map((i) => ({ field: i.path.join('.'), message: i.message })));
    const { status, limit, nextToken } = parsed.data;
    return this.deps.repository.listByProject(parsed.data.projectId, { status, limit, nextToken });
  }

  /** The body may be absent, or name the path's project. */
  async openMilestone(pathProjectId: string | undefined, body: unknown): Promise<MilestoneRecord & { links: { self: string } }> {
    const projectId = projectIdOf(pathProjectId);
    const parsed = OpenMilestoneBody.safeParse(body ?? {});
    if (!parsed.success) {
      throw new InvalidInputError(parsed.error.issues.map((i) => (i.code === 'unrecognized_keys'
        ? { field: i.keys.join(', '), message: 'is not a known field' }
        : { field: i.path.join('.') || '(body)', message: i.message })));
    }
    assertSameProject(parsed.data.projectId, projectId);
    const milestone = await this.deps.milestones.open(projectId);
    return { ...milestone, links: { self: milestonePath(projectId, milestone.milestoneId) } };
  }

  /** The milestone, its totals and a page of its tasks (`?limit=&nextToken=`, as a list of sessions pages). */
  async getMilestone(pathProjectId: string | undefined, milestoneId: string | undefined, query: Record<string, string | undefined> | null = null): Promise<MilestoneView> {
    const projectId = projectIdOf(pathProjectId);
    const parsed = MilestoneTasksQuery.safeParse(query ?? {});
    if (!parsed.success) throw new InvalidInputError(parsed.error.issues.map((i) => ({ field: i.path.join('.'), message: i.message })));
    const view = await this.deps.milestones.view(milestoneIdOf(milestoneId), parsed.data);
    if (!view || view.projectId !== projectId) throw milestoneNotFound(milestoneId!, projectId);
    return view;
  }

  async closeMilestone(pathProjectId: string | undefined, milestoneId: string | undefined): Promise<MilestoneRecord> {
    const projectId = projectIdOf(pathProjectId);
    const closed = await this.deps.milestones.close(milestoneIdOf(milestoneId), projectId);
    if (closed.transcript) await this.deps.transcripts?.markClosed(closed.transcript.key);
    return closed;
  }

  /** Project ids with at least one session (a scan of the project index's keys). */
  async listProjects(): Promise<{ items: string[] }> {
    return { items: await this.deps.repository.projectIds() };
  }

  async projectUsage(pathProjectId: string | undefined): Promise<UsageTotals> {
    return this.deps.repository.usageTotals(projectIdOf(pathProjectId));
  }
}

/** The path's project id, by the input schema's rule; a bad one is a 400 naming `projectId`. */
function projectIdOf(raw: string | undefined): string {
  const parsed = idField.safeParse(raw);
  if (!parsed.success) throw new InvalidInputError([{ field: 'projectId', message: parsed.error.issues[0]!.message }]);
  return parsed.data;
}

function milestoneIdOf(id: string | undefined): string {
  if (!id || !isUuid(id)) throw new InvalidInputError([{ field: 'id', message: 'must be a UUID' }]);
  return id;
}

const OpenMilestoneBody = z.strictObject({ projectId: z.unknown().optional() }, { error: 'must be a JSON object, or no body' });

const ListQuery = z.object({
  projectId: idField,
  status: z
    .string()
    .transform((s) => s.toUpperCase())
    .pipe(z.enum(SESSION_STATUSES, { error: `must be one of ${SESSION_STATUSES.join(', ')}` }))
    .optional()
    .transform((s) => s as SessionStatus | undefined),
  limit: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1).max(100).default(25),
  nextToken: z.string().optional(),
});

const MilestoneTasksQuery = z.object({
  limit: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1).max(100).default(50),
  nextToken: z.string().optional(),
});
