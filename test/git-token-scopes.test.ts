import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cloneWorkspace } from '../lib/claude/workspace.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { HttpsGitRemote } from './support/https-git-remote.js';
import { git } from './support/git-remote.js';

// The deployment's git token goes only to the URL prefixes it lists (GIT_TOKEN_SCOPES): a
// session names its repository, so without them the token would go to any https host it named.

const TOKEN = 'ghp_scoped_token_value';
const BASIC = `Basic ${Buffer.from(`x-access-token:${TOKEN}`).toString('base64')}`;

const remote = await new HttpsGitRemote().start();
process.env.GIT_SSL_CAINFO = remote.caFile; // git trusts the remote's certificate, as a runner would a private CA
const acme = `https://127.0.0.1:${remote.port}/acme/`;
afterAll(async () => {
  delete process.env.GIT_SSL_CAINFO;
  await remote.close();
});

let env: TestRuntime;
useTestRuntime((started) => (env = started), { gitToken: async () => TOKEN, gitTokenScopes: [acme] });

function cloneInto() {
  const home = mkdtempSync(join(tmpdir(), 'token-scope-'));
  return { home, work: join(home, 'work') };
}

/** The Authorization headers of the requests for one repository's path. */
function authorizationsFor(repo: string): (string | undefined)[] {
  const { host, pathname } = new URL(repo);
  return remote.requests.filter((r) => r.host === host && r.path.startsWith(pathname)).map((r) => r.authorization);
}

describe('the git token', () => {
  it('is sent to a repository under a scope the deployment lists', async () => {
    const repo = remote.repository('acme', 'widgets');
    const { home, work } = cloneInto();
    await cloneWorkspace({ repo }, work, home, { token: TOKEN, tokenScopes: [acme] });
    expect(authorizationsFor(repo).length).toBeGreaterThan(0);
    expect(new Set(authorizationsFor(repo))).toEqual(new Set([BASIC]));
  });

  it('is not sent to another owner whose name starts the same, to another host name, or with no scope listed: those clone anonymously', async () => {
    const lookalike = remote.repository('acme-evil', 'widgets');
    const otherHost = remote.repository('acme', 'gadgets', 'localhost');
    const unscoped = remote.repository('acme', 'gizmos');
    for (const [repo, tokenScopes] of [[lookalike, [acme]], [otherHost, [acme]], [unscoped, undefined]] as const) {
      const { home, work } = cloneInto();
      await cloneWorkspace({ repo }, work, home, { token: TOKEN, tokenScopes });
      expect(authorizationsFor(repo).length).toBeGreaterThan(0);
      expect(authorizationsFor(repo)).toEqual(authorizationsFor(repo).map(() => undefined));
    }
  });

  it('goes as a header only, and stays out of the error of a clone that fails', async () => {
    const missing = remote.url('acme', 'missing');
    const { home, work } = cloneInto();
    await expect(cloneWorkspace({ repo: missing }, work, home, { token: TOKEN, tokenScopes: [acme] }))
      .rejects.toMatchObject({ name: 'WorkspaceCloneError', message: expect.not.stringContaining(TOKEN) });
    expect(authorizationsFor(missing)).toContain(BASIC);
    expect(remote.requests.map((r) => r.path).join(' ')).not.toContain(TOKEN);
  });

  it('does not follow a redirect out of its scope', async () => {
    const target = remote.repository('elsewhere', 'widgets', 'localhost');
    remote.redirects.set('/acme/moved.git', target);
    const moved = remote.url('acme', 'moved');
    const { home, work } = cloneInto();
    await expect(cloneWorkspace({ repo: moved }, work, home, { token: TOKEN, tokenScopes: [acme] })).rejects.toMatchObject({ name: 'WorkspaceCloneError' });
    expect(authorizationsFor(moved)).toContain(BASIC);
    expect(authorizationsFor(target)).toEqual([]);
  });

  it('goes with a session\'s clone and push in scope, not out of it, and reaches neither the record nor Claude', async () => {
    // Prepare: one repository in scope, one of a lookalike owner; Claude writes a file in each
    const inScope = remote.repository('acme', 'service');
    const outOfScope = remote.repository('acme-evil', 'service');
    for (const repo of [inScope, outOfScope]) {
      env.anthropic.respondWith(
        { kind: 'tool_use', name: 'Write', input: { file_path: 'NOTES.md', content: 'notes\n' } },
        { kind: 'text', text: 'Wrote notes' },
      );
      // Act
      const { session } = await env.runtime.run({ prompt: 'Write notes', projectId: 'token-scopes', workspace: { repo } });
      // Assess: the branch landed either way (the server takes anonymous pushes); the token went only in scope
      expect(session).toMatchObject({ status: 'COMPLETED', workspace: { filesChanged: 1 } });
      expect(git(remote.barePath(repo), 'show', `${session!.workspace!.branch}:NOTES.md`)).toBe('notes');
      expect(JSON.stringify(session)).not.toContain(TOKEN);
    }
    expect(authorizationsFor(inScope).length).toBeGreaterThan(1);
    expect(new Set(authorizationsFor(inScope))).toEqual(new Set([BASIC]));
    expect(authorizationsFor(outOfScope).filter(Boolean)).toEqual([]);
    expect(JSON.stringify(env.anthropic.requests.map((r) => r.body))).not.toContain(TOKEN);
  });
});
