import { buildSync } from 'esbuild';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { ESM_REQUIRE_SHIM } from './esm-bundle.js';

/** The runner image's two entry points, as the Dockerfile copies them into /var/task. */
export const RUNNER_ENTRY_POINTS = { index: 'functions/runner/handler.ts', task: 'functions/task/main.ts' } as const;

const DOCKERFILE = join(PROJECT_ROOT, 'functions', 'runner', 'Dockerfile');
// Nominal output folder: source map paths are relative to it, and the staged folder sits beside it.
const NOMINAL_OUTDIR = join(PROJECT_ROOT, '.build', 'runner-image');

/** The Claude CLI version the tests ran, which the image installs (a build argument). */
export function claudeCodeVersion(): string {
  const require = createRequire(import.meta.url);
  return (JSON.parse(readFileSync(require.resolve('@anthropic-ai/claude-code/package.json'), 'utf8')) as { version: string }).version;
}

/**
 * The runner image's Docker build context, made at synth: both entry points bundled here by
 * esbuild (index.mjs for the Lambda, task.mjs for the Fargate task) next to the Dockerfile,
 * so cdk.out holds exactly the code the image runs, and tests load it from there.
 * Without bundling (a test synth that skips assets), the context holds the Dockerfile only.
 */
export function stageRunnerImage(options: { bundle: boolean }): string {
  const files = new Map<string, Uint8Array>([['Dockerfile', readFileSync(DOCKERFILE)]]);
  if (options.bundle) {
    const result = buildSync({
      absWorkingDir: PROJECT_ROOT,
      entryPoints: RUNNER_ENTRY_POINTS,
      outdir: NOMINAL_OUTDIR,
      outExtension: { '.js': '.mjs' },
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: 'esm',
      minify: true,
      sourcemap: true,
      // The CLI stays a package of the image (its native binary is resolved from it at run time).
      external: ['@anthropic-ai/claude-code'],
      banner: { js: ESM_REQUIRE_SHIM },
      write: false,
      logLevel: 'error',
    });
    for (const file of result.outputFiles) files.set(file.path.slice(NOMINAL_OUTDIR.length + 1), file.contents);
  }
  // Content-addressed, so concurrent synths (parallel tests) never write into each other's folder.
  const hash = createHash('sha256');
  for (const [name, contents] of [...files].sort(([a], [b]) => a.localeCompare(b))) hash.update(name).update(contents);
  const dir = `${NOMINAL_OUTDIR}-${hash.digest('hex').slice(0, 16)}`;
  if (existsSync(dir)) return dir;
  const partial = `${dir}.${process.pid}.tmp`;
  mkdirSync(partial, { recursive: true });
  for (const [name, contents] of files) writeFileSync(join(partial, name), contents);
  try {
    renameSync(partial, dir);
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(dir)) throw err; // another synth staged the same content first
  }
  return dir;
}
