import { createApiHandler } from '../api/router.js';
import type { SessionPolicy } from '../sessions/session-creation.js';
import { SESSIONS_PAGE } from '../web/sessions-page.js';
import { AnthropicStandIn } from './anthropic-stand-in.js';
import { startLocalApiServer, type LocalRoute } from './local-api-server.js';
import { LocalRuntime } from './local-runtime.js';
import { removeEngineFile, writeEngineFile, type EngineFile } from './engine-file.js';
import { engineRoutes } from './engine-routes.js';
import { NextRunStandby } from './next-run-standby.js';
import { GitHubWebhook, type GitHubTriggers } from '../api/github-webhook.js';
import { GitHubClient, type GitHubTokenSource } from '../github/github-client.js';
import { appGitToken, type GitHubAppTokens } from '../github/app-token.js';
import { reportSession, reportWithRetry } from '../github/session-report.js';

// The local engine (docs/ARCHITECTURE.md#the-local-engine): the one process that holds the
// state folder, runs the executions and serves the HTTP API; every other command is its client.

export type { LocalRunRequest, StateEvent } from './engine-routes.js';

export interface EngineOptions {
  home: string;
  port: number;
  policy: SessionPolicy;
  /** Exit after this long with no request, no stream and no running execution; undefined: never. */
  idleExitSeconds?: number;
  command: string;
  /** Keep a Claude CLI booted for the next `run` (lib/local/next-run-standby.ts). @default true */
  standby?: boolean;
  /**
   * POST /webhooks/github: its secret and triggers (CLAUDE_SESSIONS_GITHUB_WEBHOOK_SECRET, _GITHUB_TRIGGERS);
   * with `report`, the pull requests and comments of its sessions, on GitHub's REST API at `apiUrl`. @default no webhook
   */
  github?: { secret: string; triggers: GitHubTriggers; gitTokenScopes?: readonly string[]; report?: { apiUrl: string; token: GitHubTokenSource } };
  /**
   * The git credential of https workspaces, a token or a GitHub App's tokens minted per repository, and the URL prefixes
   * it may go to (CLAUDE_SESSIONS_GIT_TOKEN, or CLAUDE_SESSIONS_GITHUB_APP_ID with CLAUDE_SESSIONS_GITHUB_APP_PRIVATE_KEY_FILE; CLAUDE_SESSIONS_GIT_TOKEN_SCOPES). @default none
   */
  git?: { token?: string; app?: GitHubAppTokens; tokenScopes?: readonly string[] };
}

/** How often the engine tries a GitHub report, and its first wait (doubled each time: 1+2+4+8 s in all). */
const REPORT_ATTEMPTS = 5;
const REPORT_FIRST_DELAY_MS = 1_000;

export interface Engine {
  url: string;
  runtime: LocalRuntime;
  /** Resolves, saying why, when a background engine has closed by itself: idle, or handed over to `serve`. */
  idle: Promise<string>;
  close(): Promise<void>;
}

export async function startEngine(options: EngineOptions): Promise<Engine> {
  // Boot: the runtime on the state folder, its GitHub reports, the CLI kept for the next `run`.
  const git = options.git;
  const runtime = await LocalRuntime.boot({
    home: options.home, command: options.command, policy: options.policy,
    runner: git ? { gitToken: git.app ? appGitToken(git.app) : async () => git.token, gitTokenScopes: git.tokenScopes } : undefined,
  });
  const reports = githubReports(runtime, options.github?.report);
  const standby = options.standby === false ? undefined : new NextRunStandby(runtime);
  const standIn = sharedStandIn(runtime);
  const activity = requestActivity();

  // Routes: the API's handler as on AWS, behind the engine's own (engine-routes.ts).
  const checks = { repository: runtime.repository, milestones: runtime.milestones, slots: runtime.slots, policy: runtime.policy };
  const api = createApiHandler({
    ...checks, starter: runtime, transcripts: runtime.transcripts,
    github: options.github && new GitHubWebhook({
      secret: async () => options.github!.secret, triggers: options.github.triggers, gitTokenScopes: options.github.gitTokenScopes, starter: runtime,
      milestones: runtime.milestones, transcripts: runtime.transcripts,
    }),
  });
  const routes = engineRoutes({
    runtime, home: options.home, idleExitSeconds: options.idleExitSeconds, standby, checks, standIn: standIn.get,
    handOver: () => void close().then(() => idled('handed the state over to a serve')),
  });
  const server = await startLocalApiServer(api, options.port, { '/': SESSIONS_PAGE }, [activity.route, routes]).catch(async (err: unknown) => {
    await runtime.close();
    throw err;
  });
  const file: EngineFile = { pid: process.pid, url: server.url, idleExitSeconds: options.idleExitSeconds ?? null, startedAt: new Date().toISOString() };
  await writeEngineFile(options.home, file);

  // Shutdown: by `close`, by a `serve` taking over, or idle (a background engine); the sweeper meanwhile.
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      clearInterval(watch);
      clearInterval(sweeper);
      await removeEngineFile(options.home);
      await server.close();
      await standby?.close();
      await reports.settle();
      await runtime.close();
      await standIn.close();
    })();
    return closing;
  };
  let idled: (reason: string) => void = () => {};
  const idle = new Promise<string>((resolve) => (idled = resolve));
  const watch = setInterval(() => {
    void standby?.sweep();
    if (options.idleExitSeconds === undefined || activity.open > 0 || runtime.running > 0) return;
    if (Date.now() - activity.lastActivity < options.idleExitSeconds * 1000) return;
    void close().then(() => idled(`idle for ${options.idleExitSeconds} s`));
  }, Math.min(1000, (options.idleExitSeconds ?? 1) * 250));
  // The AWS sweeper's schedule, here: a session whose close event was lost is closed all the same.
  const sweeper = setInterval(() => {
    void runtime.sweep().catch((err: unknown) => process.stderr.write(`sweep failed: ${(err as Error)?.stack ?? String(err)}\n`));
  }, ENGINE_SWEEP_INTERVAL_MS).unref();
  return { url: server.url, runtime, idle, close };
}

/** Requests and event streams in progress, and when the last one ended: what a background engine's idle exit waits on. */
function requestActivity(): { route: LocalRoute; readonly open: number; readonly lastActivity: number } {
  let open = 0;
  let lastActivity = Date.now();
  return {
    route: (_req, res) => {
      open++;
      lastActivity = Date.now();
      res.once('close', () => {
        open--;
        lastActivity = Date.now();
      });
      return undefined; // counts every request, answers none
    },
    get open() {
      return open;
    },
    get lastActivity() {
      return lastActivity;
    },
  };
}

/** A `run` without a configured endpoint gets the built-in stand-in, whatever the engine was started with: the runtime's own, else one started on first use. */
function sharedStandIn(runtime: LocalRuntime): { get(): Promise<AnthropicStandIn>; close(): Promise<void> } {
  let extra: Promise<AnthropicStandIn> | undefined;
  return {
    get: async () => {
      if (runtime.standIn) return runtime.standIn;
      extra ??= new AnthropicStandIn({ usage: 'proportional' }).start();
      return extra;
    },
    close: async () => {
      await (await extra)?.close();
    },
  };
}

/**
 * The engine's GitHub reporter (functions/github-reporter on AWS): each ended execution of a
 * GitHub session is reported, with a bounded retry; a report that fails them all is logged and
 * dropped, as the dead-letter queue keeps it on AWS. It reads the session and writes only to GitHub.
 */
function githubReports(runtime: LocalRuntime, report: { apiUrl: string; token: GitHubTokenSource } | undefined): { settle(): Promise<void> } {
  const pending = new Set<Promise<unknown>>();
  if (!report) return { settle: async () => {} };
  const deps = {
    github: new GitHubClient(report.apiUrl, report.token),
    session: (id: string) => runtime.repository.get(id), milestone: (id: string, tasksAfter: string) => runtime.milestones.view(id, { tasksAfter }),
    recordPullRequest: (id: string, projectId: string, pull: { number: number; url: string }) => runtime.milestones.recordPullRequest(id, projectId, pull),
  };
  const log = (line: string) => process.stderr.write(`${line}\n`);
  runtime.onExecutionEnded = (sessionId) => {
    const run = (async () => {
      const session = await runtime.repository.get(sessionId);
      if (session?.trigger !== 'github') return;
      const outcome = await reportWithRetry(() => reportSession({ sessionId, trigger: session.trigger }, deps), {
        attempts: REPORT_ATTEMPTS, delayMs: REPORT_FIRST_DELAY_MS,
        onFailure: (attempt, err) => log(`github report of session ${sessionId}, try ${attempt} of ${REPORT_ATTEMPTS}: ${(err as Error)?.message ?? String(err)}`),
      });
      log(outcome.reported ? `github report of session ${sessionId}: ${outcome.comment}` : `github report of session ${sessionId}: none, ${outcome.reason}`);
    })().catch(() => undefined); // each failed try is logged above
    pending.add(run);
    void run.finally(() => pending.delete(run));
  };
  // A closing engine lets reports in flight finish their try; a retry's wait is not kept.
  return { settle: async () => void (await Promise.race([Promise.allSettled(pending), new Promise((resolve) => setTimeout(resolve, 5_000).unref())])) };
}

/** How often the engine sweeps for sessions whose execution ended unrecorded (10 minutes on AWS). */
const ENGINE_SWEEP_INTERVAL_MS = 60_000;
