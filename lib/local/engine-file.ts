import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

// How a command finds the local engine (lib/local/local-engine.ts) without loading it.

/** In the state folder while an engine serves it: how a command finds it. */
export const ENGINE_FILE = 'engine.json';
/** Where a background engine writes what it prints. */
export const ENGINE_LOG = 'engine.log';

export interface EngineFile {
  pid: number;
  url: string;
  /** null: `serve`, which never idles out. */
  idleExitSeconds: number | null;
  startedAt: string;
}

export async function writeEngineFile(home: string, file: EngineFile): Promise<void> {
  const path = join(home, ENGINE_FILE);
  const partial = `${path}.${process.pid}.tmp`;
  await writeFile(partial, JSON.stringify(file));
  await rename(partial, path); // atomic: a client reads all of it or the previous engine's
}

/** Only this engine's file: a later engine's is not ours to remove. */
export async function removeEngineFile(home: string): Promise<void> {
  const path = join(home, ENGINE_FILE);
  const current = await readEngineFile(home);
  if (current?.pid === process.pid) await rm(path, { force: true });
}

export async function readEngineFile(home: string): Promise<EngineFile | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(home, ENGINE_FILE), 'utf8')) as EngineFile;
    return typeof parsed.pid === 'number' && typeof parsed.url === 'string' ? parsed : undefined;
  } catch {
    return undefined;
  }
}
