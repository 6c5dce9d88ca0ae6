import { spawn } from 'node:child_process';
import { lstat, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import type { WorkspaceSpec } from '../sessions/execution-input.js';
import type { WorkspaceRecord } from '../sessions/session-item.js';
import { codeCommitGitCredentials } from './codecommit-credentials.js';
import { codeCommitRepository } from '../sessions/codecommit-url.js';
import { tokenScopeOf } from './repository-scopes.js';

// A session's workspace: a git repository cloned into the CLI's working directory before
// Claude runs, and what Claude changed committed and pushed to a branch of its own after.
// git is spawned with argument arrays, never a shell; a token reaches git only through its
// environment (an http.extraHeader by GIT_CONFIG_*), never a URL, an argument or a log; a
// CodeCommit repository gets a password signed with the runner's AWS credentials instead, anew
// for each command that reaches it (it is good for minutes, a session may run for hours).

export class WorkspaceCloneError extends Error {
  override readonly name = 'WorkspaceCloneError';
}

export class WorkspacePushError extends Error {
  override readonly name = 'WorkspacePushError';
}

/** The branch a session pushes when its input names none. */
export function defaultBranch(sessionId: string): string {
  return `claude-sessions/${sessionId}`;
}

/** A repository as it may be recorded and logged: no user or password. */
export function redactRepo(repo: string): string {
  try {
    const url = new URL(repo);
    url.username = '';
    url.password = '';
    return url.toString();
  } catch {
    return repo; // a local path
  }
}

export interface GitAccess {
  /** A token for https remotes (a Secrets Manager secret on AWS), sent as a header, only under `tokenScopes`. Never sent to CodeCommit. */
  token?: string;
  /** The URL prefixes the token may go to (the deployment's GIT_TOKEN_SCOPES); another https repository is cloned anonymously. */
  tokenScopes?: readonly string[];
  /** AWS credentials to sign CodeCommit's git password with (the runner's role). */
  codeCommitCredentials?: AwsCredentialIdentityProvider;
  /**
   * Where git reaches CodeCommit instead of its public endpoint (a local stand-in, for tests):
   * a `url.<endpoint>.insteadOf` rewrite. The password is still signed for the CodeCommit URL.
   */
  codeCommitEndpoint?: string;
}

/**
 * git's environment: no prompt, no system or global config (HOME is the CLI's, where a tool
 * could write a .gitconfig), no credentials (see RemoteAuth).
 */
function gitEnv(home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    // A private CA the runner trusts (its image, or a test's own https remote).
    ...(process.env.GIT_SSL_CAINFO ? { GIT_SSL_CAINFO: process.env.GIT_SSL_CAINFO } : {}),
    HOME: home,
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'claude-sessions',
    GIT_AUTHOR_EMAIL: 'claude-sessions@users.noreply.github.com',
    GIT_COMMITTER_NAME: 'claude-sessions',
    GIT_COMMITTER_EMAIL: 'claude-sessions@users.noreply.github.com',
  };
}

/** How the commands that reach the remote authenticate, and what their errors must never show. */
interface RemoteAuth {
  /** The environment of one command that reaches the remote: its credentials as a header, for that process only. */
  env(): Promise<NodeJS.ProcessEnv>;
  redact(message: string): string;
}

function remoteAuth(repo: string, home: string, access: GitAccess): RemoteAuth {
  const secrets = new Set<string>(access.token ? [access.token] : []);
  const redact = (message: string) => [...secrets].reduce((text, secret) => text.replaceAll(secret, '***'), message);
  const withConfig = (entries: [key: string, value: string][]): NodeJS.ProcessEnv => ({
    ...gitEnv(home),
    GIT_CONFIG_COUNT: String(entries.length),
    ...Object.fromEntries(entries.flatMap(([key, value], i) => [[`GIT_CONFIG_KEY_${i}`, key], [`GIT_CONFIG_VALUE_${i}`, value]])),
  });
  const basic = (username: string, password: string) => Buffer.from(`${username}:${password}`).toString('base64');
  const codeCommit = codeCommitRepository(repo);
  if (!codeCommit) {
    // The token goes only where the deployment said; a redirect (to whatever host) is not followed with it.
    const header = access.token && tokenScopeOf(repo, access.tokenScopes) ? `Authorization: Basic ${basic('x-access-token', access.token)}` : undefined;
    return { redact, env: async () => (header ? withConfig([['http.extraHeader', header], ['http.followRedirects', 'false']]) : gitEnv(home)) };
  }
  return {
    redact,
    async env() {
      if (!access.codeCommitCredentials) throw new Error('this runner has no AWS credentials to sign CodeCommit\'s git password with');
      const credentials = await access.codeCommitCredentials();
      const { username, password } = await codeCommitGitCredentials(codeCommit, credentials);
      const encoded = basic(username, password);
      for (const secret of [credentials.secretAccessKey, credentials.sessionToken, password, encoded]) if (secret) secrets.add(secret);
      const rewrite: [string, string][] = access.codeCommitEndpoint ? [[`url.${access.codeCommitEndpoint.replace(/\/?$/, '/')}.insteadOf`, `https://${codeCommit.host}/`]] : [];
      return withConfig([['http.extraHeader', `Authorization: Basic ${encoded}`], ...rewrite]);
    },
  };
}

/**
 * On every command (the command line wins over any config file): no hook, no fsmonitor program;
 * and the work tree is trusted although the CLI's own user (RunUser) owns it, since git runs no
 * program of the tree's here (the command line's safe.directory is one git honours).
 */
const NO_PROGRAMS = ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', '-c', 'safe.directory=*'];

/** What a clone may hold on disk when the deployment says nothing (maxCloneMiB): half the Lambda runner's 2 GiB of /tmp, which the CLI's HOME shares. */
export const DEFAULT_MAX_CLONE_MIB = 1024;

/** How often a clone's size is measured while git writes it. */
const SIZE_POLL_MS = 250;

/** A bound on what git writes under `dir`: past it, git is stopped. */
interface SizeLimit {
  dir: string;
  maxMiB: number;
}

async function git(args: string[], cwd: string, env: NodeJS.ProcessEnv, deadline?: number, limit?: SizeLimit): Promise<string> {
  // Its own process group: past the deadline or the size the transport helper (git-remote-https) goes with it.
  const child = spawn('git', [...NO_PROGRAMS, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: deadline !== undefined || limit !== undefined });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const stop = (why: string) => {
    stderr += `\nstopped: ${why}`;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      child.kill('SIGKILL'); // the group is gone already
    }
  };
  const timer = deadline === undefined ? undefined : setTimeout(() => stop('the session\'s time for its clone ran out'), Math.max(0, deadline - Date.now()));
  let ended = false;
  // Measured while git writes, so a huge repository is stopped at the limit, not when the disk is full.
  const watching = limit && (async () => {
    while (!ended) {
      await new Promise((r) => setTimeout(r, SIZE_POLL_MS));
      if (ended) return;
      const bytes = await bytesUnder(limit.dir);
      if (!ended && bytes > limit.maxMiB * MIB) return stop(overLimit(bytes, limit.maxMiB));
    }
  })();
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  }).finally(() => {
    ended = true;
    clearTimeout(timer);
  });
  await watching;
  if (code !== 0) throw Object.assign(new Error(`git ${args[0]} exited ${code}: ${gitReason(stderr)}`), { stderr });
  return stdout.trim();
}

const MIB = 1024 * 1024;

function overLimit(bytes: number, maxMiB: number): string {
  return `the clone holds ${(bytes / MIB).toFixed(1)} MiB, over the deployment's maxCloneMiB (${maxMiB} MiB)`;
}

/** The bytes of the files under `dir` (links not followed); what vanishes while it counts counts 0. */
async function bytesUnder(dir: string): Promise<number> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  let total = 0;
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await bytesUnder(path);
    else if (entry.isFile()) total += (await lstat(path).catch(() => undefined))?.size ?? 0;
  }
  return total;
}

/**
 * Why git failed, from its stderr: its `fatal:` and `error:` lines (and our own stop), which
 * say the reason; the advice git prints after them ("Please make sure you have the correct
 * access rights…") says none. Else its last three lines.
 */
export function gitReason(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const reasons = lines.filter((l) => /^(fatal|error|stopped):/.test(l));
  return (reasons.length ? reasons : lines.slice(-3)).join(' / ');
}

/**
 * What the clone left, for the push: its commit, and its .git/config. Claude has the work tree,
 * .git included, and a config rewritten there (a pushurl, url.*.insteadOf, http.proxy) could
 * send the push and its Authorization header elsewhere: the push runs with the clone's config
 * (restoreGitDir). This is about what a session leaves behind; a session with a shell runs as
 * the runner's user, and one bent on it could reach what the runner can (docs/SECURITY.md: Tools).
 */
export interface ClonedWorkspace {
  baseCommit: string;
  gitConfig: Buffer;
}

/** The clone's own .git back as git will read it: a real directory, its config, nothing redirecting it. */
async function restoreGitDir(workDir: string, gitConfig: Buffer): Promise<void> {
  const gitDir = join(workDir, '.git');
  const stats = await lstat(gitDir).catch(() => undefined);
  if (!stats?.isDirectory()) throw new Error('.git in the working directory is no longer the clone\'s directory');
  // commondir and config.worktree would make git read another directory's config, refs or hooks.
  for (const redirect of ['commondir', 'config.worktree']) await rm(join(gitDir, redirect), { recursive: true, force: true });
  // Removed first: a symlink put there is replaced, not written through.
  await rm(join(gitDir, 'config'), { force: true });
  await writeFile(join(gitDir, 'config'), gitConfig);
}

/**
 * A plain path is cloned as a file:// URL, so a shallow clone works for it too; a URL as it was
 * parsed when its token scope was decided (tokenScopeOf), so git cannot read another host in it.
 */
function cloneUrl(repo: string): string {
  return repo.startsWith('/') ? `file://${repo}` : new URL(repo).href;
}

/**
 * Clones the repository into `workDir` (shallow), at `ref` or the remote's default branch,
 * on a new local branch to push. With `continueBranch` (a milestone's branch), a branch the
 * remote has already is cloned instead, so a task starts from the last task's commit.
 * Throws WorkspaceCloneError, before Claude runs.
 */
export async function cloneWorkspace(
  spec: WorkspaceSpec,
  workDir: string,
  home: string,
  access: GitAccess,
  continueBranch?: string,
  /** What the clone may take (the session's limit less its push reserve); past it git is stopped. */
  timeLeftMs?: number,
  /** What the clone may hold on disk, .git and work tree together; past it git is stopped. */
  maxMiB = DEFAULT_MAX_CLONE_MIB,
): Promise<ClonedWorkspace> {
  const deadline = timeLeftMs === undefined ? undefined : Date.now() + Math.max(0, timeLeftMs);
  const limit: SizeLimit = { dir: workDir, maxMiB };
  // A remote that takes filters sends no blob the limit could not hold (older versions of a huge
  // file); one that does not ignores it, and the measured size still stops the clone.
  const filter = `--filter=blob:limit=${maxMiB}m`;
  const env = gitEnv(home);
  const auth = remoteAuth(spec.repo, home, access);
  const parent = join(workDir, '..');
  let at = spec.ref;
  try {
    await rm(workDir, { recursive: true, force: true });
    const heads = continueBranch ? await git(['ls-remote', '--heads', cloneUrl(spec.repo), `refs/heads/${continueBranch}`], parent, await auth.env(), deadline) : '';
    // ls-remote matches a pattern's tail: only the exact ref counts.
    const continuing = heads.split('\n').some((line) => line.endsWith(`\trefs/heads/${continueBranch}`));
    if (continuing) at = continueBranch;
    const commit = !continuing && spec.ref && /^[0-9a-f]{40}$/.test(spec.ref) ? spec.ref : undefined;
    const refArgs = at && !commit ? ['--branch', at] : [];
    await git(['clone', '--quiet', '--depth', '50', filter, ...refArgs, cloneUrl(spec.repo), workDir], parent, await auth.env(), deadline, limit);
    if (commit) {
      await git(['fetch', '--quiet', '--depth', '1', filter, 'origin', commit], workDir, await auth.env(), deadline, limit);
      await git(['checkout', '--quiet', commit], workDir, env, deadline, limit);
    }
    // What the last measure missed (git finished within one poll).
    const bytes = await bytesUnder(workDir);
    if (bytes > maxMiB * MIB) throw new Error(overLimit(bytes, maxMiB));
    // An empty repository clones (with a warning) but has nothing to start from or branch off.
    const baseCommit = await git(['rev-parse', '--verify', '--quiet', 'HEAD'], workDir, env).catch(() => '');
    if (!baseCommit) throw new Error('it has no commit yet: a session starts from one and hands back a branch off it (push a first commit)');
    return { baseCommit, gitConfig: await readFile(join(workDir, '.git', 'config')) };
  } catch (err) {
    const message = auth.redact((err as Error).message);
    throw new WorkspaceCloneError(`could not clone ${redactRepo(spec.repo)}${at ? ` at ${at}` : ''}: ${message}`);
  }
}

/**
 * Commits whatever Claude changed and pushes it to the session's branch. Returns what the
 * record keeps; a push that fails returns the change as a patch with the error, so nothing
 * Claude did is lost.
 */
export async function commitAndPush(
  spec: WorkspaceSpec,
  session: { sessionId: string; promptFirstLine: string; branch: string },
  workDir: string,
  home: string,
  base: ClonedWorkspace,
  access: GitAccess,
): Promise<{ record: WorkspaceRecord; patch?: Buffer; error?: WorkspacePushError }> {
  const env = gitEnv(home);
  const auth = remoteAuth(spec.repo, home, access);
  const unchanged: WorkspaceRecord = {
    repo: redactRepo(spec.repo), ref: spec.ref ?? null, baseCommit: base.baseCommit, branch: null, commit: null, filesChanged: 0, insertions: 0, deletions: 0,
  };
  await restoreGitDir(workDir, base.gitConfig);
  await git(['add', '--all', '--ignore-errors'], workDir, env).catch((err: Error & { stderr?: string }) => {
    // A repository Claude made in the work tree with no commit yet cannot be recorded; all else is.
    if (!err.stderr?.trim().split('\n').every((line) => /does not have a commit checked out/.test(line))) throw err;
  });
  // A repository nested in the work tree is recorded as such, never entered (its config would apply there).
  if (!(await git(['status', '--porcelain', '--ignore-submodules=all'], workDir, env))) return { record: unchanged };
  const message = `claude-sessions ${session.sessionId}: ${session.promptFirstLine}`.slice(0, 200);
  await git(['commit', '--quiet', '--no-verify', '-m', message], workDir, env);
  const commit = await git(['rev-parse', 'HEAD'], workDir, env);
  const stat = await git(['diff', '--shortstat', base.baseCommit, commit], workDir, env);
  const number = (word: RegExp) => Number(word.exec(stat)?.[1] ?? 0);
  const record: WorkspaceRecord = {
    ...unchanged, branch: session.branch, commit,
    filesChanged: number(/(\d+) files? changed/), insertions: number(/(\d+) insertions?/), deletions: number(/(\d+) deletions?/),
  };
  try {
    await git(['push', '--quiet', '--no-verify', 'origin', `HEAD:refs/heads/${session.branch}`], workDir, await auth.env());
    return { record };
  } catch (err) {
    const patch = Buffer.from(await git(['format-patch', '--stdout', `${base.baseCommit}..${commit}`], workDir, env));
    const cause = auth.redact((err as Error).message);
    return { record, patch, error: new WorkspacePushError(`could not push ${session.branch} to ${redactRepo(spec.repo)}: ${cause}`) };
  }
}
