import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { validate as isUuid } from 'uuid';
import { SESSION_STATUSES, readableCause, type SessionRecord, type SessionStatus, type SessionSummary } from '../sessions/session-item.js';
import type { SessionPage, UsageTotals } from '../sessions/session-repository.js';
import type { ProjectDrift } from '../sessions/totals-check.js';
import type { MilestoneRecord } from '../sessions/milestone-item.js';
import type { MilestoneView } from '../sessions/milestone-repository.js';
import type { SessionPolicy } from '../sessions/session-creation.js';
import { configuredClaudeEndpoint, describeEndpoint, localProvider } from '../local/local-endpoint.js';
import type { LocalRunRequest, StateEvent } from '../local/local-engine.js';
import { connectEngine, EngineRequestError, type EngineClient } from './engine-client.js';
import { RemoteSessions, apiUrlOf } from './api-client.js';
import { isLoopbackName } from '../local/loopback-guard.js';
import { parseRunFlags, runInput } from './run-flags.js';
import { formatMilestone, formatMs, formatSession, formatSessionTable, formatUsageTable } from './format.js';

/**
 * Local limits come from the environment: CLAUDE_SESSIONS_MAX_CONCURRENT_SESSIONS, CLAUDE_SESSIONS_MONTHLY_BUDGET_USD,
 * CLAUDE_SESSIONS_PROJECT_LIMITS (JSON caps by project), …: the deployment's variables behind a prefix.
 */
const POLICY_ENV_PREFIX = 'CLAUDE_SESSIONS_';

/** A start refused before any execution: said in one line, exit 1. */
const REFUSALS = new Set(['MilestoneUnavailableError', 'BudgetExceededError', 'ProjectAtCapacityError']);

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Lets the caller stop a run or a server (Ctrl-C). */
  onInterrupt?: (stop: () => void) => void;
  /** The API the commands talk to (--api, CLAUDE_SESSIONS_API); absent: the local engine. */
  api?: URL;
  /** What `run -` reads its prompt from (the process's stdin). */
  stdin?: AsyncIterable<Buffer | string>;
}

const USAGE = `claude-sessions: run Claude Code headless as tracked sessions (the local runtime)

  run <prompt>|-|--prompt-file F [--project P] [--task T] [--session-id UUID] [--runtime lambda|fargate]
               [--milestone UUID] [--repo URL|path [--ref R] [--branch B]] [--tools T,…]
               [--max-turns N] [--max-budget-usd X] [--timeout-seconds S] [--provider anthropic|bedrock] [--json]
  milestone open --project P [--json]   a conversation later runs continue (run --milestone)
  milestone show <milestoneId> [--project P] [--json]   its tasks, their usage and the totals
  milestone close <milestoneId> [--project P]          takes no more tasks; its transcript expires
  list  [--project P] [--status S] [--limit N] [--json]
  show  <sessionId or a unique start of it> [--project P] [--json]
  usage [--project P] [--json]
  abort <sessionId>            stop a running session's execution; it closes ABORTED
  serve [--port 8787] [--max-concurrent-sessions N]
                               the engine in the foreground: the HTTP API of API Gateway, and a web
                               page of the sessions, on 127.0.0.1
  project limit <projectId> <N|default>   the project's own maxConcurrentSessions
  totals check [--project P] [--table T] [--json]
                               recompute each project's totals from its session items and print what
                               differs (exit 1 if anything does); --table: a deployed stack's
                               SessionTableName, read with your AWS credentials
  totals backfill [--project P] [--table T] [--exact] [--json]
                               make each project's totals and registry item hold what its session
                               items give (tables from before they existed); safe to run twice, and
                               while sessions run
  --version                    this package's version and its Claude CLI's

State lives in ./.claude-sessions (or $CLAUDE_SESSIONS_HOME), held by one engine process that
runs the executions: every command is its client, and starts one in the background when none
runs (it logs to .claude-sessions/engine.log and exits after 5 idle minutes). Without ANTHROPIC_API_KEY,
run talks to a built-in local stand-in for the Anthropic API. With --provider bedrock (or
CLAUDE_SESSIONS_PROVIDER=bedrock) Claude runs through Amazon Bedrock with your AWS credentials
and ANTHROPIC_MODEL, or a built-in Bedrock stand-in when there are none.

--api <url> (or CLAUDE_SESSIONS_API) on any command: talk to that sessions API instead, a
deployed stack's (the ApiUrl output; requests signed with SigV4 from your AWS credentials) or
another engine's. The API's paths name the project (/projects/{projectId}/…): against a deployed
stack, show and milestone show/close need --project; the local engine finds it by the id.`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  try {
    // --api <url> anywhere: every command then talks to that API (a deployed stack, another engine).
    const at = argv.findIndex((a) => a === '--api' || a.startsWith('--api='));
    const apiFlag = at < 0 ? undefined : argv[at]!.startsWith('--api=') ? argv[at]!.slice(6) : argv[at + 1];
    if (at >= 0 && apiFlag === undefined) throw new UsageError('--api needs the API\'s URL');
    const args = at < 0 ? argv : argv.filter((_, i) => i !== at && !(i === at + 1 && !argv[at]!.startsWith('--api=')));
    const api = apiUrlOf(apiFlag, io.env);
    if (api) io = { ...io, api };
    return await dispatch(args, io);
  } catch (err) {
    return reportError(err, io);
  }
}

async function dispatch(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return await runCommand(rest, io);
    case 'list':
      return await listCommand(rest, io);
    case 'show':
      return await showCommand(rest, io);
    case 'usage':
      return await usageCommand(rest, io);
    case 'serve':
      return await serveCommand(rest, io, false);
    case 'engine':
      return await serveCommand(rest, io, true);
    case 'abort':
      return await abortCommand(rest, io);
    case 'milestone':
      return await milestoneCommand(rest, io);
    case 'project':
      return await projectCommand(rest, io);
    case 'totals':
      return await totalsCommand(rest, io);
    case 'version':
    case '--version':
    case '-V':
      io.stdout(`${await versionLine()}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.stdout(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** How a failed command says why, and its exit code. */
function reportError(err: unknown, io: CliIo): number {
  // Bad input, as the engine's schema names it (400) or this process's (checkProjectId).
  const fieldErrors = err instanceof EngineRequestError && err.status === 400
    ? err.body.errors
    : (err as Error)?.name === 'InvalidInputError' ? (err as { errors: FieldErrors }).errors : undefined;
  if (fieldErrors) {
    io.stderr(`error: invalid input\n${fieldErrors.map((e) => `  ${flagOf(e.field)}: ${e.message}`).join('\n')}\n`);
    return 2;
  }
  if (err instanceof Error && (REFUSALS.has(err.name) || (err instanceof EngineRequestError && REFUSALS.has(err.body.name ?? '')))) {
    io.stderr(`error: ${err.message}\n`);
    return 1;
  }
  if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    io.stderr(`error: ${(err as Error).message}\n${USAGE_HINT}\n`);
    return 2;
  }
  io.stderr(`error: ${(err as Error).message ?? String(err)}\n`);
  return 1;
}

type FieldErrors = Array<{ field: string; message: string }>;

const USAGE_HINT = 'Run `claude-sessions --help` for the commands and their flags.';

/** The input's fields as the user typed them: the flag that sets each. */
const FLAG_OF_FIELD: Record<string, string> = {
  projectId: '--project', taskId: '--task', sessionId: '--session-id', mode: '--mode', milestoneId: '--milestone',
  runtime: '--runtime', maxTurns: '--max-turns', maxBudgetUsd: '--max-budget-usd', timeoutSeconds: '--timeout-seconds',
  workspace: '--repo', 'workspace.repo': '--repo', 'workspace.ref': '--ref', 'workspace.branch': '--branch', tools: '--tools',
};

function flagOf(field: string): string {
  return FLAG_OF_FIELD[field] ?? (field.startsWith('tools.') ? '--tools' : field);
}

/** This package's version and the Claude CLI's it runs. */
async function versionLine(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const { createRequire } = await import('node:module');
  const { PROJECT_ROOT } = await import('../project-root.js');
  const own = JSON.parse(await readFile(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  let claude = 'not installed';
  try {
    claude = (createRequire(join(PROJECT_ROOT, 'package.json'))('@anthropic-ai/claude-code/package.json') as { version: string }).version;
  } catch {
    // said as not installed
  }
  return `claude-sessions ${own.version} (Claude Code ${claude})`;
}

/**
 * A project id's rules, by name, checked here before anything is asked of the engine. The
 * schema (zod) is loaded only for this: it would add ~0.1 s to every `run`, which the engine checks.
 */
async function checkProjectId(projectId: string): Promise<void> {
  const { parseExecutionInput } = await import('../sessions/execution-input.js');
  parseExecutionInput({ prompt: '-', projectId });
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals = 0) {
  const parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true });
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument "${parsed.positionals[positionals]}"`);
  return parsed;
}

/** The first line of a command on the default state folder. */
export function stateLine(folder: string): string {
  return `State: ${folder} (this directory's; set CLAUDE_SESSIONS_HOME to one folder to use it from anywhere)`;
}

function home(io: CliIo): string {
  return resolve(io.cwd, io.env.CLAUDE_SESSIONS_HOME || join(io.cwd, '.claude-sessions'));
}

/** The engine that holds the state folder, started in the background if none runs (lib/cli/engine-client.ts). */
function engine(io: CliIo): Promise<EngineClient> {
  // The default folder is this directory's: said first, so the same command elsewhere (another
  // engine, other sessions) is no surprise.
  if (!io.env.CLAUDE_SESSIONS_HOME) io.stderr(`${stateLine(home(io))}\n`);
  return connectEngine(home(io), io.env, io.cwd, (line) => io.stderr(`${line}\n`));
}

/** What the reading commands talk to: the API --api names, else the local engine. */
type SessionsClient = Pick<EngineClient, 'url' | 'call' | 'send'>;

function sessionsClient(io: CliIo): Promise<SessionsClient> {
  return io.api ? Promise.resolve(new RemoteSessions(io.api, { env: io.env })) : engine(io);
}

async function runCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseRunFlags(args);
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  const provider = localProvider(values.provider, io.env);
  const input = runInput(await promptOf(positionals[0], values['prompt-file'], io), values);
  // A repository on this machine that is not there: said now, not as a FAILED session.
  const repo = (input.workspace as { repo?: string } | undefined)?.repo;
  if (!io.api && repo !== undefined) await assertLocalRepoExists(repo);
  // The engine (or the API) starts it with `startSession`: the defaults filled in, the input checked
  // with the workflow's schema before any execution (a 400 naming each field).
  const started = Date.now();
  const progress = (text: string) => io.stderr(`${text}\n`);

  if (io.api) return runThroughApi(input, values.json ?? false, io, io.api);
  // Claude as this shell's environment names it; where it names none, the engine's built-in stand-in.
  const endpoint = await configuredClaudeEndpoint(io.env, provider);
  const request: LocalRunRequest = { input, endpoint, provider, model: io.env.ANTHROPIC_MODEL || undefined };
  const client = await engine(io);
  const accepted = await client.call<{ sessionId: string; projectId: string; started: boolean; endpoint: string }>('POST', '/local/runs', request);
  const { sessionId } = accepted;
  if (!accepted.started) return sessionTaken(sessionId, io);
  progress(accepted.endpoint);
  progress(`Session ${sessionId} · project ${accepted.projectId}${values.milestone ? ` · milestone ${values.milestone}` : ''} · local state machine, engine ${client.url}`);
  io.onInterrupt?.(() => {
    progress('Interrupted: aborting the execution…');
    void client.call('POST', `/sessions/${sessionId}/abort`).catch(() => undefined);
  });
  let end: import('./engine-client.js').EndEvent | undefined;
  const stamp = () => `[${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s]`;
  try {
    for await (const message of client.events(sessionId, true)) {
      if (message.event === 'state') {
        const line = describeState(message.data);
        if (line) progress(`${stamp()} ${line}`);
      } else end = message.data;
    }
  } catch {
    // the connection broke: said below
  }
  if (!end) {
    progress(`error: the engine (process ${client.pid}) went away before session ${sessionId} ended; the next command closes it ABORTED.`);
    return 1;
  }
  const session = end.session;
  if (!session) {
    const outcome = end.outcome;
    progress(`error: execution ${outcome?.status ?? 'ended'} before a session was created: ${outcome?.error ?? ''} ${readableCause(outcome?.cause ?? null) ?? ''}`.trim());
    return 1;
  }
  if (values.json) io.stdout(`${JSON.stringify(session, null, 2)}\n`);
  else io.stdout(`\n${formatSession(session)}\n`);
  progress(`Done in ${formatMs(Date.now() - started)}.`);
  return session.status === 'COMPLETED' ? 0 : 1;
}

/** A `run` whose session id is taken: nothing started, here as through the API (`started: false`). */
function sessionTaken(sessionId: string, io: CliIo): number {
  io.stderr(`error: session ${sessionId} exists already; Claude was not run again and the session is unchanged (claude-sessions show ${sessionId}).\n`);
  return 1;
}

/** A path or a file:// URL names a repository on this machine: it must be there. */
async function assertLocalRepoExists(repo: string): Promise<void> {
  const { fileURLToPath } = await import('node:url');
  const { stat } = await import('node:fs/promises');
  let path: string | undefined;
  if (repo.startsWith('/')) path = repo;
  else if (repo.startsWith('file:')) {
    try {
      path = fileURLToPath(repo);
    } catch {
      return; // the schema names what is wrong with it
    }
  }
  if (path && !(await stat(path).catch(() => undefined))?.isDirectory()) throw new UsageError(`--repo: no repository at ${path} (no such directory)`);
}

/**
 * The prompt: the argument, or stdin for `-`, or the file --prompt-file names (a long prompt
 * does not fit in an argument list, and a prompt there is in every process list).
 */
async function promptOf(argument: string | undefined, file: string | undefined, io: CliIo): Promise<string | undefined> {
  if (file !== undefined) {
    if (argument !== undefined) throw new UsageError('give the prompt as an argument, as - (stdin) or with --prompt-file, not two of them');
    const { readFile } = await import('node:fs/promises');
    return readFile(resolve(io.cwd, file), 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`--prompt-file: cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
    });
  }
  if (argument !== '-') return argument;
  if (!io.stdin) throw new UsageError('run - reads the prompt from stdin, and this process has none');
  const chunks: Buffer[] = [];
  for await (const chunk of io.stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** How often `run --api` reads the session while it runs: API Gateway streams no events. */
const API_POLL_MS = 2_000;

/**
 * `run` against an API (--api): POST /projects/{projectId}/sessions, as curl would, then GET the
 * session until it closes. Claude runs on that API's deployment; its model and key are the deployment's.
 */
async function runThroughApi(input: Record<string, unknown>, json: boolean, io: CliIo, api: URL): Promise<number> {
  const client = new RemoteSessions(api, { env: io.env });
  const progress = (text: string) => io.stderr(`${text}\n`);
  const started = Date.now();
  // The project is the path's: the API cannot look a milestone's up before it is given one.
  const { projectId: given, ...body } = input;
  if (given === undefined && body.milestoneId !== undefined) throw new UsageError('run --milestone through an API needs --project: the API\'s paths name the project');
  const projectId = String(given ?? (await import('../sessions/execution-input.js')).DEFAULT_PROJECT_ID);
  const sessions = `/projects/${encodeURIComponent(projectId)}/sessions`;
  const accepted = await client.call<{ sessionId: string; started: boolean; executionArn?: string }>('POST', sessions, body);
  if (!accepted.started) return sessionTaken(accepted.sessionId, io);
  progress(`Session ${accepted.sessionId} · project ${projectId} · ${client.url}${accepted.executionArn ? ` · ${accepted.executionArn}` : ''}`);
  io.onInterrupt?.(() => {
    progress(`Interrupted: the session goes on at ${client.url}; stop its execution from the Step Functions console${accepted.executionArn ? ` (${accepted.executionArn})` : ''}.`);
    process.exit(130);
  });
  let session: SessionRecord | undefined;
  let shown = '';
  for (;;) {
    session = await find<SessionRecord>(client, `${sessions}/${accepted.sessionId}`);
    const status = session?.status ?? 'starting';
    if (status !== shown) progress(`[${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s] ${(shown = status)}`);
    if (session && session.status !== 'RUNNING') break;
    await new Promise((r) => setTimeout(r, API_POLL_MS));
  }
  io.stdout(json ? `${JSON.stringify(session, null, 2)}\n` : `\n${formatSession(session)}\n`);
  return session.status === 'COMPLETED' ? 0 : 1;
}

function describeState(event: StateEvent): string | undefined {
  switch (event.type) {
    case 'StateEntered':
      return `→ ${event.state}`;
    case 'StateFailed':
      return `✗ ${event.state}: ${event.error}`;
    case 'StateRetried':
      return `↻ ${event.state} (retry ${event.attempt})`;
    case 'ExecutionSucceeded':
      return '✓ execution succeeded';
    case 'ExecutionFailed':
      return `✗ execution failed: ${event.error}`;
    case 'ExecutionAborted':
      return '✗ execution aborted';
    case 'ExecutionTimeout':
      return '✗ execution timed out';
    default:
      return undefined;
  }
}

/** Every project's id, or the one asked for. */
async function projectsOf(client: SessionsClient, project: string | undefined): Promise<string[]> {
  return project ? [project] : (await client.call<{ items: string[] }>('GET', '/projects')).items;
}

async function listCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, {
    project: { type: 'string' },
    status: { type: 'string' },
    limit: { type: 'string', default: '50' },
    json: { type: 'boolean', default: false },
  });
  const status = values.status?.toUpperCase();
  if (status && !SESSION_STATUSES.includes(status as SessionStatus)) {
    throw new UsageError(`--status must be one of ${SESSION_STATUSES.join(', ')}`);
  }
  const limit = Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a whole number from 1');
  const client = await sessionsClient(io);
  const all: SessionSummary[] = [];
  for (const projectId of await projectsOf(client, values.project)) {
    // The API's pages hold at most 100: follow nextToken up to the limit.
    let nextToken: string | undefined;
    let taken = 0;
    do {
      const query = new URLSearchParams({ limit: String(Math.min(100, limit - taken)), ...(status ? { status } : {}), ...(nextToken ? { nextToken } : {}) });
      const page = await client.call<SessionPage>('GET', `/projects/${encodeURIComponent(projectId)}/sessions?${query}`);
      all.push(...page.items);
      taken += page.items.length;
      nextToken = page.nextToken ?? undefined;
    } while (nextToken && taken < limit);
  }
  const sessions = all.sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, limit);
  io.stdout(values.json ? `${JSON.stringify(sessions, null, 2)}\n` : `${formatSessionTable(sessions)}\n`);
  return 0;
}

/** A GET that may find nothing: 404 and, for an id that is not a UUID, 400 mean "no such thing". */
async function find<T>(client: SessionsClient, path: string): Promise<T | undefined> {
  const { status, body } = await client.send<T>('GET', path);
  if (status === 404 || status === 400) return undefined;
  if (status >= 400) throw new EngineRequestError(status, body as never);
  return body;
}

/**
 * The project of a session or milestone known by its id: --project, else the local engine's
 * lookup (undefined: it knows no such id). A deployed API answers only under the project's path.
 */
async function projectOf(client: SessionsClient, io: CliIo, kind: 'sessions' | 'milestones', id: string, flag: string | undefined, command: string): Promise<string | undefined> {
  if (flag !== undefined) {
    await checkProjectId(flag);
    return flag;
  }
  if (io.api && !isLoopbackName(io.api.hostname)) {
    throw new UsageError(`${command} needs --project with a deployed API: its paths name the project (/projects/{projectId}/${kind}/…)`);
  }
  return (await find<{ projectId: string }>(client, `/local/${kind}/${encodeURIComponent(id)}`))?.projectId;
}

async function showCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { project: { type: 'string' }, json: { type: 'boolean', default: false } }, 1);
  const sessionId = positionals[0];
  if (!sessionId) throw new UsageError('show needs a session id');
  const client = await sessionsClient(io);
  // A unique prefix of a session id (as `list` shows them) stands for it, where the local engine can look.
  const full = isUuid(sessionId) || values.project !== undefined || (io.api && !isLoopbackName(io.api.hostname))
    ? sessionId
    : (await find<{ sessionId?: string }>(client, `/local/sessions/${encodeURIComponent(sessionId)}`))?.sessionId ?? sessionId;
  const projectId = await projectOf(client, io, 'sessions', full, values.project, 'show');
  const session = projectId === undefined
    ? undefined
    : await find<SessionRecord>(client, `/projects/${encodeURIComponent(projectId)}/sessions/${encodeURIComponent(full)}`);
  if (!session) {
    io.stderr(`error: no session ${sessionId}\n`);
    return 1;
  }
  io.stdout(values.json ? `${JSON.stringify(session, null, 2)}\n` : `${formatSession(session, Infinity)}\n`);
  return 0;
}

async function usageCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { project: { type: 'string' }, json: { type: 'boolean', default: false } });
  const client = await sessionsClient(io);
  const totals: UsageTotals[] = [];
  for (const projectId of await projectsOf(client, values.project)) {
    totals.push(await client.call<UsageTotals>('GET', `/projects/${encodeURIComponent(projectId)}/usage`));
  }
  io.stdout(values.json ? `${JSON.stringify(totals, null, 2)}\n` : `${formatUsageTable(totals)}\n`);
  return 0;
}

async function milestoneCommand(args: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'open') {
    const { values } = parse(rest, { project: { type: 'string' }, json: { type: 'boolean', default: false } });
    if (!values.project) throw new UsageError('milestone open needs --project');
    await checkProjectId(values.project);
    const { links: _links, ...milestone } = await (await sessionsClient(io)).call<MilestoneRecord & { links: unknown }>(
      'POST', `/projects/${encodeURIComponent(values.project)}/milestones`,
    );
    if (values.json) io.stdout(`${JSON.stringify(milestone, null, 2)}\n`);
    else {
      io.stdout(`${milestone.milestoneId}\n`);
      io.stderr(`Milestone opened for project ${milestone.projectId}. Run tasks in it with:\n  npx claude-sessions run "<prompt>" --milestone ${milestone.milestoneId}\n`);
    }
    return 0;
  }
  if (action === 'show' || action === 'close') {
    const { values, positionals } = parse(rest, { project: { type: 'string' }, json: { type: 'boolean', default: false } }, 1);
    const milestoneId = positionals[0];
    if (!milestoneId || !isUuid(milestoneId)) throw new UsageError(`milestone ${action} needs a milestone id (a UUID)`);
    const client = await sessionsClient(io);
    const projectId = await projectOf(client, io, 'milestones', milestoneId, values.project, `milestone ${action}`);
    const path = projectId === undefined ? undefined : `/projects/${encodeURIComponent(projectId)}/milestones/${milestoneId}`;
    if (action === 'close' && path) await client.call('POST', `${path}/close`);
    const view = path === undefined ? undefined : await find<MilestoneView>(client, path);
    if (!view) {
      io.stderr(`error: no milestone ${milestoneId}\n`);
      return 1;
    }
    io.stdout(values.json ? `${JSON.stringify(view, null, 2)}\n` : `${formatMilestone(view)}\n`);
    return 0;
  }
  throw new UsageError(action ? `unknown milestone action "${action}" (open, show, close)` : 'milestone needs an action: open, show or close');
}

async function projectCommand(args: string[], io: CliIo): Promise<number> {
  const [action, projectId, value, ...extra] = args;
  if (action !== 'limit' || !projectId || value === undefined || extra.length) {
    throw new UsageError('project limit <projectId> <N|default>');
  }
  await checkProjectId(projectId);
  const limit = value === 'default' ? null : Number(value);
  if (limit !== null && !(Number.isInteger(limit) && limit >= 1)) throw new UsageError('the limit must be a whole number from 1, or default');
  if (io.api) throw new UsageError('project limit changes the local state only: on a deployed stack, set the PROJECT#<id>/SLOTS item\'s maxConcurrentSessions');
  await (await engine(io)).call('PUT', `/projects/${encodeURIComponent(projectId)}/limit`, { limit });
  io.stderr(limit === null
    ? `Project ${projectId} follows the deployment's maxConcurrentSessions again.\n`
    : `Project ${projectId} may run ${limit} session(s) at once where a limit applies (serve --max-concurrent-sessions, or the stack's).\n`);
  return 0;
}

/** The engine's git credential, a token or a GitHub App, and where it may go (CLAUDE_SESSIONS_GIT_TOKEN_SCOPES): as gitTokenSecretName or githubAppSecretName, and gitTokenScopes, on AWS. */
type EngineGit = { token?: string; app?: import('../github/app-token.js').GitHubAppTokens; tokenScopes: string[] };

const APP_ID_VAR = 'CLAUDE_SESSIONS_GITHUB_APP_ID';
const APP_KEY_VAR = 'CLAUDE_SESSIONS_GITHUB_APP_PRIVATE_KEY_FILE';

/** `sessions`: what the engine's sessions may run, which decides where the App's key file must be out of their reach. */
async function gitTokenFromEnv(env: NodeJS.ProcessEnv, sessions: { shellOnLambda?: boolean }): Promise<EngineGit | undefined> {
  const token = env.CLAUDE_SESSIONS_GIT_TOKEN;
  const appId = env[APP_ID_VAR];
  const keyFile = env[APP_KEY_VAR];
  const scopes = env.CLAUDE_SESSIONS_GIT_TOKEN_SCOPES?.split(',').map((s) => s.trim()).filter(Boolean);
  if (!token && !appId && !keyFile && !scopes?.length) return undefined;
  if (token && (appId || keyFile)) throw new UsageError(`CLAUDE_SESSIONS_GIT_TOKEN or a GitHub App (${APP_ID_VAR}, ${APP_KEY_VAR}), not both`);
  if (!appId !== !keyFile) throw new UsageError(`${APP_ID_VAR} and ${APP_KEY_VAR} go together: the App's id and the path of its private key (.pem)`);
  if ((!token && !appId) || !scopes?.length) {
    throw new UsageError('CLAUDE_SESSIONS_GIT_TOKEN (or a GitHub App) and CLAUDE_SESSIONS_GIT_TOKEN_SCOPES go together: the token is sent only to the URL prefixes the scopes name (e.g. https://github.com/acme/)');
  }
  const { checkedTokenScopes } = await import('../claude/repository-scopes.js');
  let tokenScopes: string[];
  try {
    tokenScopes = checkedTokenScopes(scopes, 'CLAUDE_SESSIONS_GIT_TOKEN_SCOPES')!;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (token) return { token, tokenScopes };
  if (!/^\d+$/.test(appId!)) throw new UsageError(`${APP_ID_VAR} must be the App's numeric id (its settings page, "App ID")`);
  const { GitHubAppTokens, appPrivateKey } = await import('../github/app-token.js');
  const { readAppKeyFile, AppKeyReachError } = await import('../local/app-key-file.js');
  // Read once, here: the engine holds the key in memory from now on.
  let pem: string;
  try {
    pem = await readAppKeyFile(keyFile!, APP_KEY_VAR, sessions);
  } catch (err) {
    if (err instanceof AppKeyReachError) throw new UsageError(err.message);
    throw new UsageError(`${APP_KEY_VAR}: cannot read ${keyFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let privateKey;
  try {
    privateKey = appPrivateKey(pem, APP_KEY_VAR);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const app = { appId: appId!, privateKey };
  return { app: new GitHubAppTokens(await githubApiUrlFromEnv(env), async () => app, `${APP_ID_VAR} and ${APP_KEY_VAR}`), tokenScopes };
}

/** GitHub's REST API for the engine (CLAUDE_SESSIONS_GITHUB_API_URL; GitHub Enterprise Server's https://<host>/api/v3). */
async function githubApiUrlFromEnv(env: NodeJS.ProcessEnv): Promise<string> {
  const { checkedGitHubApiUrl } = await import('../github/github-client.js');
  try {
    return checkedGitHubApiUrl(env.CLAUDE_SESSIONS_GITHUB_API_URL, 'CLAUDE_SESSIONS_GITHUB_API_URL');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * `totals check`: the project totals (what `usage` and the budget read) against the figures the
 * session items give; `totals backfill`: the totals and the registry made to hold them (tables from
 * before they existed). Through the engine for the local state, or straight on a deployed table.
 */
async function totalsCommand(args: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = args;
  if (action !== 'check' && action !== 'backfill') throw new UsageError('totals check|backfill [--project P] [--table T] [--json] (backfill: [--exact])');
  const { values } = parse(rest, { project: { type: 'string' }, table: { type: 'string' }, json: { type: 'boolean', default: false }, exact: { type: 'boolean', default: false } });
  if (values.project !== undefined) await checkProjectId(values.project);
  if (values.table !== undefined && !values.table) throw new UsageError('--table needs the table\'s name (the stack\'s SessionTableName output)');
  if (values.table === undefined && io.api) throw new UsageError(`totals ${action} reads the table, not the API: give --table with the stack's SessionTableName`);
  const onTable = async <T>(fn: (client: import('@aws-sdk/lib-dynamodb').DynamoDBDocumentClient, table: string) => Promise<T>): Promise<T> => {
    const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
    const { DynamoDBDocumentClient } = await import('@aws-sdk/lib-dynamodb');
    const client = DynamoDBDocumentClient.from(new DynamoDBClient({}));
    try {
      return await fn(client, values.table!);
    } finally {
      client.destroy();
    }
  };
  const query = values.project ? `?${new URLSearchParams({ project: values.project })}` : '';
  if (action === 'backfill') {
    const backfillQuery = values.project || values.exact ? `?${new URLSearchParams({ ...(values.project ? { project: values.project } : {}), ...(values.exact ? { exact: 'true' } : {}) })}` : '';
    const { backfillTotals } = await import('../sessions/totals-backfill.js');
    const done = values.table !== undefined
      ? await onTable((client, table) => backfillTotals(client, table, values.project, { exact: values.exact }))
      : (await (await engine(io)).call<{ projects: Awaited<ReturnType<typeof backfillTotals>> }>('POST', `/local/totals/backfill${backfillQuery}`)).projects;
    if (values.json) io.stdout(`${JSON.stringify(done, null, 2)}\n`);
    else {
      for (const p of done) {
        const marked = p.runningMarked ? `, ${p.runningMarked} running session(s) put in the running index` : '';
        io.stdout(p.rewritten.length
          ? `${p.projectId}: wrote ${p.rewritten.join(', ')} from its ${p.sessions} session(s)${marked}\n`
          : `${p.projectId}: the totals already held its ${p.sessions} session(s)${marked}\n`);
      }
      if (!done.length) io.stdout('No projects.\n');
    }
    return 0;
  }
  let projects: ProjectDrift[];
  if (values.table !== undefined) {
    const { SessionRepository } = await import('../sessions/session-repository.js');
    const { projectTotalsDrift } = await import('../sessions/totals-check.js');
    projects = await onTable((client, table) => projectTotalsDrift(new SessionRepository(client, table), values.project));
  } else {
    projects = (await (await engine(io)).call<{ projects: ProjectDrift[] }>('GET', `/local/totals/drift${query}`)).projects;
  }
  const drifted = projects.filter((p) => p.drift.length > 0);
  if (values.json) io.stdout(`${JSON.stringify(projects, null, 2)}\n`);
  else {
    for (const p of projects) {
      io.stdout(p.drift.length
        ? `${p.projectId}: the totals differ from its ${p.sessions} session(s)\n${p.drift.map((d) => `  ${d}`).join('\n')}\n`
        : `${p.projectId}: the totals match its ${p.sessions} session(s)\n`);
    }
    if (!projects.length) io.stdout('No projects.\n');
  }
  return drifted.length ? 1 : 0;
}

/**
 * The engine's POST /webhooks/github, when both its secret and its triggers are set (one without
 * the other is a usage error); with a git token, its sessions' repositories and reports on GitHub
 * (CLAUDE_SESSIONS_GITHUB_API_URL).
 */
async function githubWebhookFromEnv(
  env: NodeJS.ProcessEnv, git: EngineGit | undefined,
): Promise<NonNullable<import('../local/local-engine.js').EngineOptions['github']> | undefined> {
  const secret = env.CLAUDE_SESSIONS_GITHUB_WEBHOOK_SECRET;
  const { parseGitHubTriggers } = await import('../api/github-webhook.js');
  let triggers;
  try {
    triggers = parseGitHubTriggers(env.CLAUDE_SESSIONS_GITHUB_TRIGGERS, 'CLAUDE_SESSIONS_GITHUB_TRIGGERS');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (!secret && !triggers) return undefined;
  if (!secret || !triggers) {
    throw new UsageError('CLAUDE_SESSIONS_GITHUB_WEBHOOK_SECRET and CLAUDE_SESSIONS_GITHUB_TRIGGERS go together: the webhook needs its secret and the repositories it maps to projects');
  }
  if (!git) return { secret, triggers };
  const apiUrl = await githubApiUrlFromEnv(env);
  const { appReportToken } = await import('../github/app-token.js');
  // With an App, each report's token is its own, scoped to the session's repository.
  const token = git.app ? appReportToken(git.app) : async () => git.token!;
  return { secret, triggers, gitTokenScopes: git.tokenScopes, report: { apiUrl, token } };
}

/**
 * `serve`: the engine in the foreground, on a fixed port, until Ctrl-C. `engine`: the same,
 * started in the background by a command that found none (--port 0), gone after --idle-exit seconds.
 */
async function serveCommand(args: string[], io: CliIo, background: boolean): Promise<number> {
  const { values } = parse(args, {
    port: { type: 'string', default: background ? '0' : '8787' },
    'max-concurrent-sessions': { type: 'string' },
    'idle-exit': { type: 'string' },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError('--port must be a port number');
  const idleExitSeconds = values['idle-exit'] === undefined ? undefined : Number(values['idle-exit']);
  if (idleExitSeconds !== undefined && !(idleExitSeconds > 0)) throw new UsageError('--idle-exit must be a number of seconds');
  const { sessionPolicyFromEnv } = await import('../sessions/session-creation.js');
  let policy: SessionPolicy = sessionPolicyFromEnv(io.env, POLICY_ENV_PREFIX);
  try {
    if (values['max-concurrent-sessions'] !== undefined) {
      // Only this one field: the rest of the policy (budget, project caps…) stays the environment's.
      policy = { ...policy, maxConcurrentSessions: sessionPolicyFromEnv({ MAX_CONCURRENT_SESSIONS: values['max-concurrent-sessions'] }).maxConcurrentSessions };
    }
  } catch {
    throw new UsageError('--max-concurrent-sessions must be a whole number from 1');
  }
  const git = await gitTokenFromEnv(io.env, policy);
  if (!background) await takeOverFromBackgroundEngine(io);
  const { startEngine } = await import('../local/local-engine.js');
  const running = await startEngine({
    home: home(io), port, policy, idleExitSeconds, command: background ? 'claude-sessions engine' : 'claude-sessions serve',
    standby: io.env.CLAUDE_SESSIONS_STANDBY !== '0',
    git,
    github: await githubWebhookFromEnv(io.env, git),
  });
  const { runtime, url } = running;
  io.stderr(
    `${describeEndpoint(runtime.endpoint, runtime.standIn)}\n` +
      `claude-sessions ${background ? 'engine' : 'API'} listening on ${url} (state in ${home(io)}); open ${url}/ for the sessions page.${
        idleExitSeconds ? ` Exits after ${idleExitSeconds} s idle.` : ' Ctrl-C stops it.'}\n`,
  );
  const stopped = await Promise.race([
    running.idle,
    new Promise<undefined>((resolve) => io.onInterrupt?.(() => resolve(undefined))),
  ]);
  if (stopped) {
    io.stderr(`The engine exits: ${stopped}.\n`);
    return 0;
  }
  io.stderr('Stopping: running sessions are aborted and closed ABORTED.\n');
  await running.close();
  return 0;
}

/** A background engine that a command started holds the state: `serve` asks it to exit, unless it is running sessions. */
async function takeOverFromBackgroundEngine(io: CliIo): Promise<void> {
  const { findEngine } = await import('./engine-client.js');
  const { readEngineFile } = await import('../local/engine-file.js');
  const background = await findEngine(home(io));
  if (!background || (await readEngineFile(home(io)))?.idleExitSeconds === null) return;
  const { status, body } = await background.send<{ message?: string }>('POST', '/local/engine/exit');
  if (status !== 202) throw new Error(`the background engine (process ${background.pid}, ${background.url}) holds the state: ${body?.message ?? status}; wait for it or abort them`);
  const { isAlive } = await import('../local/state-lock.js');
  for (let i = 0; i < 100 && isAlive(background.pid); i++) await new Promise((r) => setTimeout(r, 100));
  io.stderr(`The background engine (process ${background.pid}) handed the state over.\n`);
}

async function abortCommand(args: string[], io: CliIo): Promise<number> {
  const { positionals } = parse(args, {}, 1);
  const sessionId = positionals[0];
  if (!sessionId || !isUuid(sessionId)) throw new UsageError('abort needs a session id (a UUID)');
  if (io.api && !isLoopbackName(io.api.hostname)) {
    throw new UsageError('abort reaches a local engine only; on AWS stop the session\'s execution: aws stepfunctions stop-execution --execution-arn <its executionArn>');
  }
  const client = await sessionsClient(io);
  const { status, body } = await client.send<{ aborted: boolean; session: SessionRecord | null; message?: string }>('POST', `/sessions/${sessionId}/abort`);
  if (status === 404 || !body.session) {
    io.stderr(`error: no session ${sessionId}\n`);
    return 1;
  }
  if (status >= 400) throw new EngineRequestError(status, body);
  io.stderr(body.aborted
    ? `Abort delivered to the engine (${client.url}): it stopped the execution, and the session closed ${body.session.status}.\n`
    : `Session ${sessionId} is not running (it ended ${body.session.status}); nothing to abort.\n`);
  io.stdout(`${formatSession(body.session)}\n`);
  return 0;
}
