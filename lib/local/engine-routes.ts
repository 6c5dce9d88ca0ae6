import type { IncomingMessage, ServerResponse } from 'node:http';
import { validate as isUuid } from 'uuid';
import type { ClaudeEndpoint, ModelProvider } from '../claude/claude-process.js';
import { httpErrors, json, type HttpResponse } from '../api/http-errors.js';
import { startSession } from '../api/start-session.js';
import { InvalidInputError, parseExecutionInput, type ExecutionInput } from '../sessions/execution-input.js';
import type { StartCheckDeps } from '../sessions/start-checks.js';
import { projectTotalsDrift } from '../sessions/totals-check.js';
import { backfillTotals } from '../sessions/totals-backfill.js';
import type { AnthropicStandIn } from './anthropic-stand-in.js';
import { describeEndpoint, standInEndpoint } from './local-endpoint.js';
import { readBody, type LocalRoute } from './local-api-server.js';
import type { EventLog, LocalRuntime } from './local-runtime.js';
import type { NextRunStandby } from './next-run-standby.js';
import { sessionsWithPrefix } from './orphan-sweep.js';

// The local engine's own routes, the ones API Gateway does not have (docs/LOCAL.md): each a named
// handler of the engine's state, matched by method and path here, so that startEngine reads as
// boot, routes and shutdown.

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

/** What the engine's routes answer from. */
export interface EngineContext {
  runtime: LocalRuntime;
  /** The state folder, as GET /local/engine reports it. */
  home: string;
  /** A background engine's idle limit; undefined: a `serve`, which no other engine takes over. */
  idleExitSeconds?: number;
  /** The CLI booted for the next `run`, if the engine keeps one. */
  standby?: NextRunStandby;
  /** `startSession`'s checks, as the API's handler has them. */
  checks: StartCheckDeps;
  /** The built-in stand-in a `run` without an endpoint of its own talks to. */
  standIn(): Promise<AnthropicStandIn>;
  /** Closes the engine for a `serve` taking its state over, once the answer is sent. */
  handOver(): void;
}

/** One route: its method, its path, and the handler given the path's captures. */
interface EngineRoute {
  method: 'GET' | 'POST' | 'PUT';
  path: RegExp;
  handle(engine: EngineContext, req: IncomingMessage, res: ServerResponse, params: string[], url: URL): Promise<void>;
}

const ROUTES: EngineRoute[] = [
  { method: 'GET', path: /^\/local\/engine$/, handle: engineStatus },
  { method: 'POST', path: /^\/local\/runs$/, handle: startRun },
  { method: 'POST', path: /^\/local\/engine\/exit$/, handle: handOver },
  { method: 'GET', path: /^\/sessions\/([^/]+)\/events$/, handle: (engine, _req, res, [id], url) => streamEvents(engine, res, id!, url.searchParams.get('attach') === '1') },
  { method: 'POST', path: /^\/sessions\/([^/]+)\/abort$/, handle: (engine, _req, res, [id]) => abortSession(engine, res, id!) },
  // The project a session or milestone is in, for a command given only its id (`show`, `milestone show`):
  // the API's paths name the project, and this engine is the one client that may look across projects.
  { method: 'GET', path: /^\/local\/(sessions|milestones)\/([^/]+)$/, handle: (engine, _req, res, [kind, id]) => projectOf(engine, res, kind as 'sessions' | 'milestones', decodeURIComponent(id!)) },
  // `totals check`: each project's totals items against the figures its session items give.
  { method: 'GET', path: /^\/local\/totals\/drift$/, handle: (engine, _req, res, _params, url) => totalsDrift(engine, res, url.searchParams.get('project')) },
  // `totals backfill`: the totals and registry made to hold what the session items give (lib/sessions/totals-backfill.ts).
  { method: 'POST', path: /^\/local\/totals\/backfill$/, handle: (engine, _req, res, _params, url) => totalsBackfill(engine, res, url.searchParams.get('project'), url.searchParams.get('exact') === 'true') },
  { method: 'PUT', path: /^\/projects\/([^/]+)\/limit$/, handle: (engine, req, res, [projectId]) => setProjectLimit(engine, req, res, decodeURIComponent(projectId!)) },
];

/** The engine's routes for the local API server: each request its route's handler, else the API's (undefined). */
export function engineRoutes(engine: EngineContext): LocalRoute {
  return (req, res, url) => {
    for (const route of ROUTES) {
      const match = req.method === route.method ? route.path.exec(url.pathname) : null;
      if (match) return route.handle(engine, req, res, match.slice(1), url);
    }
    return undefined;
  };
}

function engineStatus({ runtime, home, standby }: EngineContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  return reply(res, json(200, { pid: process.pid, home, running: runtime.running, standby: standby?.counts ?? null }));
}

/** `run`'s start: `startSession` with the Claude the client's shell names and the booted CLI; HTTP around it. */
async function startRun({ runtime, checks, standby, standIn }: EngineContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const body = JSON.parse((await readBody(req)) ?? 'null') as LocalRunRequest | null;
    const shared = body?.endpoint ? undefined : await standIn();
    const endpoint = body?.endpoint ?? standInEndpoint(shared!, body?.provider ?? 'anthropic', body?.model);
    const started = await startSession(body?.input, { trigger: 'cli', checks, starter: runtime, local: { endpoint, standby } });
    const execution = started.started ? runtime.execution(started.sessionId) : undefined;
    // The input as started (defaults applied), so the next booted CLI is prepared like this run.
    void execution?.outcome.then(() => standby?.ended(JSON.parse(execution.input) as ExecutionInput & { sessionId: string }, endpoint));
    await reply(res, json(202, { ...started, endpoint: describeEndpoint(endpoint, shared), links: { events: `/sessions/${started.sessionId}/events` } }));
  } catch (err) {
    await reply(res, await errorReply(err instanceof SyntaxError ? new InvalidInputError([{ field: '(body)', message: 'must be JSON' }]) : err));
  }
}

/** `serve` taking over from a background engine: it hands the state over when nothing runs. */
function handOver({ runtime, idleExitSeconds, handOver: close }: EngineContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (idleExitSeconds === undefined) return reply(res, json(409, { message: 'this engine is a serve; stop it with Ctrl-C' }));
  if (runtime.running > 0) return reply(res, json(409, { message: `${runtime.running} session(s) running in this engine` }));
  res.once('finish', close);
  return reply(res, json(202, { pid: process.pid }));
}

/**
 * Server-Sent Events: `state` for each state the execution passes (from its first), then `end`
 * with the closed session. `attach`: the client is the `run` that started it, and its going
 * away (Ctrl-C missed, terminal closed, killed) aborts the execution, as ending `run` did when
 * the execution ran in its own process.
 */
async function streamEvents({ runtime }: EngineContext, res: ServerResponse, sessionId: string, attach: boolean): Promise<void> {
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

async function abortSession({ runtime }: EngineContext, res: ServerResponse, sessionId: string): Promise<void> {
  const execution = runtime.execution(sessionId);
  execution?.abort();
  await execution?.outcome;
  const session = await runtime.repository.get(sessionId);
  if (!session && !execution) return reply(res, json(404, { message: `no session ${sessionId}` }));
  await reply(res, json(200, { aborted: execution !== undefined, session: session ?? null }));
}

async function projectOf(engine: EngineContext, res: ServerResponse, kind: 'sessions' | 'milestones', id: string): Promise<void> {
  if (kind === 'sessions' && !isUuid(id) && /^[0-9a-f-]{4,35}$/i.test(id)) return sessionByPrefix(engine, res, id.toLowerCase());
  const { runtime } = engine;
  const found = !isUuid(id) ? undefined : kind === 'sessions' ? await runtime.repository.get(id) : await runtime.milestones.get(id);
  if (!found) return reply(res, json(404, { message: `no ${kind === 'sessions' ? 'session' : 'milestone'} ${id}` }));
  await reply(res, json(200, { projectId: found.projectId, ...(kind === 'sessions' ? { sessionId: id } : {}) }));
}

/** The one session whose id starts with `prefix` (what `list` shows is enough to name one); 409 when several do. */
async function sessionByPrefix({ runtime }: EngineContext, res: ServerResponse, prefix: string): Promise<void> {
  const matches = await sessionsWithPrefix(runtime.dynamodb, prefix);
  if (matches.length === 0) return reply(res, json(404, { message: `no session ${prefix}` }));
  if (matches.length > 1) return reply(res, json(409, { message: `${matches.length} sessions start with ${prefix}: ${matches.map((m) => m.sessionId).join(', ')}` }));
  await reply(res, json(200, matches[0]));
}

async function totalsDrift({ runtime }: EngineContext, res: ServerResponse, project: string | null): Promise<void> {
  try {
    if (project !== null) parseExecutionInput({ prompt: '-', projectId: project }); // the project id's rules, by name
    await reply(res, json(200, { projects: await projectTotalsDrift(runtime.repository, project ?? undefined) }));
  } catch (err) {
    await reply(res, await errorReply(err));
  }
}

async function totalsBackfill({ runtime }: EngineContext, res: ServerResponse, project: string | null, exact: boolean): Promise<void> {
  try {
    if (project !== null) parseExecutionInput({ prompt: '-', projectId: project }); // the project id's rules, by name
    await reply(res, json(200, { projects: await backfillTotals(runtime.dynamodb.documentClient, runtime.dynamodb.tableName, project ?? undefined, { exact }) }));
  } catch (err) {
    await reply(res, await errorReply(err));
  }
}

async function setProjectLimit({ runtime }: EngineContext, req: IncomingMessage, res: ServerResponse, projectId: string): Promise<void> {
  try {
    parseExecutionInput({ prompt: '-', projectId }); // the project id's rules, by name
    const { limit } = JSON.parse((await readBody(req)) ?? 'null') as { limit?: unknown };
    if (limit !== null && !(Number.isInteger(limit) && (limit as number) >= 1)) {
      throw new InvalidInputError([{ field: 'limit', message: 'must be a whole number from 1, or null' }]);
    }
    await runtime.slots.setLimit(projectId, limit as number | null);
    await reply(res, json(200, { projectId, limit }));
  } catch (err) {
    await reply(res, await errorReply(err));
  }
}

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
