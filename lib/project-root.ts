import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root: where cdk/, lib/, functions/ and package.json are. Found by walking up to
 * this package's own package.json, since this module runs from lib/ and from the CLI's bundle
 * (dist/cli/<key>/), in a clone and installed in another project's node_modules, whose own
 * package.json and lockfile are further up.
 */
export const PROJECT_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

/**
 * The lockfile the CDK's functions are bundled against: a clone's package-lock.json. npm never
 * publishes a lockfile, so an installed package offers its package.json instead (the local
 * runtime synthesizes without bundling; a deploy from an install bundles with esbuild all the same).
 */
export const PROJECT_LOCK_FILE = [join(PROJECT_ROOT, 'package-lock.json'), join(PROJECT_ROOT, 'package.json')].find((f) => existsSync(f))!;

function findRoot(from: string): string {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) {
    if (nameOf(join(dir, 'package.json')) === 'claude-sessions') return `${dir}/`;
  }
  return fileURLToPath(new URL('..', import.meta.url));
}

function nameOf(packageJson: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(packageJson, 'utf8')) as { name?: string }).name;
  } catch {
    return undefined;
  }
}
