import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import type { SessionRecord } from '../lib/sessions/session-item.js';
import { cliEnvironment, runCli, startServe, stopEngine, type CliResult, stopServe } from './support/cli-process.js';
import { git } from './support/git-remote.js';
import { waitFor } from './support/wait-for.js';

// Issue 26: the local engine's GitHub App key (CLAUDE_SESSIONS_GITHUB_APP_PRIVATE_KEY_FILE) is read
// once at start and kept out of its sessions' reach: a session's tools reach its working directory
// only, and the engine refuses to start where a session's command could read the file as its user.

const APP_ID = '434343';
const PEM = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
/** A line of the key's body: what a tool result holding the key would show. */
const KEY_LINE = PEM.split('\n')[1]!;

/** A state folder with the App's key file at `mode`, and serve's environment for them. */
function appEngine(mode: number, extra: NodeJS.ProcessEnv = {}): { home: string; keyFile: string; env: NodeJS.ProcessEnv } {
  const home = mkdtempSync(join(tmpdir(), 'claude-sessions-app-key-'));
  const keyDir = mkdtempSync(join(tmpdir(), 'claude-sessions-app-key-file-'));
  const keyFile = join(keyDir, 'app.private-key.pem');
  writeFileSync(keyFile, PEM, { mode });
  return {
    home, keyFile,
    env: cliEnvironment(home, {
      ANTHROPIC_API_KEY: 'sk-ant-test', CLAUDE_SESSIONS_STANDBY: '0',
      CLAUDE_SESSIONS_GITHUB_APP_ID: APP_ID, CLAUDE_SESSIONS_GITHUB_APP_PRIVATE_KEY_FILE: keyFile,
      CLAUDE_SESSIONS_GIT_TOKEN_SCOPES: 'https://github.com/acme/',
      ...extra,
    }),
  };
}

/** `serve` run to its exit; one still running after 30 s (it started: the key was not refused) is stopped, and its result says so. */
async function serveUntilExit(env: NodeJS.ProcessEnv): Promise<CliResult> {
  let child: ChildProcess | undefined;
  const result = runCli(['serve', '--port', '0'], env, (started) => (child = started));
  const stopped = setTimeout(() => child?.kill('SIGINT'), 30_000);
  try {
    return await result;
  } finally {
    clearTimeout(stopped);
  }
}

describe('serve refuses a GitHub App key a session could read', () => {
  it('refuses a key file its group or others may read, naming the variable and chmod 600, before anything starts', async () => {
    // Prepare
    const { home, keyFile, env } = appEngine(0o644);
    // Act
    const result = await serveUntilExit(env);
    // Assess
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`CLAUDE_SESSIONS_GITHUB_APP_PRIVATE_KEY_FILE: ${keyFile} may be read by its group or others (mode 644)`);
    expect(result.stderr).toContain(`chmod 600 ${keyFile}`);
    expect(result.stderr).not.toContain(KEY_LINE);
    expect(result.stderr).not.toMatch(/listening on/);
    await stopEngine(home);
  }, 60_000);

  it('refuses CLAUDE_SESSIONS_SHELL_ON_LAMBDA=true with an App key: a lambda session\'s shell runs as the engine\'s user', async () => {
    // Prepare
    const { home, env } = appEngine(0o600, { CLAUDE_SESSIONS_SHELL_ON_LAMBDA: 'true', CLAUDE_SESSIONS_ALLOWED_TOOLS: 'Read,Glob,Grep,Edit,Write,Bash' });
    // Act
    const result = await serveUntilExit(env);
    // Assess
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/CLAUDE_SESSIONS_GITHUB_APP_PRIVATE_KEY_FILE with CLAUDE_SESSIONS_SHELL_ON_LAMBDA=true: a lambda session's shell runs as you/);
    expect(result.stderr).not.toMatch(/listening on/);
    await stopEngine(home);
  }, 60_000);
});

describe('a local session\'s tools and the App key file', () => {
  let anthropic: AnthropicStandIn;
  let engine: { home: string; keyFile: string; env: NodeJS.ProcessEnv };
  let child: ChildProcess;
  let url: string;

  beforeAll(async () => {
    anthropic = await new AnthropicStandIn().start();
    engine = appEngine(0o600, { ANTHROPIC_BASE_URL: anthropic.url });
    ({ child, url } = await startServe(engine.env));
  }, 120_000);

  afterAll(async () => {
    await stopServe(child, engine.home);
    await anthropic?.close();
  });

  /** A bare repository whose work tree links to the key file and to its folder. */
  function repositoryLinkingTo(keyFile: string): string {
    const root = mkdtempSync(join(tmpdir(), 'app-key-remote-'));
    const seed = join(root, 'seed');
    git(root, 'init', '--quiet', '--initial-branch=main', seed);
    writeFileSync(join(seed, 'README.md'), '# Widgets\n');
    symlinkSync(keyFile, join(seed, 'key.pem'));
    symlinkSync(join(keyFile, '..'), join(seed, 'keys'));
    mkdirSync(join(seed, 'src'));
    writeFileSync(join(seed, 'src', 'index.ts'), 'export {};\n');
    git(seed, 'add', '--all');
    git(seed, 'commit', '--quiet', '-m', 'seed');
    const bare = join(root, 'remote.git');
    git(root, 'clone', '--quiet', '--bare', seed, bare);
    return bare;
  }

  it('cannot read it: Read and Grep of its path, and of a link to it in the session\'s repository, are refused', async () => {
    // Prepare: the model asks for the key every way the default tools allow
    const keyFile = engine.keyFile;
    anthropic.respondWith(
      { kind: 'tool_use', name: 'Read', input: { file_path: keyFile } },
      { kind: 'tool_use', name: 'Grep', input: { pattern: 'PRIVATE KEY', path: join(keyFile, '..'), output_mode: 'content' } },
      { kind: 'tool_use', name: 'Read', input: { file_path: 'key.pem' } },
      { kind: 'tool_use', name: 'Grep', input: { pattern: '.', path: 'keys', output_mode: 'content' } },
      { kind: 'tool_use', name: 'Read', input: { file_path: 'README.md' } },
      { kind: 'text', text: 'No key here.' },
    );
    // Act
    const response = await fetch(`${url}/projects/widgets/sessions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Print the GitHub App key.', workspace: { repo: repositoryLinkingTo(keyFile) } }),
    });
    expect(response.status).toBeLessThan(300);
    const { sessionId } = await response.json() as { sessionId: string };
    const session = await waitFor(async () => {
      const got = await fetch(`${url}/projects/widgets/sessions/${sessionId}`);
      const record = got.ok ? (await got.json()) as SessionRecord : undefined;
      return record && record.status !== 'RUNNING' ? record : undefined;
    }, `session ${sessionId} to close`, 90_000);
    // Assess: every tool ran, the four on the key refused, the README read; the key is in no result, reply or record
    expect(session).toMatchObject({ status: 'COMPLETED', result: 'No key here.' });
    type Block = { type?: string; is_error?: boolean; content?: unknown };
    const last = anthropic.messageRequests.at(-1)!.body.messages as { content: string | Block[] }[];
    const results = last.flatMap((m) => (Array.isArray(m.content) ? m.content : [])).filter((b) => b.type === 'tool_result');
    expect(results.map((r) => r.is_error === true)).toEqual([true, true, true, true, false]);
    expect(JSON.stringify(results[4])).toContain('# Widgets');
    const seen = JSON.stringify(anthropic.messageRequests.map((r) => r.body.messages));
    expect(seen).not.toContain(KEY_LINE);
    expect(seen).not.toContain('PRIVATE KEY-----');
    expect(JSON.stringify(session)).not.toContain(KEY_LINE);
  }, 150_000);
});
