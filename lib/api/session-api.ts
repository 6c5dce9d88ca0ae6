import { v4 as uuidv4, validate as isUuid } from 'uuid';
import { z } from 'zod';
import { InvalidInputError, validateStartInput } from '../sessions/execution-input.js';
import { SESSION_STATUSES, type SessionRecord, type SessionStatus } from '../sessions/session-item.js';
import type { SessionPage, SessionRepository, UsageTotals } from '../sessions/session-repository.js';
import { HttpError } from './http-errors.js';
import type { SessionStarter, StartedSession } from './session-starter.js';
import type { MilestoneRepository, MilestoneView } from '../sessions/milestone-repository.js';
import type { MilestoneRecord } from '../sessions/milestone-item.js';
import type { TranscriptStorage } from '../claude/transcript-store.js';
import type { SessionPolicy } from '../sessions/session-creation.js';
import { assertCanStart } from '../sessions/start-checks.js';
import type { ProjectSlots } from '../sessions/project-slots.js';

export interface SessionApiDeps {
  repository: SessionRepository;
  milestones: MilestoneRepository;
  starter: SessionStarter;
  /** Tags a closed milestone's transcript for expiry; absent where there is no bucket. */
  transcripts?: TranscriptStorage;
  /** The deployment's limits, checked before an execution starts (the workflow enforces them). */
  policy?: SessionPolicy;
  slots?: ProjectSlots;
}

/** The HTTP API's operations, free of any HTTP or Lambda type (handlers adapt them). */
export class SessionApi {
  constructor(private readonly deps: SessionApiDeps) {}

  async startSession(body: unknown): Promise<StartedSession & { links: { self: string } }> {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new InvalidInputError([{ field: '(body)', message: 'must be a JSON object' }]);
    }
    const raw = body as Record<string, unknown>;
    const input = validateStartInput({ ...raw, sessionId: raw.sessionId ?? uuidv4(), trigger: 'api' });
    // Refused here with a 404/409/429 that says why, rather than as a FAILED session a moment later.
    await assertCanStart(input, this.deps);
    const started = await this.deps.starter.start({ ...input, sessionId: input.sessionId! });
    return { ...started, links: { self: `/sessions/${started.sessionId}` } };
  }

  async getSession(sessionId: string | undefined): Promise<SessionRecord> {
    if (!sessionId || !isUuid(sessionId)) {
      throw new InvalidInputError([{ field: 'id', message: 'must be a UUID' }]);
    }
    const session = await this.deps.repository.get(sessionId);
    if (!session) throw new HttpError(404, `session ${sessionId} not found`);
    return session;
  }

  async listProjectSessions(projectId: string | undefined, query: Record<string, string | undefined> | null): Promise<SessionPage> {
    const parsed = ListQuery.safeParse({ projectId, ...query });
    if (!parsed.success) throw new InvalidInputError(parsed.error.issues.map((i) => ({ field: i.path.join('.'), message: i.message })));
    const { status, limit, nextToken } = parsed.data;
    return this.deps.repository.listByProject(parsed.data.projectId, { status, limit, nextToken });
  }

  async openMilestone(body: unknown): Promise<MilestoneRecord & { links: { self: string } }> {
    const parsed = OpenMilestoneBody.safeParse(body);
    if (!parsed.success) {
      throw new InvalidInputError(parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message })));
    }
    const milestone = await this.deps.milestones.open(parsed.data.projectId);
    return { ...milestone, links: { self: `/milestones/${milestone.milestoneId}` } };
  }

  async getMilestone(milestoneId: string | undefined): Promise<MilestoneView> {
    const view = await this.deps.milestones.view(milestoneIdOf(milestoneId));
    if (!view) throw new HttpError(404, `milestone ${milestoneId} not found`);
    return view;
  }

  async closeMilestone(milestoneId: string | undefined): Promise<MilestoneRecord> {
    const closed = await this.deps.milestones.close(milestoneIdOf(milestoneId));
    if (closed.transcript) await this.deps.transcripts?.markClosed(closed.transcript.key);
    return closed;
  }

  /** Project ids with at least one session (a scan of the project index's keys). */
  async listProjects(): Promise<{ items: string[] }> {
    return { items: await this.deps.repository.projectIds() };
  }

  async projectUsage(projectId: string | undefined): Promise<UsageTotals> {
    const parsed = ProjectId.safeParse(projectId);
    if (!parsed.success) throw new InvalidInputError([{ field: 'projectId', message: parsed.error.issues[0]!.message }]);
    return this.deps.repository.usageTotals(parsed.data);
  }
}

function milestoneIdOf(id: string | undefined): string {
  if (!id || !isUuid(id)) throw new InvalidInputError([{ field: 'id', message: 'must be a UUID' }]);
  return id;
}

const ProjectId = z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 characters of A-Z a-z 0-9 . _ -');

const OpenMilestoneBody = z.strictObject({ projectId: ProjectId }, { error: 'must be a JSON object with projectId' });

const ListQuery = z.object({
  projectId: ProjectId,
  status: z
    .string()
    .transform((s) => s.toUpperCase())
    .pipe(z.enum(SESSION_STATUSES, { error: `must be one of ${SESSION_STATUSES.join(', ')}` }))
    .optional()
    .transform((s) => s as SessionStatus | undefined),
  limit: z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1).max(100).default(25),
  nextToken: z.string().optional(),
});
