import { readFileSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';


/**
 * The state folder, made (or made again) readable by its owner only: it holds the sessions'
 * records, replies and transcripts, the engine's port, and the local stores' data.
 */
export async function makePrivateStateFolder(home: string): Promise<void> {
  await mkdir(home, { recursive: true, mode: 0o700 });
  await chmod(home, 0o700);
}

export class LocalStateBusyError extends Error {
  override readonly name = 'LocalStateBusyError';
  constructor(
    readonly home: string,
    readonly holder: { pid: number; command: string },
  ) {
    super(`the local state in ${home} is in use by process ${holder.pid} (${holder.command}); stop it or use another CLAUDE_SESSIONS_HOME`);
  }
}

/**
 * One process at a time owns the on-disk state (LevelDB allows one opener). The lock file
 * names its holder; a holder that no longer exists (killed, crashed) leaves a stale lock
 * that the next process takes over.
 */
export async function acquireStateLock(home: string, command: string): Promise<() => Promise<void>> {
  const path = join(home, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const file = await open(path, 'wx');
      await file.writeFile(JSON.stringify({ pid: process.pid, command }));
      await file.close();
      return async () => {
        await rm(path, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readHolder(path);
      if (holder && isAlive(holder.pid)) throw new LocalStateBusyError(home, holder);
      await rm(path, { force: true }); // stale: its holder is gone
    }
  }
  throw new Error(`could not take the lock ${path}`);
}

/** The process that holds the state folder's lock, if one is named there (alive or not). */
export function lockHolder(home: string): Promise<{ pid: number; command: string } | undefined> {
  return readHolder(join(home, 'lock'));
}

async function readHolder(path: string): Promise<{ pid: number; command: string } | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as { pid?: unknown; command?: unknown };
    return typeof parsed.pid === 'number' ? { pid: parsed.pid, command: String(parsed.command ?? 'claude-sessions') } : undefined;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process nobody has reaped (a container whose PID 1 reaps nothing) is a zombie: gone.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc (macOS): signal 0 is all there is
  }
}
