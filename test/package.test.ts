import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../lib/project-root.js';

// The package as a user installs it: `npm pack`, then an install of the tarball into an empty
// folder, then `claude-sessions run` from there against the built-in stand-in. Tests do not reach
// the registry, so the install is `npm ci --offline` from npm's cache (which the project's own
// `npm ci` filled), with a lockfile made of the project's lockfile's production entries: the
// versions a registry install would pick within package.json's ranges today. What it shows is
// that the tarball holds what the CLI needs, that its dependencies (and none of the dev ones)
// make it run, and that it runs from node_modules with no lockfile of its own and no install
// scripts (npm runs a dependency's only when the installing project allows it).

const npm = join(process.execPath, '..', 'npm');
let scratch: string;

afterAll(async () => {
  if (!scratch) return;
  const engine = await readFile(join(scratch, 'state', 'engine.json'), 'utf8').then((t) => JSON.parse(t) as { pid?: number }).catch(() => undefined);
  if (engine?.pid) {
    try {
      process.kill(engine.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await rm(scratch, { recursive: true, force: true });
});

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(command, args, { cwd, env, encoding: 'utf8', timeout: 400_000, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, error: r.error };
}

interface LockEntry { dev?: boolean; devOptional?: boolean; [key: string]: unknown }

/** A lockfile for a project whose one dependency is the tarball: the project's production entries, hoisted as they are. */
function lockfileFor(tarball: string): object {
  const lock = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const root = lock.packages['']! as { dependencies: Record<string, string>; bin: Record<string, string>; engines: object; license?: string };
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  const packages: Record<string, object> = {
    '': { dependencies: { 'claude-sessions': `file:${tarball}` } },
    'node_modules/claude-sessions': {
      version: JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')).version,
      resolved: `file:${tarball}`, integrity, license: root.license, dependencies: root.dependencies, bin: root.bin, engines: root.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!path || entry.dev) continue;
    const { devOptional: _devOptional, ...kept } = entry;
    packages[path] = kept;
  }
  return { name: 'installs-claude-sessions', lockfileVersion: 3, requires: true, packages };
}

/** Licenses that let the package be used, changed and shipped under Apache-2.0 without more. */
const PERMISSIVE = new Set(['MIT', 'MIT-0', 'ISC', 'BSD-2-Clause', 'BSD-3-Clause', 'Apache-2.0', '0BSD', 'BlueOak-1.0.0', '(MIT OR GPL-3.0-or-later)']);
/** Installed with the package under other terms, each with why it may be. */
const OTHER_TERMS: Record<string, string> = {
  // Anthropic's Commercial Terms / Consumer Terms: installed from the registry by every user, never redistributed by us.
  '@anthropic-ai/claude-code': 'SEE LICENSE IN README.md',
  // s3rver's dependencies (koa): MIT by their readmes, with no license field.
  'humanize-number': 'MIT (readme)',
  only: 'MIT (readme)',
};

describe('the npm package', () => {
  it('installs only dependencies under permissive licenses, or under terms named here with their reason', () => {
    const lock = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry & { license?: string }> };
    const runtime = Object.entries(lock.packages).filter(([path, entry]) => path && !entry.dev);
    const unexpected = runtime.flatMap(([path, entry]) => {
      const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
      const manifest = join(PROJECT_ROOT, path, 'package.json');
      // An optional platform package not installed here has the lockfile's record only.
      const own = (existsSync(manifest) ? JSON.parse(readFileSync(manifest, 'utf8')) : entry) as { license?: string | { type: string }; licenses?: { type: string }[] };
      // Old manifests spell it { type } or as a licenses list.
      const license = (typeof own.license === 'object' ? own.license.type : own.license) ?? own.licenses?.map((l) => l.type).join(' OR ');
      if (license && PERMISSIVE.has(license)) return [];
      const terms = OTHER_TERMS[name.replace(/-(darwin|linux|win32)-.*$/, '')];
      return terms ? [] : [`${name}: ${license ?? 'no license field'}`];
    });
    expect(unexpected).toEqual([]);
    // The AGPL IAM simulator the IAM tests use is a dev dependency: never installed with the package.
    expect(lock.packages['node_modules/@cloud-copilot/iam-simulate']).toMatchObject({ license: 'AGPL-3.0-or-later', dev: true });
    expect(JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8'))).toMatchObject({ license: 'Apache-2.0' });
    expect(readFileSync(join(PROJECT_ROOT, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
  });

  it('installs from its tarball into an empty folder and runs a session there to COMPLETED', async () => {
    // Prepare: the tarball, and an empty project that depends on it
    scratch = await mkdtemp(join(tmpdir(), 'claude-sessions-package-'));
    const packed = run(npm, ['pack', '--json', '--pack-destination', scratch], PROJECT_ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    const [{ filename, files }] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
    const paths = files.map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'bin/claude-sessions.js', 'lib/cli/main.ts', 'cdk/claude-sessions-stack.ts', 'functions/runner/Dockerfile']));
    expect(paths.filter((p) => /^(test|bench|docs|\.ci)\//.test(p) || p === 'package-lock.json')).toEqual([]);
    const tarball = join(scratch, filename);
    const project = join(scratch, 'project');
    await mkdir(project);
    await writeFile(join(project, 'package.json'), JSON.stringify({ private: true, dependencies: { 'claude-sessions': `file:${tarball}` } }));
    await writeFile(join(project, 'package-lock.json'), JSON.stringify(lockfileFor(tarball)));
    const installed = run(npm, ['ci', '--offline', '--no-audit', '--no-fund'], project);
    expect(installed.code, installed.stderr).toBe(0);
    // Only what it runs on: the AGPL IAM simulator and the other dev tools stay with the repository.
    expect(existsSync(join(project, 'node_modules', '@cloud-copilot', 'iam-simulate'))).toBe(false);
    expect(existsSync(join(project, 'node_modules', 'vitest'))).toBe(false);

    // Act: the quick start, from the installed package, with a state folder of its own
    const env: NodeJS.ProcessEnv = { ...process.env, CLAUDE_SESSIONS_HOME: join(scratch, 'state'), CLAUDE_SESSIONS_ENGINE_IDLE_SECONDS: '5' };
    delete env.ANTHROPIC_API_KEY;
    delete env.CLAUDE_SESSIONS_API;
    const session = run(process.execPath, [join(project, 'node_modules', '.bin', 'claude-sessions'), 'run', 'Summarise the README', '--project', 'demo'], project, env);

    // Assess
    expect(session.code, `${session.stdout}\n${session.stderr}`).toBe(0);
    expect(session.stdout).toMatch(/^Session\s+\S+\s+COMPLETED$/m);
    expect(`${session.stdout}${session.stderr}`).toMatch(/local stand-in/);
    expect(await readdir(join(project, 'node_modules', 'claude-sessions'))).not.toContain('package-lock.json');
  }, 600_000);
});
