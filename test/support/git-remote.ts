import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** git as the test's user, for setting up and inspecting repositories. */
export function git(cwd: string, ...args: string[]): string {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A bare repository with one commit on main (a README), as a team's remote would be. */
export function remoteRepository(): { bare: string; main: string } {
  const root = mkdtempSync(join(tmpdir(), 'workspace-remote-'));
  const seed = join(root, 'seed');
  git(root, 'init', '--quiet', '--initial-branch=main', seed);
  writeFileSync(join(seed, 'README.md'), '# Widgets\nThe widget service: run `make widgets`.\n');
  git(seed, 'add', 'README.md');
  git(seed, 'commit', '--quiet', '-m', 'seed');
  const bare = join(root, 'remote.git');
  git(root, 'clone', '--quiet', '--bare', seed, bare);
  return { bare, main: git(bare, 'rev-parse', 'main') };
}
