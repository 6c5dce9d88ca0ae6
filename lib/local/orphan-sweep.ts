import { paginateScan } from '@aws-sdk/lib-dynamodb';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { killRunProcesses } from '../claude/run-processes.js';
import { MILESTONE_SK } from '../sessions/milestone-item.js';
import type { MilestoneRepository } from '../sessions/milestone-repository.js';
import { SLOTS_SK, type ProjectSlots } from '../sessions/project-slots.js';
import { SESSION_SK } from '../sessions/session-item.js';
import type { SessionRepository } from '../sessions/session-repository.js';
import type { LocalDynamoDb } from './local-dynamodb.js';

// What stands in locally for what AWS does outside an execution: the reaper's sweep of what a
// killed process left behind, and StopExecution from another terminal.

/**
 * What a dead engine left held, found in one scan (this runs at every engine's start):
 * RUNNING sessions, milestone leases and project slots. With the state lock held, nothing
 * here is live, so all of it is closed or freed. Returns the sessions closed.
 */
export async function closeOrphans(
  dynamodb: LocalDynamoDb,
  stores: { repository: SessionRepository; milestones: MilestoneRepository; slots: ProjectSlots },
): Promise<string[]> {
  const closed: string[] = [];
  const pages = paginateScan(
    { client: dynamodb.documentClient },
    {
      TableName: dynamodb.tableName,
      FilterExpression:
        '(sk = :session AND #status = :running) OR (sk = :milestone AND attribute_exists(leaseExecutionArn)) OR (sk = :slots AND attribute_exists(running))',
      ExpressionAttributeNames: { '#status': 'status' },
      ExpressionAttributeValues: { ':session': SESSION_SK, ':running': 'RUNNING', ':milestone': MILESTONE_SK, ':slots': SLOTS_SK },
    },
  );
  for await (const page of pages) {
    for (const item of page.Items ?? []) {
      if (item.sk === SESSION_SK) {
        const sessionId = String(item.sessionId);
        const done = await stores.repository.closeWithError(
          sessionId, 'ABORTED', 'ExecutionAborted', 'the local process that ran this session ended before closing it',
        );
        if (done) closed.push(sessionId);
      } else if (item.sk === MILESTONE_SK) {
        await stores.milestones.releaseLease(String(item.id), String(item.leaseExecutionArn));
      } else {
        const projectId = String(item.pk).slice('PROJECT#'.length);
        for (const sessionId of item.running as Set<string>) await stores.slots.release(projectId, sessionId);
      }
    }
  }
  return closed;
}

/** Where a state folder's runs make their HOMEs (`claude-run-*`): inside it, so a dead engine's are found. */
export function runsFolder(home: string): string {
  return join(home, 'runs');
}

/**
 * What a dead engine's runs left on this machine: a `kill -9` of the engine kills none of its
 * children (each CLI has its own process group), so a CLI and the tools it started would run on
 * under PID 1, its HOME with them. Every process whose environment names a HOME in this state
 * folder's runs folder is one of them (the CLI's HOME, TMPDIR and CLAUDE_CONFIG_DIR are there,
 * and its tools inherit them); with the state lock held, none is live. Then the HOMEs go.
 * Returns how many processes were killed. Linux only (/proc); elsewhere only the folders go.
 */
export async function stopOrphanRuns(home: string): Promise<number> {
  const runs = runsFolder(home);
  const killed = await killRunProcesses({ marker: `=${join(runs, 'claude-run-')}` });
  const left = await readdir(runs).catch(() => [] as string[]);
  await Promise.all(left.map((entry) => rm(join(runs, entry), { recursive: true, force: true })));
  await mkdir(runs, { recursive: true, mode: 0o700 });
  return killed;
}

/** The sessions whose id starts with `prefix`, by a scan (a local table is small): `show`'s short ids. */
export async function sessionsWithPrefix(dynamodb: LocalDynamoDb, prefix: string): Promise<Array<{ sessionId: string; projectId: string }>> {
  const found: Array<{ sessionId: string; projectId: string }> = [];
  const pages = paginateScan(
    { client: dynamodb.documentClient },
    {
      TableName: dynamodb.tableName,
      FilterExpression: 'sk = :session AND begins_with(sessionId, :prefix)',
      ExpressionAttributeValues: { ':session': SESSION_SK, ':prefix': prefix },
      ProjectionExpression: 'sessionId, projectId',
    },
  );
  for await (const page of pages) for (const item of page.Items ?? []) found.push({ sessionId: String(item.sessionId), projectId: String(item.projectId) });
  return found;
}
