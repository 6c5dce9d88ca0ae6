import type { IncomingMessage, ServerResponse } from 'node:http';
import { validate as isUuid } from 'uuid';
import type { ClaudeEndpoint, ModelProvider } from '../claude/claude-process.js';
import { createApiHandler } from '../api/router.js';
import { httpErrors, json, type HttpResponse } from '../api/http-errors.js';
import { InvalidInputError, parseExecutionInput, type ExecutionInput } from '../sessions/execution-input.js';
import { startSession } from '../api/start-session.js';
import type { SessionPolicy } from '../sessions/session-creation.js';
import { SESSIONS_PAGE } from '../web/sessions-page.js';
import { AnthropicStandIn } from './anthropic-stand-in.js';
import { describeEndpoint, standInEndpoint } from './local-endpoint.js';
import { readBody, startLocalApiServer, type LocalRoute } from './local-api-server.js';
import { LocalRuntime, type EventLog } from './local-runtime.js';
import { removeEngineFile, writeEngineFile, type EngineFile } from './engine-file.js';
import { NextRunStandby } from './next-run-standby.js';
import { GitHubWebhook, type GitHubTriggers } from '../api/github-webhook.js';
import { sessionsWithPrefix } from './orphan-sweep.js';
import { GitHubClient, type GitHubTokenSource } from '../github/github-client.js';
import { appGitToken, type GitHubAppTokens } from '../github/app-token.js';
import { reportSession, reportWithRetry } from '../github/session-report.js';
import { projectTotalsDrift } from '../sessions/totals-check.js';

// The local engine (docs/ARCHITECTURE.md#the-local-engine): the one process that holds the
// state folder, runs the executions and serves the HTTP API; every other command is its client.

/** The body of POST /local/runs: a `run`'s input and the Claude its environment names. */
export interface LocalRunRequest {
  input: Record<string, unknown>;
  /** The client's endpoint; absent: a built-in stand-in for `provider`. */
  endpoint?: ClaudeEndpoint;
  provider?: ModelProvider;
  model?: string;
}

/** One state passed, as GET /sessions/{id}/events sends it (`event: state`). */
export interface StateEvent {
  type: string;
  state?: string;
  error?: string;
  attempt?: number;
}

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
  const git = options.git;
  const runtime = await LocalRuntime.boot({
    home: options.home, command: options.command, policy: options.policy,
    runner: git ? { gitToken: git.app ? appGitToken(git.app) : async () => git.token, gitTokenScopes: git.tokenScopes } : undefined,
  });
  const reports = githubReports(runtime, options.github?.report);
  const standby = options.standby === false ? undefined : new NextRunStandby(runtime);
  let extraStandIn: Promise<AnthropicStandIn> | undefined;
  let lastActivity = Date.now();
  let open = 0; // requests and event streams in progress

  const checks = { repository: runtime.repository, milestones: runtime.milestones, slots: runtime.slots, policy: runtime.policy };
  const handler = createApiHandler({
    ...checks, starter: runtime, transcripts: runtime.transcripts,
    github: options.github && new GitHubWebhook({
      secret: async () => options.github!.secret, triggers: options.github.triggers, gitTokenScopes: options.github.gitTokenScopes, starter: runtime,
    }),
  });

  /** A `run` without a configured endpoint gets the built-in stand-in, whatever the engine was started with. */
  async function standIn(): Promise<AnthropicStandIn> {
    if (runtime.standIn) return runtime.standIn;
    extraStandIn ??= new AnthropicStandIn({ usage: 'proportional' }).start();
    return extraStandIn;
  }

  const routes: LocalRoute[] = [
    (_req, res) => {
      open++;
      lastActivity = Date.now();
      res.once('close', () => {
        open--;
        lastActivity = Date.now();
      });
      return undefined; // counts every request, answers none
    },
    (req, res, url) => (req.method === 'GET' && url.pathname === '/local/engine'
      ? reply(res, json(200, { pid: process.pid, home: options.home, running: runtime.running, standby: standby?.counts ?? null }))
      : undefined),
    (req, res, url) => (req.method === 'POST' && url.pathname === '/local/runs' ? startRun(req, res) : undefined),
    // `serve` taking over from a background engine: it hands the state over when nothing runs.
    (req, res, url) => {
      if (req.method !== 'POST' || url.pathname !== '/local/engine/exit') return undefined;
      if (options.idleExitSeconds === undefined) return reply(res, json(409, { message: 'this engine is a serve; stop it with Ctrl-C' }));
      if (runtime.running > 0) return reply(res, json(409, { message: `${runtime.running} session(s) running in this engine` }));
      res.once('finish', () => void close().then(() => idled('handed the state over to a serve')));
      return reply(res, json(202, { pid: process.pid }));
    },
    (req, res, url) => {
      const match = /^\/sessions\/([^/]+)\/(events|abort)$/.exec(url.pathname);
      if (match?.[2] === 'events' && req.method === 'GET') return streamEvents(res, match[1]!, url.searchParams.get('attach') === '1');
      if (match?.[2] === 'abort' && req.method === 'POST') return abortSession(res, match[1]!);
      return undefined;
    },
    // The project a session or milestone is in, for a command given only its id (`show`, `milestone show`):
    // the API's paths name the project, and this engine is the one client that may look across projects.
    (req, res, url) => {
      const match = /^\/local\/(sessions|milestones)\/([^/]+)$/.exec(url.pathname);
      return match && req.method === 'GET' ? projectOf(res, match[1] as 'sessions' | 'milestones', decodeURIComponent(match[2]!)) : undefined;
    },
    // `totals check`: each project's totals items against the figures its session items give.
    (req, res, url) => (url.pathname === '/local/totals/drift' && req.method === 'GET' ? totalsDrift(res, url.searchParams.get('project')) : undefined),
    (req, res, url) => {
      const match = /^\/projects\/([^/]+)\/limit$/.exec(url.pathname);
      return match && req.method === 'PUT' ? setProjectLimit(req, res, decodeURIComponent(match[1]!)) : undefined;
    },
  ];

  /** `run`'s start: `startSession` with the Claude the client's shell names and the booted CLI; HTTP around it. */
  async function startRun(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const body = JSON.parse((await readBody(req)) ?? 'null') as LocalRunRequest | null;
      const shared = body?.endpoint ? undefined : await standIn();
      const endpoint = body?.endpoint ?? standInEndpoint(shared!, body?.provider ?? 'anthropic', body?.model);
      const started = await startSession(body?.input, { trigger: 'cli', checks, starter: runtime, local: { endpoint, standby } });
      const execution = started.started ? runtime.execution(started.sessionId) : undefined;
      // The input as started (defaults applied), so the next booted CLI is prepared like this run.
      void execution?.outcome.then(() => standby?.ended(JSON.parse(execution.input) as ExecutionInput & { sessionId: string }, endpoint));
      reply(res, json(202, { ...started, endpoint: describeEndpoint(endpoint, shared), links: { events: `/sessions/${started.sessionId}/events` } }));
    } catch (err) {
      reply(res, await errorReply(err instanceof SyntaxError ? new InvalidInputError([{ field: '(body)', message: 'must be JSON' }]) : err));
    }
  }

  /**
   * Server-Sent Events: `state` for each state the execution passes (from its first), then `end`
   * with the closed session. `attach`: the client is the `run` that started it, and its going
   * away (Ctrl-C missed, terminal closed, killed) aborts the execution, as ending `run` did when
   * the execution ran in its own process.
   */
  async function streamEvents(res: ServerResponse, sessionId: string, attach: boolean): Promise<void> {
    const execution = runtime.recentExecution(sessionId);
    if (!execution) {
      const session = await runtime.repository.get(sessionId).catch(() => undefined);
      if (!session) return reply(res, json(404, { message: `no execution or session ${sessionId}` }));
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    const send = (event: string, data: unknown) => {
      if (!res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    let ended = false;
    if (attach && execution) {
      res.once('close', () => {
        if (!ended && runtime.execution(sessionId) === execution) execution.abort();
      });
    }
    if (execution) {
      for await (const event of execution.events) {
        if (res.destroyed) break;
        const wire = toStateEvent(event);
        if (wire) send('state', wire);
      }
    }
    const outcome = execution ? await execution.outcome : undefined;
    ended = true;
    const session = await runtime.repository.get(sessionId);
    send('end', { outcome: outcome ? { status: outcome.status, error: outcome.error, cause: outcome.cause } : undefined, session: session ?? null });
    res.end();
  }

  async function abortSession(res: ServerResponse, sessionId: string): Promise<void> {
    const execution = runtime.execution(sessionId);
    execution?.abort();
    await execution?.outcome;
    const session = await runtime.repository.get(sessionId);
    if (!session && !execution) return reply(res, json(404, { message: `no session ${sessionId}` }));
    reply(res, json(200, { aborted: execution !== undefined, session: session ?? null }));
  }

  async function projectOf(res: ServerResponse, kind: 'sessions' | 'milestones', id: string): Promise<void> {
    if (kind === 'sessions' && !isUuid(id) && /^[0-9a-f-]{4,35}$/i.test(id)) return sessionByPrefix(res, id.toLowerCase());
    const found = !isUuid(id) ? undefined : kind === 'sessions' ? await runtime.repository.get(id) : await runtime.milestones.get(id);
    if (!found) return reply(res, json(404, { message: `no ${kind === 'sessions' ? 'session' : 'milestone'} ${id}` }));
    reply(res, json(200, { projectId: found.projectId, ...(kind === 'sessions' ? { sessionId: id } : {}) }));
  }

  async function totalsDrift(res: ServerResponse, project: string | null): Promise<void> {
    try {
      if (project !== null) parseExecutionInput({ prompt: '-', projectId: project }); // the project id's rules, by name
      reply(res, json(200, { projects: await projectTotalsDrift(runtime.repository, project ?? undefined) }));
    } catch (err) {
      reply(res, await errorReply(err));
    }
  }

  /** The one session whose id starts with `prefix` (what `list` shows is enough to name one); 409 when several do. */
  async function sessionByPrefix(res: ServerResponse, prefix: string): Promise<void> {
    const matches = await sessionsWithPrefix(runtime.dynamodb, prefix);
    if (matches.length === 0) return reply(res, json(404, { message: `no session ${prefix}` }));
    if (matches.length > 1) return reply(res, json(409, { message: `${matches.length} sessions start with ${prefix}: ${matches.map((m) => m.sessionId).join(', ')}` }));
    reply(res, json(200, matches[0]));
  }

  async function setProjectLimit(req: IncomingMessage, res: ServerResponse, projectId: string): Promise<void> {
    try {
      parseExecutionInput({ prompt: '-', projectId }); // the project id's rules, by name
      const { limit } = JSON.parse((await readBody(req)) ?? 'null') as { limit?: unknown };
      if (limit !== null && !(Number.isInteger(limit) && (limit as number) >= 1)) {
        throw new InvalidInputError([{ field: 'limit', message: 'must be a whole number from 1, or null' }]);
      }
      await runtime.slots.setLimit(projectId, limit as number | null);
      reply(res, json(200, { projectId, limit }));
    } catch (err) {
      reply(res, await errorReply(err));
    }
  }

  const server = await startLocalApiServer(handler, options.port, { '/': SESSIONS_PAGE }, routes).catch(async (err: unknown) => {
    await runtime.close();
    throw err;
  });
  const file: EngineFile = { pid: process.pid, url: server.url, idleExitSeconds: options.idleExitSeconds ?? null, startedAt: new Date().toISOString() };
  await writeEngineFile(options.home, file);

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
      await (await extraStandIn)?.close();
    })();
    return closing;
  };
  let idled: (reason: string) => void = () => {};
  const idle = new Promise<string>((resolve) => (idled = resolve));
  const watch = setInterval(() => {
    void standby?.sweep();
    if (options.idleExitSeconds === undefined || open > 0 || runtime.running > 0) return;
    if (Date.now() - lastActivity < options.idleExitSeconds * 1000) return;
    void close().then(() => idled(`idle for ${options.idleExitSeconds} s`));
  }, Math.min(1000, (options.idleExitSeconds ?? 1) * 250));
  // The AWS sweeper's schedule, here: a session whose close event was lost is closed all the same.
  const sweeper = setInterval(() => {
    void runtime.sweep().catch((err: unknown) => process.stderr.write(`sweep failed: ${(err as Error)?.stack ?? String(err)}\n`));
  }, ENGINE_SWEEP_INTERVAL_MS).unref();
  return { url: server.url, runtime, idle, close };
}

/**
 * The engine's GitHub reporter (functions/github-reporter on AWS): each ended execution of a
 * GitHub session is reported, with a bounded retry; a report that fails them all is logged and
 * dropped, as the dead-letter queue keeps it on AWS. It reads the session and writes only to GitHub.
 */
function githubReports(runtime: LocalRuntime, report: { apiUrl: string; token: GitHubTokenSource } | undefined): { settle(): Promise<void> } {
  const pending = new Set<Promise<unknown>>();
  if (!report) return { settle: async () => {} };
  const deps = { github: new GitHubClient(report.apiUrl, report.token), session: (id: string) => runtime.repository.get(id) };
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

function reply(res: ServerResponse, response: HttpResponse): Promise<void> {
  res.writeHead(response.statusCode, response.headers).end(response.body);
  return Promise.resolve();
}

/** The API's own mapping of errors to answers (400 naming fields, 404/409/429 refusals), for the local routes. */
async function errorReply(error: unknown): Promise<HttpResponse> {
  const request = { error, context: {}, response: undefined as HttpResponse | undefined };
  await httpErrors({ logError: (e) => process.stderr.write(`request failed: ${(e as Error)?.stack ?? String(e)}\n`) }).onError!(request as never);
  const response = request.response!;
  // The error's name, so the CLI says a refusal as it did in-process.
  const body = JSON.parse(response.body) as object;
  return { ...response, body: JSON.stringify({ ...body, name: (error as Error)?.name }) };
}

function toStateEvent(event: EventLog): StateEvent | undefined {
  const e = event as EventLog & { state?: { name: string }; Error?: string; retry?: { attempt: number } };
  switch (e.type) {
    case 'StateEntered':
    case 'StateFailed':
    case 'StateRetried':
      return { type: e.type, state: e.state?.name, error: e.Error, attempt: e.retry?.attempt };
    case 'ExecutionSucceeded':
    case 'ExecutionFailed':
    case 'ExecutionAborted':
    case 'ExecutionTimeout':
      return { type: e.type, error: e.Error };
    default:
      return undefined;
  }
}
