// @ts-check
// The CLI as one esbuild bundle of lib/ (dist/cli/<key>/), built on first use and again
// whenever a source's content changes. Loading the TypeScript through tsx costs ~0.4 s at every
// start, which a cold `claude-sessions run` would pay on top of Claude's own start.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, utimesSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SOURCE_DIRS = ['lib', 'functions', 'cdk'];
const BUNDLES = join(ROOT, 'dist', 'cli');
// A bundle unused this long goes; a running `serve` may still load chunks from its own lazily.
const UNUSED_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * The module URL of the CLI's entry point: from the bundle, else (no esbuild, read-only checkout) the sources through tsx.
 * @returns {Promise<{ main: string }>}
 */
export async function cliEntries() {
  try {
    const dir = join(BUNDLES, sourcesKey());
    if (existsSync(join(dir, 'main.js'))) utimesSync(dir, new Date(), new Date()); // in use: kept by the pruning below
    else await build(dir);
    return { main: pathToFileURL(join(dir, 'main.js')).href };
  } catch (err) {
    process.stderr.write(`note: running from the TypeScript sources (${err instanceof Error ? err.message : err})\n`);
    const { register } = await import('tsx/esm/api');
    register();
    return { main: new URL('../lib/cli/main.ts', import.meta.url).href };
  }
}

/**
 * Every source's path and content, and those of the package and lock files, tsconfig.json and
 * this file (how the bundle is built), in ~5 ms: content, not mtime, so a checkout or a copy
 * that keeps times never runs a bundle of other sources.
 */
function sourcesKey() {
  const hash = createHash('sha256');
  const files = SOURCE_DIRS.flatMap((d) => readdirSync(join(ROOT, d), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name)));
  // A package without some of them (no lock file when installed from the registry) still gets a key.
  const buildInputs = ['package.json', 'package-lock.json', 'tsconfig.json'].map((f) => join(ROOT, f)).filter((f) => existsSync(f));
  for (const file of [...files.sort(), ...buildInputs, fileURLToPath(import.meta.url)]) {
    const content = readFileSync(file);
    hash.update(`${relative(ROOT, file)}\0${content.byteLength}\0`);
    hash.update(content);
  }
  return hash.digest('hex').slice(0, 16);
}

/**
 * aws-local-stepfunctions imports asl-validator (ajv) and the Lambda client when it loads
 * (~0.13 s), and the local runtime uses neither: the ASL is validated once at synthesis and
 * every Task state is routed in-process. So it is bundled, and those two imports resolve
 * to stand-ins that load the real package on first use. Every other package stays external.
 */
/** @type {Record<string, string>} */
const LAZY = {
  'asl-validator': `
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    export default (...args) => require('asl-validator')(...args);`,
  '@aws-sdk/client-lambda': `
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    const real = () => require('@aws-sdk/client-lambda');
    export class LambdaClient { constructor(...args) { return new (real().LambdaClient)(...args); } }
    export class InvokeCommand { constructor(...args) { return new (real().InvokeCommand)(...args); } }`,
};
const BUNDLED = 'aws-local-stepfunctions';
/** @type {import('esbuild').Plugin} */
const packagesExternalButLazy = {
  name: 'packages-external-but-lazy',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path === BUNDLED) return undefined; // bundled: esbuild resolves it
      if (args.importer.includes(`/node_modules/${BUNDLED}/`) && LAZY[args.path]) return { path: args.path, namespace: 'lazy' };
      return { path: args.path, external: true };
    });
    build.onLoad({ filter: /.*/, namespace: 'lazy' }, (args) => ({ contents: LAZY[args.path], loader: 'js', resolveDir: ROOT }));
  },
};

/** @param {string} dir */
async function build(dir) {
  const { build: esbuild } = await import('esbuild');
  const partial = `${dir}.${process.pid}.tmp`;
  await esbuild({
    entryPoints: { main: join(ROOT, 'lib', 'cli', 'main.ts') },
    outdir: partial,
    bundle: true,
    // Each dynamic import stays its own chunk, with its packages loaded only when it is.
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    plugins: [packagesExternalButLazy],
    logLevel: 'silent',
  });
  try {
    renameSync(partial, dir); // atomic: a concurrent start sees all of it or none
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(join(dir, 'main.js'))) throw err; // else another process built the same one first
  }
  // Bundles of older sources go once no process has started from them for a week.
  for (const name of readdirSync(BUNDLES)) {
    const path = join(BUNDLES, name);
    if (path !== dir && Date.now() - statSync(path).mtimeMs > UNUSED_MS) rmSync(path, { recursive: true, force: true });
  }
}
