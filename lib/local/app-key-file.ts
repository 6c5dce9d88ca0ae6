import { readFile, stat } from 'node:fs/promises';

// The local engine's GitHub App key (CLAUDE_SESSIONS_GITHUB_APP_PRIVATE_KEY_FILE): read once, at
// start, then held in memory. A session's file tools and the CLI's read-only commands reach its
// working directory only (a symlink out of it is resolved and refused: test/github-app-key.test.ts),
// so what could read the file is a command run as a user who may read it: a shell of a `lambda`
// session runs as the engine's user, one of a root engine's `fargate` session as a user of its
// own. Both are refused here, before anything runs, rather than the key left within their reach.

/** The App key file is within a session's reach: names the variable and what to change. */
export class AppKeyReachError extends Error {
  override readonly name = 'AppKeyReachError';
}

/**
 * The key file's text, or an AppKeyReachError when a session could read the file: its group or
 * others may (mode & 077), or sessions of runtime lambda may run a shell as this user (`shellOnLambda`).
 */
export async function readAppKeyFile(path: string, variable: string, sessions: { shellOnLambda?: boolean }): Promise<string> {
  if (sessions.shellOnLambda) {
    throw new AppKeyReachError(`${variable} with CLAUDE_SESSIONS_SHELL_ON_LAMBDA=true: a lambda session's shell runs as you and could read the App's key, which mints a token of every repository the App is installed on; leave shells to runtime fargate (a root engine runs them as users of their own), or use CLAUDE_SESSIONS_GIT_TOKEN`);
  }
  const { mode } = await stat(path);
  if (mode & 0o077) {
    throw new AppKeyReachError(`${variable}: ${path} may be read by its group or others (mode ${(mode & 0o777).toString(8).padStart(3, '0')}), so by a session run as a user of its own: chmod 600 ${path}`);
  }
  return readFile(path, 'utf8');
}
