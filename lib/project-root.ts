import { fileURLToPath } from 'node:url';

/** The repository root: where cdk/, lib/, functions/ and package-lock.json are. */
export const PROJECT_ROOT = fileURLToPath(new URL('..', import.meta.url));
