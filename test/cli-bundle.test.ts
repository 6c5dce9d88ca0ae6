import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readFile, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../lib/project-root.js';

// bin/claude-sessions.js runs an esbuild bundle of the sources (bin/cli-bundle.js), keyed on
// their content: tested on a copy of the project, whose sources the test may change.

let copy: string;

afterAll(async () => {
  if (copy) await rm(copy, { recursive: true, force: true });
});

function help(root: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'claude-sessions.js'), '--help'], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('the CLI bundle', () => {
  it('is rebuilt when a source changes, even when its size and mtime stay the same', async () => {
    // Prepare: a copy of what the bin builds from, with the project's node_modules
    copy = await mkdtemp(join(tmpdir(), 'claude-sessions-bundle-'));
    for (const entry of ['bin', 'lib', 'functions', 'cdk', 'package.json', 'package-lock.json', 'tsconfig.json']) {
      await cp(join(PROJECT_ROOT, entry), join(copy, entry), { recursive: true, preserveTimestamps: true });
    }
    await symlink(join(PROJECT_ROOT, 'node_modules'), join(copy, 'node_modules'));
    const first = help(copy);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).not.toMatch(/running from the TypeScript sources/);
    expect(first.stdout).toContain('run Claude Code headless as tracked sessions');

    // Act: the same number of bytes, the same mtime, another text
    const source = join(copy, 'lib', 'cli', 'main.ts');
    const before = await stat(source);
    await writeFile(source, (await readFile(source, 'utf8')).replace('run Claude Code headless as tracked sessions', 'RUN CLAUDE CODE HEADLESS AS TRACKED SESSIONS'));
    await utimes(source, before.atime, before.mtime);
    expect((await stat(source)).size).toBe(before.size);
    const second = help(copy);

    // Assess: the changed source runs, from a second bundle
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('RUN CLAUDE CODE HEADLESS AS TRACKED SESSIONS');
    expect((await readdir(join(copy, 'dist', 'cli'))).filter((d) => !d.endsWith('.tmp'))).toHaveLength(2);
  }, 180_000);
});
