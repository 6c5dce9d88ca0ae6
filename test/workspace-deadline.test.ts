import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { HttpsGitRemote } from './support/https-git-remote.js';
import { git, remoteRepository } from './support/git-remote.js';

// A workspace's clone comes out of the session's time, and its push keeps a reserve: a slow
// clone shortens Claude's run, so the session still closes TIMED_OUT with its tokens instead of
// running into the platform's own limit (on Lambda, Sandbox.Timedout: nothing recorded at all).

const remote = await new HttpsGitRemote().start();
process.env.GIT_SSL_CAINFO = remote.caFile;
afterAll(async () => {
  delete process.env.GIT_SSL_CAINFO;
  await remote.close();
});

let env: TestRuntime;
useTestRuntime((started) => (env = started));

describe('a workspace session\'s deadline', () => {
  it('takes a slow clone out of Claude\'s time, keeps the push\'s reserve, and closes TIMED_OUT with what Claude spent', async () => {
    // Prepare: a host that answers each request after 1.5 s (a clone makes two or three), a Claude that stalls mid-reply
    const repo = remote.repository('acme', 'slow');
    remote.delayMs = 1_500;
    env.anthropic.respondByDefault({ kind: 'stall', usage: { input_tokens: 321, output_tokens: 1 } });
    const started = Date.now();
    const running = env.runtime.run({ prompt: 'Refactor it', projectId: 'deadline', timeoutSeconds: 12, workspace: { repo } });
    for (let i = 0; i < 400 && env.anthropic.messageRequests.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const cloneMs = Date.now() - started;
    remote.delayMs = 0;
    // Act
    const { session } = await running;
    // Assess: Claude was stopped at what the clone and the push's reserve (3 s) left of the 12 s
    expect(cloneMs).toBeGreaterThan(2_000);
    const limit = Number(/ran past its (\d+) s limit/.exec(session!.cause ?? '')?.[1]);
    expect(session).toMatchObject({ status: 'TIMED_OUT', error: 'ClaudeTimeoutError', usage: { inputTokens: 321 } });
    // (cloneMs runs until the model's first call, so it also holds the CLI's own start, up to ~2 s here)
    expect(limit).toBeLessThan(12 - 3);
    expect(limit).toBeLessThanOrEqual(Math.ceil((12_000 - 3_000 - cloneMs) / 1000) + 2);
  });

  it('stops a clone that would take the whole limit, its https helper included: WorkspaceCloneError before Claude runs, nothing spent', async () => {
    // Prepare: a host that stalls each request for 30 s (git's https helper waits on it)
    const repo = remote.repository('acme', 'slower');
    remote.delayMs = 30_000;
    try {
      const started = Date.now();
      const { outcome, session } = await env.runtime.run({ prompt: 'Refactor it', projectId: 'deadline', timeoutSeconds: 4, workspace: { repo } });
      // The clone's whole process group was stopped at its deadline, not when the host answered
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(outcome).toMatchObject({ status: 'FAILED', error: 'WorkspaceCloneError' });
      expect(session).toMatchObject({ status: 'FAILED', error: 'WorkspaceCloneError', cause: expect.stringMatching(/time for its clone ran out/) });
      expect(env.anthropic.messageRequests).toEqual([]);
    } finally {
      remote.delayMs = 0;
    }
  }, 60_000);
});

describe('a workspace session\'s clone size', () => {
  let limited: TestRuntime;
  useTestRuntime((started) => (limited = started), { maxCloneMiB: 2 });

  /** A bare file:// remote whose main holds a file of `mib` MiB of random bytes (git cannot compress them). */
  function remoteWithBlob(mib: number): string {
    const root = mkdtempSync(join(tmpdir(), 'large-remote-'));
    const seed = join(root, 'seed');
    git(root, 'init', '--quiet', '--initial-branch=main', seed);
    writeFileSync(join(seed, 'README.md'), '# Assets\n');
    writeFileSync(join(seed, 'asset.bin'), randomBytes(mib * 1024 * 1024));
    git(seed, 'add', '--all');
    git(seed, 'commit', '--quiet', '-m', 'assets');
    git(root, 'clone', '--quiet', '--bare', seed, join(root, 'remote.git'));
    return `file://${join(root, 'remote.git')}`;
  }

  it('fails a clone past the deployment\'s maxCloneMiB with WorkspaceCloneError naming the limit, before Claude runs; a smaller one runs', async () => {
    // Prepare: 5 MiB of incompressible bytes (pack and checkout hold it twice) against a 2 MiB limit
    const large = remoteWithBlob(5);
    const small = `file://${remoteRepository().bare}`;
    limited.anthropic.respondWith({ kind: 'text', text: 'looked at it', usage: { input_tokens: 4, output_tokens: 1 } });
    // Act
    const refused = await limited.runtime.run({ prompt: 'Optimise the asset', projectId: 'clone-size', workspace: { repo: large } });
    const ran = await limited.runtime.run({ prompt: 'Read the README', projectId: 'clone-size', workspace: { repo: small } });
    // Assess
    expect(refused.session).toMatchObject({
      status: 'FAILED', error: 'WorkspaceCloneError', cause: expect.stringMatching(/^could not clone file:\/\/.*the clone holds \d+\.\d MiB, over the deployment's maxCloneMiB \(2 MiB\)/),
    });
    expect(ran.session).toMatchObject({ status: 'COMPLETED', result: 'looked at it' });
    expect(limited.anthropic.messageRequests).toHaveLength(1);
  });
});
