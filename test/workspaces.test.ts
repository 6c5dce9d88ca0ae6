import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { cloneWorkspace, commitAndPush } from '../lib/claude/workspace.js';
import { parseExecutionInput } from '../lib/sessions/execution-input.js';
import { assertCanStart } from '../lib/sessions/start-checks.js';
import { assertBranchAllowed, sessionPolicyFromEnv } from '../lib/sessions/session-creation.js';
import { App } from 'aws-cdk-lib';
import { ClaudeSessionsStack } from '../cdk/claude-sessions-stack.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';
import { useTestRuntime, type TestRuntime } from './support/runtime.js';
import { git, remoteRepository } from './support/git-remote.js';

let env: TestRuntime;
useTestRuntime((started) => (env = started));

/** The tool result the CLI sent back for a tool call (the last user message's content). */
function toolResult(index: number): string {
  const messages = env.anthropic.messageRequests[index]!.body.messages as { role: string; content: unknown }[];
  return JSON.stringify(messages.at(-1)!.content);
}

describe('a session with a workspace', () => {
  it('reads the repository, writes a file, and hands back a branch with it; main is untouched', async () => {
    // Prepare: Claude reads the README, writes CONTRIBUTING.md, then answers
    const { bare, main } = remoteRepository();
    env.anthropic.respondWith(
      { kind: 'tool_use', name: 'Read', input: { file_path: 'README.md' } },
      { kind: 'tool_use', name: 'Write', input: { file_path: 'CONTRIBUTING.md', content: '# Contributing\nRun `make widgets` first.\n' } },
      { kind: 'text', text: 'Added CONTRIBUTING.md' },
    );
    const sessionId = uuidv4();
    // Act
    const { session } = await env.runtime.run({ prompt: 'Add a CONTRIBUTING.md\nKeep it short.', projectId: 'ws', sessionId, workspace: { repo: bare } });
    // Assess: the README's text came back as the Read result; the branch holds the new file
    expect(toolResult(1)).toContain('The widget service');
    expect(session).toMatchObject({
      status: 'COMPLETED',
      workspace: { repo: bare, ref: null, baseCommit: main, branch: `claude-sessions/${sessionId}`, filesChanged: 1, insertions: 2, deletions: 0 },
    });
    const branch = `claude-sessions/${sessionId}`;
    expect(git(bare, 'rev-parse', branch)).toBe(session!.workspace!.commit);
    expect(git(bare, 'show', `${branch}:CONTRIBUTING.md`)).toBe('# Contributing\nRun `make widgets` first.');
    expect(git(bare, 'log', '-1', '--format=%an%n%s', branch)).toBe(`claude-sessions\nclaude-sessions ${sessionId}: Add a CONTRIBUTING.md`);
    expect(git(bare, 'rev-parse', 'main')).toBe(main);
  });

  it('pushes with the clone\'s git config and runs no program of the session\'s, whatever it left in .git, HOME or a nested repository', async () => {
    // Prepare: a clone, then what a session with a shell could leave behind (Claude Code's file tools
    // refuse .git/config as "a sensitive file"; its Bash, under a permissive mode, does not)
    const { bare, main } = remoteRepository();
    const elsewhere = remoteRepository();
    const home = mkdtempSync(join(tmpdir(), 'ws-git-dir-'));
    const work = join(home, 'work');
    const ran = join(home, 'ran');
    const cloned = await cloneWorkspace({ repo: bare }, work, home, {});
    const program = (name: string) => `#!/bin/sh\necho ${name} >> ${ran}\n`;
    // .git/config: a push URL elsewhere, a URL rewrite, an fsmonitor program
    git(work, 'config', 'remote.origin.pushurl', elsewhere.bare);
    git(work, 'config', 'core.fsmonitor', join(home, 'fsmonitor'));
    writeFileSync(join(home, 'fsmonitor'), program('fsmonitor'), { mode: 0o755 });
    // hooks, those of the index included
    for (const hook of ['pre-push', 'post-commit', 'post-index-change', 'pre-commit', 'reference-transaction']) {
      writeFileSync(join(work, '.git', 'hooks', hook), program(hook), { mode: 0o755 });
    }
    // a global config in the HOME git runs with (the CLI's own)
    writeFileSync(join(home, '.gitconfig'), `[url "${elsewhere.bare}"]\n\tinsteadOf = ${bare}\n[remote "origin"]\n\tpushurl = ${elsewhere.bare}\n`);
    // commondir: the git directory's config and refs read from a copy the session controls
    git(home, 'clone', '--quiet', '--bare', bare, join(home, 'other.git'));
    git(join(home, 'other.git'), 'config', 'remote.origin.pushurl', elsewhere.bare);
    writeFileSync(join(work, '.git', 'commondir'), join(home, 'other.git'));
    // a nested repository with its own fsmonitor program
    git(work, 'init', '--quiet', 'nested');
    writeFileSync(join(work, 'nested', 'inner.txt'), 'inner\n');
    git(join(work, 'nested'), 'add', 'inner.txt');
    git(join(work, 'nested'), 'commit', '--quiet', '-m', 'inner');
    git(join(work, 'nested'), 'config', 'core.fsmonitor', join(home, 'fsmonitor'));
    writeFileSync(join(work, 'NOTES.md'), 'notes\n');
    // Act
    const pushed = await commitAndPush({ repo: bare }, { sessionId: 's', promptFirstLine: 'Write notes', branch: 'notes' }, work, home, cloned, {});
    // Assess: the branch reached the cloned remote only, and no program of the session's ran
    expect(pushed.error).toBeUndefined();
    expect(git(bare, 'show', 'notes:NOTES.md')).toBe('notes');
    expect(git(bare, 'rev-parse', 'main')).toBe(main);
    expect(git(elsewhere.bare, 'branch', '--list', '--format=%(refname:short)')).toBe('main');
    expect(existsSync(ran) ? readFileSync(ran, 'utf8') : '').toBe('');
  });

  it('commits and pushes the change beside a repository Claude made with no commit yet, which cannot be recorded', async () => {
    const { bare } = remoteRepository();
    const home = mkdtempSync(join(tmpdir(), 'ws-nested-'));
    const work = join(home, 'work');
    const cloned = await cloneWorkspace({ repo: bare }, work, home, {});
    git(work, 'init', '--quiet', 'scaffold');
    writeFileSync(join(work, 'scaffold', 'README.md'), 'new\n');
    writeFileSync(join(work, 'NOTES.md'), 'notes\n');
    const pushed = await commitAndPush({ repo: bare }, { sessionId: 's', promptFirstLine: 'x', branch: 'notes' }, work, home, cloned, {});
    expect(pushed.error).toBeUndefined();
    expect(pushed.record).toMatchObject({ branch: 'notes', filesChanged: 1 });
    expect(git(bare, 'show', 'notes:NOTES.md')).toBe('notes');
  });

  it('refuses to commit when .git is no longer the clone\'s directory, and pushes nothing', async () => {
    const { bare } = remoteRepository();
    const elsewhere = remoteRepository();
    const home = mkdtempSync(join(tmpdir(), 'ws-git-file-'));
    const work = join(home, 'work');
    const cloned = await cloneWorkspace({ repo: bare }, work, home, {});
    git(home, 'clone', '--quiet', elsewhere.bare, join(home, 'decoy'));
    rmSync(join(work, '.git'), { recursive: true });
    writeFileSync(join(work, '.git'), `gitdir: ${join(home, 'decoy', '.git')}\n`);
    writeFileSync(join(work, 'NOTES.md'), 'notes\n');
    await expect(commitAndPush({ repo: bare }, { sessionId: 's', promptFirstLine: 'x', branch: 'notes' }, work, home, cloned, {})).rejects.toThrow(/no longer the clone's directory/);
    expect(git(elsewhere.bare, 'branch', '--list', '--format=%(refname:short)')).toBe('main');
    expect(git(bare, 'branch', '--list', '--format=%(refname:short)')).toBe('main');
  });

  it('pushes nothing and records no branch when Claude changed nothing', async () => {
    const { bare, main } = remoteRepository();
    env.anthropic.respondWith({ kind: 'text', text: 'Nothing to do' });
    const { session } = await env.runtime.run({ prompt: 'Look around', projectId: 'ws', workspace: { repo: `file://${bare}`, branch: 'review/look' } });
    expect(session).toMatchObject({ status: 'COMPLETED', workspace: { baseCommit: main, branch: null, commit: null, filesChanged: 0 } });
    expect(git(bare, 'branch', '--list', '--format=%(refname:short)')).toBe('main');
  });

  it('fails WorkspaceCloneError before Claude runs when the repository does not exist, spending nothing', async () => {
    const { session, outcome } = await env.runtime.run({ prompt: 'hi', projectId: 'ws-missing', workspace: { repo: '/nonexistent/repo.git' } });
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'WorkspaceCloneError' });
    expect(session).toMatchObject({ status: 'FAILED', error: 'WorkspaceCloneError', cause: expect.stringMatching(/could not clone \/nonexistent\/repo\.git/), usage: { inputTokens: 0 } });
    // git's own reason, not the advice it prints after it
    expect(session!.cause).toContain("fatal: '/nonexistent/repo.git' does not appear to be a git repository");
    expect(env.anthropic.messageRequests).toEqual([]);
    expect(await env.runtime.repository.listRunning('ws-missing')).toEqual([]);
  });

  it('fails WorkspaceCloneError before Claude runs on an empty repository, saying it has no commit', async () => {
    const empty = join(mkdtempSync(join(tmpdir(), 'ws-empty-')), 'empty.git');
    git(tmpdir(), 'init', '--quiet', '--bare', empty);
    const { session, outcome } = await env.runtime.run({ prompt: 'Scaffold it', projectId: 'ws-empty', workspace: { repo: empty } });
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'WorkspaceCloneError' });
    expect(session).toMatchObject({ status: 'FAILED', cause: expect.stringContaining(`could not clone ${empty}: it has no commit yet`) });
    expect(env.anthropic.messageRequests).toEqual([]);
  });

  it('fails WorkspacePushError when the remote refuses the push, keeping the usage and the change as a patch', async () => {
    // Prepare: a remote whose pre-receive hook refuses every push
    const { bare } = remoteRepository();
    writeFileSync(join(bare, 'hooks', 'pre-receive'), '#!/bin/sh\necho "read-only mirror" >&2\nexit 1\n', { mode: 0o755 });
    env.anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'NOTES.md', content: 'notes\n' }, usage: { input_tokens: 100, output_tokens: 10 } },
      { kind: 'text', text: 'Wrote notes', usage: { input_tokens: 50, output_tokens: 5 } },
    );
    // Act
    const { session } = await env.runtime.run({ prompt: 'Write notes', projectId: 'ws-push', workspace: { repo: bare } });
    // Assess
    expect(session).toMatchObject({ status: 'FAILED', error: 'WorkspacePushError', usage: { inputTokens: 150, outputTokens: 15 }, workspace: { filesChanged: 1 } });
    const patchFile = /kept as a patch at (\S+\.patch)/.exec(session!.cause!)?.[1];
    expect(patchFile && existsSync(patchFile)).toBe(true);
    expect(readFileSync(patchFile!, 'utf8')).toMatch(/\+\+\+ b\/NOTES\.md[\s\S]*\+notes/);
  });

  it('refuses a workspace input that names credentials or a bad ref, naming the field', () => {
    expect(() => parseExecutionInput({ prompt: 'p', projectId: 'p', workspace: { repo: 'https://user:tok@example.com/r.git' } })).toThrow(/workspace\.repo must be an https URL without credentials/);
    expect(() => parseExecutionInput({ prompt: 'p', projectId: 'p', workspace: { repo: 'https://example.com/r.git', ref: '--upload-pack=x' } })).toThrow(/workspace\.ref must be a branch, tag or commit name/);
    expect(() => parseExecutionInput({ prompt: 'p', projectId: 'p', workspace: { repo: 'https://example.com/r.git', ref: 'v1.2', branch: 'claude/x' } })).not.toThrow();
  });

  it('refuses a branch the deployment protects (main and master by default, its globs, or none), naming the field', async () => {
    const ws = (branch: string) => ({ repo: 'https://example.com/r.git', branch });
    expect(() => assertBranchAllowed(ws('main'), {})).toThrow(/workspace\.branch must not be a branch this deployment protects \(main, master; "main" matches main\)/);
    expect(() => assertBranchAllowed(ws('master'), {})).toThrow(/workspace\.branch/);
    expect(() => assertBranchAllowed(ws('claude/x'), {})).not.toThrow();
    expect(() => assertBranchAllowed(ws('release/2026-11'), { protectedBranches: ['main', 'release/*'] })).toThrow(/"release\/2026-11" matches release\/\*/);
    // `*` crosses `/`, as IAM's StringLike does on CodeCommit: the two checks agree
    expect(() => assertBranchAllowed(ws('release/2026/11'), { protectedBranches: ['release/*'] })).toThrow(/workspace\.branch/);
    expect(() => assertBranchAllowed(ws('releases'), { protectedBranches: ['release/*'] })).not.toThrow();
    expect(() => sessionPolicyFromEnv({ PROTECTED_BRANCHES: 'main,!main' })).toThrow(/PROTECTED_BRANCHES must be branch names or patterns of them \(release\/\*\), not "!main"/);
    expect(() => assertBranchAllowed(ws('main'), { protectedBranches: [] })).not.toThrow();
    expect(sessionPolicyFromEnv({ PROTECTED_BRANCHES: 'main, release/*' }).protectedBranches).toEqual(['main', 'release/*']);
    expect(sessionPolicyFromEnv({ PROTECTED_BRANCHES: '' }).protectedBranches).toEqual([]);
    // The workflow's CreateSession applies it too (whatever started the execution): nothing RUNNING, nothing cloned
    const { session, outcome } = await env.runtime.run({ prompt: 'hi', projectId: 'ws-protected', workspace: { repo: remoteRepository().bare, branch: 'main' } });
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'InvalidInputError', cause: expect.stringMatching(/workspace\.branch must not be a branch this deployment protects/) });
    expect(session).toBeUndefined();
    expect(env.anthropic.messageRequests).toEqual([]);
  });

  it('is taken by a schedule (the nightly dependency update), checked at synth like any input', () => {
    const entry = { name: 'deps', expression: 'cron(0 3 * * ? *)', projectId: 'demo', prompt: 'Update the dependencies' };
    const [schedule] = parseSchedules([{ ...entry, workspace: { repo: 'https://github.com/team/widgets.git', branch: 'deps/nightly' } }]);
    expect(schedule!.input.workspace).toEqual({ repo: 'https://github.com/team/widgets.git', branch: 'deps/nightly' });
    // A protected branch in a schedule fails the synth, naming the schedule, not every night.
    const nightlyOnMaster = parseSchedules([{ ...entry, workspace: { repo: 'https://github.com/team/widgets.git', branch: 'master' } }]);
    expect(() => new ClaudeSessionsStack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'ClaudeSessions', { schedules: nightlyOnMaster }))
      .toThrow(/schedule deps: .*workspace\.branch must not be a branch this deployment protects/);
  });
});

describe('a milestone on a workspace', () => {
  it('continues one branch: the second task reads what the first wrote, and both commits land on the milestone\'s branch; main is untouched', async () => {
    // Prepare: task one writes a plan; task two (naming no workspace) reads it and writes step one
    const { bare, main } = remoteRepository();
    const { milestoneId } = await env.runtime.milestones.open('ws-milestone');
    env.anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'PLAN.md', content: '1. Gather the widgets\n2. Polish them\n' } },
      { kind: 'text', text: 'Wrote the plan' },
      // CLI fact: a whole-file Read of a file the conversation holds unchanged is answered with a stub; a Read with a limit reads the disk (2.1.197, 2.1.332).
      { kind: 'tool_use', name: 'Read', input: { file_path: 'PLAN.md', limit: 10 } },
      { kind: 'tool_use', name: 'Write', input: { file_path: 'STEP-1.md', content: 'Gathered.\n' } },
      { kind: 'text', text: 'Step one done' },
    );
    // Act
    const first = await env.runtime.run({ prompt: 'Write a plan', projectId: 'ws-milestone', milestoneId, workspace: { repo: bare } });
    const second = await env.runtime.run({ prompt: 'Do step one', projectId: 'ws-milestone', milestoneId });
    // Assess: the second task's Read returned the first task's file
    expect(toolResult(3)).toContain('1. Gather the widgets');
    const branch = `claude-sessions/milestone-${milestoneId}`;
    expect(first.session).toMatchObject({
      status: 'COMPLETED', workspace: { repo: bare, ref: null, baseCommit: main, branch, filesChanged: 1, insertions: 2, deletions: 0 },
    });
    expect(second.session).toMatchObject({
      status: 'COMPLETED', workspace: { repo: bare, baseCommit: first.session!.workspace!.commit, branch, filesChanged: 1, insertions: 1 },
    });
    expect(git(bare, 'log', '--format=%H', branch).split('\n')).toEqual([second.session!.workspace!.commit, first.session!.workspace!.commit, main]);
    expect(git(bare, 'show', `${branch}:PLAN.md`)).toBe('1. Gather the widgets\n2. Polish them');
    expect(git(bare, 'rev-parse', 'main')).toBe(main);
    expect(await env.runtime.milestones.get(milestoneId)).toMatchObject({ workspace: { repo: bare, ref: null, branch }, leaseSessionId: null });
  });

  it('continues the branch on Fargate too: the milestone\'s workspace reaches the task in its overrides', async () => {
    // Prepare
    const { bare, main } = remoteRepository();
    const projectId = 'ws-milestone-fargate';
    const { milestoneId } = await env.runtime.milestones.open(projectId);
    env.anthropic.respondWith(
      { kind: 'tool_use', name: 'Write', input: { file_path: 'PLAN.md', content: 'plan\n' } },
      { kind: 'text', text: 'Wrote the plan' },
      { kind: 'tool_use', name: 'Write', input: { file_path: 'STEP-1.md', content: 'done\n' } },
      { kind: 'text', text: 'Step one done' },
    );
    // Act
    const first = await env.runtime.run({ prompt: 'Write a plan', projectId, milestoneId, runtime: 'fargate', workspace: { repo: bare, branch: 'plan/widgets' } });
    const second = await env.runtime.run({ prompt: 'Do step one', projectId, milestoneId, runtime: 'fargate' });
    // Assess
    expect(first.session).toMatchObject({ status: 'COMPLETED', workspace: { baseCommit: main, branch: 'plan/widgets' } });
    expect(second.session).toMatchObject({ status: 'COMPLETED', workspace: { baseCommit: first.session!.workspace!.commit, branch: 'plan/widgets' } });
    expect(git(bare, 'ls-tree', '--name-only', 'plan/widgets')).toBe('PLAN.md\nREADME.md\nSTEP-1.md');
  });

  it('refuses a later task that names another repository, naming the field, and leaves nothing RUNNING', async () => {
    // Prepare: the first task fixes the milestone's repository (even changing nothing)
    const { bare } = remoteRepository();
    const other = remoteRepository();
    const projectId = 'ws-milestone-other';
    const { milestoneId } = await env.runtime.milestones.open(projectId);
    const first = await env.runtime.run({ prompt: 'Look around', projectId, milestoneId, workspace: { repo: bare } });
    env.anthropic.reset();
    const input = { prompt: 'Now work on this one', projectId, milestoneId, workspace: { repo: other.bare } };
    // Act
    const early = await assertCanStart(input, { repository: env.runtime.repository, milestones: env.runtime.milestones }).catch((err: Error) => err);
    const refused = await env.runtime.run(input); // as if the early check were skipped: the runner checks under the lease
    // Assess
    expect(first.session).toMatchObject({ status: 'COMPLETED', workspace: { branch: null } });
    expect(early).toMatchObject({ name: 'InvalidInputError', message: expect.stringContaining(`workspace.repo must be ${bare}`) });
    expect(refused.session).toMatchObject({ status: 'FAILED', error: 'InvalidInputError', cause: expect.stringContaining(`workspace.repo must be ${bare}, the repository of milestone ${milestoneId}`) });
    expect(env.anthropic.messageRequests).toEqual([]);
    expect(await env.runtime.repository.listRunning(projectId)).toEqual([]);
    expect(await env.runtime.milestones.get(milestoneId)).toMatchObject({ leaseSessionId: null, status: 'OPEN', workspace: { repo: bare } });
    expect(git(other.bare, 'branch', '--list', '--format=%(refname:short)')).toBe('main');
  });
});
