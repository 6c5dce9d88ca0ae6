import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { killRunProcesses, processStartTicks } from '../lib/claude/run-processes.js';
import { waitFor } from './support/wait-for.js';

// Where the runner owns its sandbox (a Lambda environment), what a run leaves is found by its
// user and a start since the CLI's, so a command that left the CLI's group and cleared its
// environment goes too. The same bundle also runs on hosts it shares (a test beside others):
// there a process a neighbour started meanwhile is not the run's, and must live.

const pidsOf = (text: string) => readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((pid) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim() === text;
  } catch {
    return false;
  }
});
const started: ChildProcess[] = [];
afterEach(() => {
  for (const child of started) child.kill('SIGKILL');
  for (const text of ['sleep 4241.5', 'sleep 4242.5', 'sleep 4243.5', 'sleep 4244.5']) for (const pid of pidsOf(text)) process.kill(Number(pid), 'SIGKILL');
});

describe.runIf(process.platform === 'linux')('a run\'s processes where the runner owns its sandbox', () => {
  it('are what started since the CLI, under the runner or left to pid 1; a neighbour\'s child started meanwhile lives', async () => {
    // Prepare: a neighbour older than the run, which starts a child once told
    const neighbour = spawn('sh', ['-c', 'read go; sleep 4241.5; :'], { stdio: ['pipe', 'ignore', 'ignore'] });
    started.push(neighbour);
    await waitFor(async () => (await processStartTicks(neighbour.pid!)) !== undefined, 'the neighbour to start');
    await new Promise((resolve) => setTimeout(resolve, 50)); // a clock tick (10 ms) between the neighbour's start and the CLI's
    const cli = spawn('sleep', ['4242.5'], { stdio: 'ignore' });
    started.push(cli);
    const since = (await processStartTicks(cli.pid!))!;
    // ...then the run's command leaves the CLI's group for pid 1, and the neighbour starts its child
    spawn('setsid', ['-f', 'sleep', '4243.5'], { stdio: 'ignore', env: { PATH: process.env.PATH } });
    const child = spawn('sleep', ['4244.5'], { stdio: 'ignore' });
    started.push(child);
    neighbour.stdin!.write('go\n');
    await waitFor(async () => pidsOf('sleep 4241.5').length === 1 && pidsOf('sleep 4243.5').length === 1, 'both sleeps to start');
    // Act
    await killRunProcesses({ marker: 'no process has this marker', startedSince: { uid: process.getuid!(), ticks: since } });
    // Assess
    await waitFor(async () => pidsOf('sleep 4243.5').length === 0 && pidsOf('sleep 4242.5').length === 0, 'the run\'s to be gone');
    expect(pidsOf('sleep 4241.5')).toHaveLength(1);
  });
});
