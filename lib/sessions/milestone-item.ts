/**
 * The milestone item's layout (docs/ARCHITECTURE.md#data-model, #the-write-contract), shared by MilestoneRepository and
 * the workflow's direct DynamoDB states, like session-item.ts for sessions.
 *
 * A milestone item holds no counters: its totals are a totals item of its project
 * (`TOTALS#<projectId>`, `MILESTONE#<id>`, project-totals.ts), moved by the transactions that write
 * its tasks' session items, and its tasks are the session items carrying its id (MILESTONE_INDEX).
 */
export const MILESTONE_SK = 'MILESTONE';
/**
 * A milestone's tasks in order, holding what a task row shows (`projectId` and
 * SESSION_SUMMARY_ATTRIBUTES), not the reply. A new name: DynamoDB cannot change an index's
 * projection, and CloudFormation adds or drops one index per update (LEGACY_MILESTONE_INDEX,
 * docs/DEPLOYING.md#upgrading).
 */
export const MILESTONE_INDEX = 'byMilestoneSummary';
/** The milestone index of every attribute, which tables deployed before byMilestoneSummary have. */
export const LEGACY_MILESTONE_INDEX = 'byMilestone';

export const MILESTONE_STATUSES = ['OPEN', 'CLOSED', 'BROKEN'] as const;
export type MilestoneStatus = (typeof MILESTONE_STATUSES)[number];

export function milestonePk(milestoneId: string): string {
  return `MILESTONE#${milestoneId}`;
}

/** Where the conversation's transcript is, as recorded after the last task that wrote one. */
export interface TranscriptPointer {
  key: string;
  sha256: string;
  bytes: number;
  /** S3's version id where the bucket is versioned (on AWS); null on an unversioned store. */
  versionId: string | null;
}

/**
 * The repository a milestone's tasks work on: fixed by its first task that ran with one, so
 * every later task continues the same branch (docs/ARCHITECTURE.md#workspaces).
 */
export interface MilestoneWorkspace {
  repo: string;
  /** Where the branch starts while the remote has no branch yet (null: the remote's default). */
  ref: string | null;
  branch: string;
}

/**
 * The pull request the reporter opened from the milestone's branch (or found open there): the one
 * pull request whose comments continue the milestone (docs/GITHUB.md#a-pull-request-is-a-milestone).
 */
export interface MilestonePullRequest {
  number: number;
  url: string;
}

export interface MilestoneRecord {
  milestoneId: string;
  projectId: string;
  status: MilestoneStatus;
  createdAt: string;
  closedAt: string | null;
  /** The Claude conversation every task continues: the milestone's own UUID. */
  claudeSessionId: string;
  /** The task holding the lease (running now), if any. */
  leaseSessionId: string | null;
  leaseExecutionArn: string | null;
  transcript: TranscriptPointer | null;
  lastSessionId: string | null;
  brokenReason: string | null;
  workspace: MilestoneWorkspace | null;
  /** Its pull request, once the reporter has recorded it; a pull request's marker alone binds nothing. */
  pullRequest: MilestonePullRequest | null;
}

export type MilestoneItem = Record<string, unknown>;

export function toMilestoneItem(milestoneId: string, projectId: string, createdAt: Date): MilestoneItem {
  // No startedAt and no milestoneId attribute: the item stays out of both GSIs.
  return {
    pk: milestonePk(milestoneId),
    sk: MILESTONE_SK,
    id: milestoneId,
    projectId,
    status: 'OPEN',
    createdAt: createdAt.toISOString(),
    claudeSessionId: milestoneId,
  };
}

export function toMilestoneRecord(item: MilestoneItem): MilestoneRecord {
  const str = (key: string): string | null => (typeof item[key] === 'string' ? (item[key] as string) : null);
  const sha256 = str('transcriptSha256');
  return {
    milestoneId: String(item.id),
    projectId: String(item.projectId),
    status: item.status as MilestoneStatus,
    createdAt: String(item.createdAt),
    closedAt: str('closedAt'),
    claudeSessionId: String(item.claudeSessionId),
    leaseSessionId: str('leaseSessionId'),
    leaseExecutionArn: str('leaseExecutionArn'),
    transcript: sha256
      ? { key: String(item.transcriptKey), sha256, bytes: Number(item.transcriptBytes ?? 0), versionId: str('transcriptVersionId') }
      : null,
    lastSessionId: str('lastSessionId'),
    brokenReason: str('brokenReason'),
    workspace: toMilestoneWorkspace(item.workspace),
    pullRequest: typeof item.pullRequestNumber === 'number' ? { number: item.pullRequestNumber, url: String(item.pullRequestUrl) } : null,
  };
}

function toMilestoneWorkspace(value: unknown): MilestoneWorkspace | null {
  if (!value || typeof value !== 'object') return null;
  const { repo, ref, branch } = value as Record<string, unknown>;
  if (typeof repo !== 'string' || typeof branch !== 'string') return null;
  return { repo, ref: typeof ref === 'string' ? ref : null, branch };
}

/**
 * AcquireMilestone: one task at a time, only on an OPEN milestone of the task's project.
 * The same execution may take it again (a retried write whose answer was lost).
 */
export const ACQUIRE_CONDITION =
  '#status = :open AND projectId = :projectId AND (attribute_not_exists(leaseExecutionArn) OR leaseExecutionArn = :executionArn)';
export const ACQUIRE_UPDATE = 'SET leaseSessionId = :sessionId, leaseExecutionArn = :executionArn';
export const ACQUIRE_NAMES = { '#status': 'status' };

/** Every release is conditional on the lease being this execution's: nobody frees another's. */
export const LEASE_CONDITION = 'leaseExecutionArn = :executionArn';

/**
 * After a run that returned (completed or failed): the transcript it left, the workspace its
 * tasks continue (the same one again once fixed, so a repeat changes nothing), and the lease freed.
 */
export const RELEASE_AFTER_RUN_UPDATE =
  'SET transcriptKey = :key, transcriptSha256 = :sha256, transcriptBytes = :bytes, transcriptVersionId = :versionId, ' +
  'workspace = :workspace, lastSessionId = :sessionId, updatedAt = :updatedAt REMOVE leaseSessionId, leaseExecutionArn';

/** After an infrastructure failure: the transcript is left as it was. */
export const RELEASE_UPDATE = 'SET updatedAt = :updatedAt REMOVE leaseSessionId, leaseExecutionArn';

/** A transcript that cannot be resumed: no later task may silently start a new conversation. */
export const MARK_BROKEN_UPDATE =
  'SET #status = :broken, brokenReason = :reason, updatedAt = :updatedAt REMOVE leaseSessionId, leaseExecutionArn';
export const MARK_BROKEN_NAMES = { '#status': 'status' };

/**
 * The reporter's one write (MilestoneRepository.recordPullRequest): the pull request of the
 * milestone's branch, on a milestone of the session's project, never replacing another number
 * (the first pull request a milestone's branch had stays its one). Flat attributes, so the
 * reporter's grant can name each one it may touch (SessionTable.grantRecordPullRequests).
 */
export const RECORD_PULL_REQUEST_UPDATE = 'SET pullRequestNumber = :number, pullRequestUrl = :url';
export const RECORD_PULL_REQUEST_CONDITION =
  'attribute_exists(pk) AND projectId = :projectId AND (attribute_not_exists(pullRequestNumber) OR pullRequestNumber = :number)';
/** Every attribute RECORD_PULL_REQUEST_* and the key name: the reporter's `dynamodb:Attributes`. */
export const RECORD_PULL_REQUEST_ATTRIBUTES = ['pk', 'sk', 'projectId', 'pullRequestNumber', 'pullRequestUrl'] as const;

/** The values of RELEASE_AFTER_RUN_UPDATE: the runner returns them with its outcome. */
export function releaseAfterRunValues(
  executionArn: string,
  sessionId: string,
  transcript: TranscriptPointer | null,
  workspace: MilestoneWorkspace | null,
  updatedAt: Date,
): Record<string, unknown> {
  return {
    ':executionArn': executionArn,
    ':key': transcript?.key ?? null,
    ':sha256': transcript?.sha256 ?? null,
    ':bytes': transcript?.bytes ?? 0,
    ':versionId': transcript?.versionId ?? null,
    ':workspace': workspace,
    ':sessionId': sessionId,
    ':updatedAt': updatedAt.toISOString(),
  };
}
