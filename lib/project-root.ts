import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository root: where cdk/, lib/, functions/ and package-lock.json are. Found by
 * walking up, since this module runs from lib/ and from the CLI's bundle (dist/cli/<key>/).
 */
export const PROJECT_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

function findRoot(from: string): string {
  for (let dir = from; dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'package-lock.json'))) return `${dir}/`;
  }
  return fileURLToPath(new URL('..', import.meta.url));
}
