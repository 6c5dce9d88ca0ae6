import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { SessionStart } from '../sessions/execution-input.js';
import { RESULT_MAX_CHARS, type RunOutcome } from '../sessions/session-item.js';
import { releaseAfterRunValues, toMilestoneRecord, type MilestoneRecord, type MilestoneWorkspace, type TranscriptPointer } from '../sessions/milestone-item.js';
import { milestoneTaskWorkspace } from '../sessions/milestone-workspace.js';
import type { ClaudeRun } from './run-claude.js';
import type { TranscriptStorage } from './transcript-store.js';

// The lease and transcript steps of a milestone task's run: what the task holds of its milestone
// before Claude runs (the conversation, the branch, the transcript to resume), and what it hands
// back after (the new transcript and the lease's release). A fresh session has neither.

/** What a milestone task runs under: its milestone as AcquireMilestone left it, and what follows from it. */
export interface MilestoneLease {
  record: MilestoneRecord;
  /** The one Claude conversation all the milestone's tasks speak in: the milestone's UUID. */
  claudeSessionId: string;
  /** The milestone's workspace, which this task continues. */
  workspace: MilestoneWorkspace | null;
  /** The transcript the last task recorded, which this one resumes; none for the first task. */
  restored?: Buffer;
}

/**
 * The lease of a milestone task, checked before Claude runs: the milestone is there, transcripts
 * can be kept, the task names no other repository than its milestone's (its tasks continue one
 * branch), and only what the last task recorded is resumed (a missing or altered transcript
 * throws here). Null for a fresh session.
 */
export async function milestoneLease(
  start: SessionStart,
  lease: { item: Record<string, AttributeValue> | null } | null,
  transcripts: TranscriptStorage | undefined,
): Promise<MilestoneLease | null> {
  const record = lease?.item ? toMilestoneRecord(unmarshall(lease.item)) : null;
  if (start.mode === 'milestone' && !record) throw new Error(`milestone task ${start.sessionId} reached the runner without its milestone`);
  if (!record) return null;
  if (!transcripts) throw new Error('milestone tasks need the transcript bucket (TRANSCRIPT_BUCKET is not set)');
  const workspace = milestoneTaskWorkspace(record, start.workspace);
  const restored = record.transcript ? await transcripts.load(record.milestoneId, record.transcript) : undefined;
  return { record, claudeSessionId: record.claudeSessionId, workspace, restored };
}

/**
 * After the run: the transcript saved (when the CLI changed it) and ReleaseMilestone's values, the
 * new pointer and the lease's release in one write. A transcript S3 refused fails the session,
 * its tokens kept, and the next task resumes from the one before.
 */
export async function releaseMilestone(
  start: SessionStart,
  lease: MilestoneLease,
  run: Pick<ClaudeRun, 'transcript'>,
  outcome: RunOutcome,
  transcripts: TranscriptStorage,
  now: () => Date,
): Promise<{ outcome: RunOutcome; milestoneValues: Record<string, AttributeValue> }> {
  const { record: milestone, restored } = lease;
  let pointer: TranscriptPointer | null = milestone.transcript;
  if (run.transcript && !(restored && run.transcript.equals(restored))) {
    try {
      pointer = await transcripts.save(milestone.milestoneId, run.transcript);
    } catch (err) {
      // The tokens were spent whatever S3 said: keep them, and say the next task resumes from the previous turn.
      outcome = transcriptNotSaved(outcome, milestone, err as Error);
    }
  }
  const milestoneValues = marshall(releaseAfterRunValues(start.executionArn, start.sessionId, pointer, lease.workspace, now()), { removeUndefinedValues: true });
  return { outcome, milestoneValues };
}

function transcriptNotSaved(outcome: RunOutcome, milestone: MilestoneRecord, err: Error): RunOutcome {
  const cause = `the transcript of milestone ${milestone.milestoneId} could not be saved (${err.name}: ${err.message}); the next task resumes from the task before this one`;
  return { ...outcome, status: 'FAILED', error: 'TranscriptNotSavedError', cause: cause.slice(0, RESULT_MAX_CHARS) };
}
