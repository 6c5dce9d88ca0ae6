import { spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';

// What a run's CLI starts ends with it. Killing the CLI's process group misses whatever left it
// (`setsid`, a double fork): on a warm Lambda such a process would see the next session. So after
// the CLI exits, every process of the run is found and killed: by its user where the run has one
// of its own (runUser); where the runner owns its sandbox (Lambda), by its user and a start after
// the CLI's, its own and its forebears' (startedByRun), so one that also cleared its environment
// goes too, and a neighbour's on a shared host does not; else (the local runtime, on a
// machine shared with the user's own programs) by a marker in its environment that every
// descendant inherits (the run's gateway token). Linux only (/proc); elsewhere nothing is found.

/** A user and group no image or host account has, fresh for each run. */
export interface RunUser {
  uid: number;
  gid: number;
}

/** Where a separate user is asked for: the runner must be root to start the CLI as another. */
export function runUser(): RunUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = randomInt(200_000, 1_000_000);
  return { uid: id, gid: id };
}

/** Gives the run's HOME (and all under it, the workspace's clone included) to its user. */
export async function handOver(dir: string, user: RunUser): Promise<void> {
  const child = spawn('chown', ['-R', '--no-dereference', `${user.uid}:${user.gid}`, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((resolve, reject) => child.once('error', reject).once('close', resolve));
  if (code !== 0) throw new Error(`could not give the run's home to its user: ${stderr.trim()}`);
}

/** What tells a run's processes apart: its own user, a start since the CLI's by the runner's user (a sandbox of its own), its marker. */
export interface RunProcesses {
  user?: RunUser;
  marker: string;
  startedSince?: { uid: number; ticks: number };
}

/** Kills every process of the run. Returns how many. */
export async function killRunProcesses(run: RunProcesses): Promise<number> {
  // As the run's user, kill(-1) reaches every process of that user at once, a forking one included.
  if (run.user) spawnSync('kill', ['-KILL', '-1'], { uid: run.user.uid, gid: run.user.gid, stdio: 'ignore' });
  const entries = await readdir('/proc').catch(() => [] as string[]);
  let killed = 0;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid || pid === 1) continue;
    if (await belongsToRun(pid, run)) {
      try {
        process.kill(pid, 'SIGKILL');
        killed++;
      } catch {
        // gone already
      }
    }
  }
  return killed;
}

async function belongsToRun(pid: number, run: RunProcesses): Promise<boolean> {
  if (run.user || run.startedSince) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
    if (run.user && uid === run.user.uid) return true;
    if (run.startedSince && uid === run.startedSince.uid && (await startedByRun(pid, run.startedSince.ticks))) return true;
  }
  const environ = await readFile(`/proc/${pid}/environ`).catch(() => undefined);
  return environ !== undefined && environ.includes(run.marker);
}

/**
 * Started since the CLI, and so were its forebears up to the runner, or up to the reaper of
 * orphans (pid 1, where a `setsid` child that left ends up). One with an older forebear that is
 * not the runner belongs to another program: on a host the runner shares (the bundle run by a
 * test beside others), a process started meanwhile by a neighbour is not the run's.
 */
async function startedByRun(pid: number, sinceTicks: number): Promise<boolean> {
  let current = pid;
  for (let depth = 0; depth < 64; depth++) {
    const stat = await processStat(current);
    if (!stat || stat.startTicks < sinceTicks) return false;
    if (stat.ppid === process.pid || stat.ppid <= 1) return true;
    current = stat.ppid;
  }
  return false;
}

/** A process's parent and start, in clock ticks since boot (/proc/<pid>/stat, fields 4 and 22); undefined where there is no /proc. */
async function processStat(pid: number): Promise<{ ppid: number; startTicks: number } | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields?.[1]);
  const startTicks = Number(fields?.[19]);
  return Number.isFinite(ppid) && Number.isFinite(startTicks) ? { ppid, startTicks } : undefined;
}

/** When a process started, in clock ticks since boot; undefined where there is no /proc. */
export async function processStartTicks(pid: number): Promise<number | undefined> {
  return (await processStat(pid))?.startTicks;
}
