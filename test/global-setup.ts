import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { PROJECT_ROOT } from '../lib/project-root.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The cloud assembly `cdk synth` made for this run: what `cdk deploy` would ship. */
    cdkOut: string;
  }
}

/**
 * Synthesizes the app once per test run, as a user's `npx cdk synth` does (the CDK CLI,
 * cdk.json, local esbuild bundling, cdk-nag), so the tests of what ships load the very
 * assets and template a deploy would upload.
 */
export default function setup(project: TestProject): () => void {
  // One folder per run: two runs at once (a watcher and a CI run) never share an assembly.
  mkdirSync(join(PROJECT_ROOT, 'cdk.out.test'), { recursive: true });
  const outdir = mkdtempSync(join(PROJECT_ROOT, 'cdk.out.test', 'run-'));
  const started = Date.now();
  const synth = spawnSync(process.execPath, [join(PROJECT_ROOT, 'node_modules', 'aws-cdk', 'bin', 'cdk'), 'synth', '--quiet', '--output', outdir], {
    cwd: PROJECT_ROOT,
    encoding: 'utf8',
    env: { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' },
  });
  if (synth.status !== 0) throw new Error(`cdk synth failed (exit ${synth.status}):\n${synth.stderr}\n${synth.stdout}`);
  process.stderr.write(`cdk synth for the artifact tests: ${((Date.now() - started) / 1000).toFixed(1)} s -> ${outdir}\n`);
  project.provide('cdkOut', outdir);
  return () => rmSync(outdir, { recursive: true, force: true });
}
