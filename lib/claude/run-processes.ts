import { spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';

// What a run's CLI starts ends with it. Killing the CLI's process group misses whatever left it
// (`setsid`, a double fork): on a warm Lambda such a process would see the next session. So after
// the CLI exits, every process of the run is found and killed: by its user where the run has one
// of its own (runUser), else by a marker in its environment that every descendant inherits (the
// run's gateway token); a process that clears its own environment on a Lambda is beyond this, and
// docs/SECURITY.md says so. Linux only (/proc); elsewhere nothing is found.

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

/** Kills every process of the run: of its user, or carrying its marker in its environment. Returns how many. */
export async function killRunProcesses(run: { user?: RunUser; marker: string }): Promise<number> {
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

async function belongsToRun(pid: number, run: { user?: RunUser; marker: string }): Promise<boolean> {
  if (run.user) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (uid !== undefined && Number(uid) === run.user.uid) return true;
  }
  const environ = await readFile(`/proc/${pid}/environ`).catch(() => undefined);
  return environ !== undefined && environ.includes(run.marker);
}
