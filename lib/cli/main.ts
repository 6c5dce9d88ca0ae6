import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { validate as isUuid } from 'uuid';
import { InvalidInputError, validateStartInput } from '../sessions/execution-input.js';
import { SESSION_STATUSES, readableCause, type SessionRecord, type SessionStatus } from '../sessions/session-item.js';
import type { UsageTotals } from '../sessions/session-repository.js';
import type { EventLog, LocalRuntime } from '../local/local-runtime.js';
import { ABORT_REQUESTS_DIR, LocalStateBusyError } from '../local/state-lock.js';
import { sessionPolicyFromEnv, type SessionPolicy } from '../sessions/session-creation.js';
import { startRun, type EarlyStart } from './early-start.js';
import { describeEndpoint } from '../local/local-endpoint.js';
import { parseRunFlags, runInput, type RunFlags } from './run-flags.js';
import { formatMilestone, formatMs, formatSession, formatSessionTable, formatUsageTable } from './format.js';

/** Local limits come from the environment: CLAUDE_SESSIONS_MAX_CONCURRENT_SESSIONS, CLAUDE_SESSIONS_MONTHLY_BUDGET_USD. */
const POLICY_ENV_PREFIX = 'CLAUDE_SESSIONS_';

/** A start refused before any execution: said in one line, exit 1. */
const REFUSALS = new Set(['MilestoneUnavailableError', 'BudgetExceededError', 'ProjectAtCapacityError']);

/**
 * The runtime (Step Functions, DynamoDB, the SDK) is loaded when a command needs it, not
 * before: `run` starts Claude's CLI first, so it boots while this loads (~0.4 s).
 */
async function startRuntime(...args: Parameters<typeof LocalRuntime.start>): Promise<LocalRuntime> {
  const { LocalRuntime } = await import('../local/local-runtime.js');
  return LocalRuntime.start(...args);
}

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Lets the caller stop a run or a server (Ctrl-C). */
  onInterrupt?: (stop: () => void) => void;
}

const USAGE = `claude-sessions: run Claude Code headless as tracked sessions (the local runtime)

  run <prompt> [--project P] [--task T] [--session-id UUID] [--runtime lambda|fargate]
               [--milestone UUID] [--repo URL|path [--ref R] [--branch B]] [--tools T,…]
               [--max-turns N] [--max-budget-usd X] [--timeout-seconds S] [--provider anthropic|bedrock] [--json]
  milestone open --project P [--json]   a conversation later runs continue (run --milestone)
  milestone show <milestoneId> [--json] its tasks, their usage and the totals
  milestone close <milestoneId>         takes no more tasks; its transcript expires
  list  [--project P] [--status S] [--limit N] [--json]
  show  <sessionId> [--json]
  usage [--project P] [--json]
  abort <sessionId>            stop a running session's execution; it closes ABORTED
  serve [--port 8787] [--max-concurrent-sessions N]
                               the HTTP API of API Gateway, and a web page of the sessions, on 127.0.0.1
  project limit <projectId> <N|default>   the project's own maxConcurrentSessions

State lives in ./.claude-sessions (or $CLAUDE_SESSIONS_HOME). Without ANTHROPIC_API_KEY,
run talks to a built-in local stand-in for the Anthropic API. With --provider bedrock (or
CLAUDE_SESSIONS_PROVIDER=bedrock) Claude runs through Amazon Bedrock with your AWS credentials
and ANTHROPIC_MODEL, or a built-in Bedrock stand-in when there are none.`;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `early`: what bin/claude-sessions.js started before loading this (startEarly), for `run`. */
export async function main(argv: string[], io: CliIo, early?: EarlyStart): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await runCommand(rest, io, early);
      case 'list':
        return await listCommand(rest, io);
      case 'show':
        return await showCommand(rest, io);
      case 'usage':
        return await usageCommand(rest, io);
      case 'serve':
        return await serveCommand(rest, io);
      case 'abort':
        return await abortCommand(rest, io);
      case 'milestone':
        return await milestoneCommand(rest, io);
      case 'project':
        return await projectCommand(rest, io);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (err instanceof InvalidInputError) {
      io.stderr(`error: invalid input\n${err.errors.map((e) => `  ${e.field}: ${e.message}`).join('\n')}\n`);
      return 2;
    }
    if (err instanceof Error && REFUSALS.has(err.name)) {
      io.stderr(`error: ${err.message}\n`);
      return 1;
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr(`error: ${(err as Error).message}\n\n${USAGE}\n`);
      return 2;
    }
    io.stderr(`error: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, positionals = 0) {
  const parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true });
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument "${parsed.positionals[positionals]}"`);
  return parsed;
}

function home(io: CliIo): string {
  return io.env.CLAUDE_SESSIONS_HOME || join(io.cwd, '.claude-sessions');
}

async function runCommand(args: string[], io: CliIo, early?: EarlyStart): Promise<number> {
  try {
    const { values, positionals } = parseRunFlags(args);
    if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
    early ??= await startRun(positionals[0], values, io.env);
    return await runSession(positionals[0], values, io, early);
  } finally {
    await early?.standby?.discard(); // nothing if a runner took it
    await early?.standIn?.close();
  }
}

async function runSession(prompt: string | undefined, values: RunFlags, io: CliIo, early: EarlyStart): Promise<number> {
  const input = runInput(prompt, values, early.sessionId);
  // The same schema the workflow applies, first here: a bad flag costs no execution.
  const { workspace } = validateStartInput(input);
  const sessionId = String(input.sessionId);

  const started = Date.now();
  const progress = (text: string) => io.stderr(`${text}\n`);
  const policy = sessionPolicyFromEnv(io.env, POLICY_ENV_PREFIX);
  const { endpoint, standIn } = early;
  let runtime: LocalRuntime | undefined;
  try {
    progress(describeEndpoint(endpoint, standIn));
    runtime = await startRuntime({ home: home(io), command: `claude-sessions run ${sessionId}`, policy, endpoint });
    // A milestone task without --project is in its milestone's project.
    if (values.milestone && !values.project) input.projectId = (await runtime.milestones.get(values.milestone))?.projectId ?? input.projectId;
    const { assertCanStart } = await import('../sessions/start-checks.js');
    await assertCanStart({ projectId: String(input.projectId), milestoneId: values.milestone, tools: input.tools as string[] | undefined, workspace }, {
      repository: runtime.repository, milestones: runtime.milestones, slots: runtime.slots, policy,
    });
    progress(`Session ${sessionId} · project ${input.projectId}${values.milestone ? ` · milestone ${values.milestone}` : ''} · local state machine`);
    // A fresh session's CLI has been booting since startEarly; the runner gives it its prompt.
    const startedAhead = early.standby;
    const execution = runtime.startExecution(input, sessionId, { standby: startedAhead });
    io.onInterrupt?.(() => {
      progress('Interrupted: aborting the execution…');
      execution.abort();
    });
    const showing = showStates(execution.events, started, progress);
    const outcome = await execution.outcome;
    await showing;
    const session = await runtime.repository.get(sessionId);
    if (outcome.error === 'SessionAlreadyExists') {
      progress(`error: session ${sessionId} exists already (${session?.status}); Claude was not run again and the session is unchanged.`);
      return 1;
    }
    if (!session) {
      progress(`error: execution ${outcome.status} before a session was created: ${outcome.error ?? ''} ${readableCause(outcome.cause ?? null) ?? ''}`.trim());
      return 1;
    }
    if (values.json) io.stdout(`${JSON.stringify(session, null, 2)}\n`);
    else io.stdout(`\n${formatSession(session)}\n`);
    progress(`Done in ${formatMs(Date.now() - started)}${startedAhead?.claimed ? " (Claude's CLI was started ahead, while the workflow created the session)" : ''}.`);
    return session.status === 'COMPLETED' ? 0 : 1;
  } finally {
    await runtime?.close();
  }
}

async function showStates(events: AsyncIterable<EventLog>, started: number, print: (s: string) => void): Promise<void> {
  const stamp = () => `[${((Date.now() - started) / 1000).toFixed(2).padStart(6)}s]`;
  for await (const event of events) {
    if (event.type === 'StateEntered') print(`${stamp()} → ${event.state.name}`);
    else if (event.type === 'StateFailed') print(`${stamp()} ✗ ${event.state.name}: ${event.Error}`);
    else if (event.type === 'StateRetried') print(`${stamp()} ↻ ${event.state.name} (retry ${event.retry.attempt})`);
    else if (event.type === 'ExecutionSucceeded') print(`${stamp()} ✓ execution succeeded`);
    else if (event.type === 'ExecutionFailed') print(`${stamp()} ✗ execution failed: ${event.Error}`);
    else if (event.type === 'ExecutionAborted') print(`${stamp()} ✗ execution aborted`);
    else if (event.type === 'ExecutionTimeout') print(`${stamp()} ✗ execution timed out`);
  }
}

async function withRepository<T>(io: CliIo, fn: (runtime: LocalRuntime) => Promise<T>): Promise<T> {
  const runtime = await startRuntime({ home: home(io), endpoint: { apiKey: 'unused' }, command: 'claude-sessions (read)' });
  try {
    return await fn(runtime);
  } finally {
    await runtime.close();
  }
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
  const sessions = await withRepository(io, async ({ repository }) => {
    const projects = values.project ? [values.project] : await repository.projectIds();
    const all: SessionRecord[] = [];
    for (const projectId of projects) {
      const page = await repository.listByProject(projectId, { status: status as SessionStatus | undefined, limit });
      all.push(...page.items);
    }
    return all.sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, limit);
  });
  io.stdout(values.json ? `${JSON.stringify(sessions, null, 2)}\n` : `${formatSessionTable(sessions)}\n`);
  return 0;
}

async function showCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: 'boolean', default: false } }, 1);
  const sessionId = positionals[0];
  if (!sessionId) throw new UsageError('show needs a session id');
  const session = await withRepository(io, ({ repository }) => repository.get(sessionId));
  if (!session) {
    io.stderr(`error: no session ${sessionId}\n`);
    return 1;
  }
  io.stdout(values.json ? `${JSON.stringify(session, null, 2)}\n` : `${formatSession(session, Infinity)}\n`);
  return 0;
}

async function usageCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { project: { type: 'string' }, json: { type: 'boolean', default: false } });
  const totals = await withRepository(io, async ({ repository }) => {
    const projects = values.project ? [values.project] : await repository.projectIds();
    const all: UsageTotals[] = [];
    for (const projectId of projects) all.push(await repository.usageTotals(projectId));
    return all;
  });
  io.stdout(values.json ? `${JSON.stringify(totals, null, 2)}\n` : `${formatUsageTable(totals)}\n`);
  return 0;
}

async function milestoneCommand(args: string[], io: CliIo): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'open') {
    const { values } = parse(rest, { project: { type: 'string' }, json: { type: 'boolean', default: false } });
    if (!values.project) throw new UsageError('milestone open needs --project');
    validateStartInput({ prompt: '-', projectId: values.project }); // the project id's rules, by name
    const milestone = await withRepository(io, ({ milestones }) => milestones.open(values.project!));
    if (values.json) io.stdout(`${JSON.stringify(milestone, null, 2)}\n`);
    else {
      io.stdout(`${milestone.milestoneId}\n`);
      io.stderr(`Milestone opened for project ${milestone.projectId}. Run tasks in it with:\n  npx claude-sessions run "<prompt>" --milestone ${milestone.milestoneId}\n`);
    }
    return 0;
  }
  if (action === 'show' || action === 'close') {
    const { values, positionals } = parse(rest, { json: { type: 'boolean', default: false } }, 1);
    const milestoneId = positionals[0];
    if (!milestoneId || !isUuid(milestoneId)) throw new UsageError(`milestone ${action} needs a milestone id (a UUID)`);
    const view = await withRepository(io, async ({ milestones, transcripts }) => {
      if (action === 'close') {
        const closed = await milestones.close(milestoneId);
        if (closed.transcript) await transcripts.markClosed(closed.transcript.key);
      }
      return milestones.view(milestoneId);
    });
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
  validateStartInput({ prompt: '-', projectId }); // the project id's rules, by name
  const limit = value === 'default' ? null : Number(value);
  if (limit !== null && !(Number.isInteger(limit) && limit >= 1)) throw new UsageError('the limit must be a whole number from 1, or default');
  await withRepository(io, ({ slots }) => slots.setLimit(projectId, limit));
  io.stderr(limit === null
    ? `Project ${projectId} follows the deployment's maxConcurrentSessions again.\n`
    : `Project ${projectId} may run ${limit} session(s) at once where a limit applies (serve --max-concurrent-sessions, or the stack's).\n`);
  return 0;
}

async function serveCommand(args: string[], io: CliIo): Promise<number> {
  const { values } = parse(args, { port: { type: 'string', default: '8787' }, 'max-concurrent-sessions': { type: 'string' } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError('--port must be a port number');
  let policy: SessionPolicy = sessionPolicyFromEnv(io.env, POLICY_ENV_PREFIX);
  try {
    if (values['max-concurrent-sessions'] !== undefined) {
      policy = { ...policy, ...sessionPolicyFromEnv({ MAX_CONCURRENT_SESSIONS: values['max-concurrent-sessions'] }) };
    }
  } catch {
    throw new UsageError('--max-concurrent-sessions must be a whole number from 1');
  }
  const runtime = await startRuntime({ home: home(io), command: 'claude-sessions serve', policy });
  const [{ createApiHandler }, { startLocalApiServer }, { SESSIONS_PAGE }] = await Promise.all([
    import('../api/router.js'), import('../local/local-api-server.js'), import('../web/sessions-page.js'),
  ]);
  const handler = createApiHandler({
    repository: runtime.repository, milestones: runtime.milestones, starter: runtime, transcripts: runtime.transcripts,
    policy, slots: runtime.slots,
  });
  const server = await startLocalApiServer(handler, port, { '/': SESSIONS_PAGE }).catch(async (err: unknown) => {
    await runtime.close();
    throw err;
  });
  io.stderr(
    (runtime.standIn
      ? `No ANTHROPIC_API_KEY set: Claude runs against the built-in local stand-in at ${runtime.standIn.url}.\n`
      : `Claude runs against ${io.env.ANTHROPIC_BASE_URL || 'the Anthropic API'}.\n`) +
      `claude-sessions API listening on ${server.url} (state in ${home(io)}); open ${server.url}/ for the sessions page. Ctrl-C stops it.\n`,
  );
  await new Promise<void>((resolve) => io.onInterrupt?.(resolve));
  io.stderr('Stopping: running sessions are aborted and closed ABORTED.\n');
  await server.close();
  await runtime.close();
  return 0;
}

async function abortCommand(args: string[], io: CliIo): Promise<number> {
  const { positionals } = parse(args, {}, 1);
  const sessionId = positionals[0];
  if (!sessionId || !isUuid(sessionId)) throw new UsageError('abort needs a session id (a UUID)');
  const requests = join(home(io), ABORT_REQUESTS_DIR);
  await mkdir(requests, { recursive: true });
  const request = join(requests, sessionId);
  await writeFile(request, '');
  let runtime: LocalRuntime;
  try {
    runtime = await startRuntime({ home: home(io), endpoint: { apiKey: 'unused' }, command: 'claude-sessions abort' });
  } catch (err) {
    if (!(err instanceof LocalStateBusyError)) throw err;
    // Another process runs the executions: it picks the request up within a second.
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 250));
      if (!existsSync(request)) {
        io.stderr(`Abort delivered to process ${err.holder.pid} (${err.holder.command}): the execution stops and its session closes ABORTED.\n`);
        return 0;
      }
    }
    await rm(request, { force: true });
    io.stderr(`error: process ${err.holder.pid} (${err.holder.command}) did not take the abort request\n`);
    return 1;
  }
  try {
    // Gone already: the process that held the state took the request and ended before we got the state.
    const delivered = !existsSync(request);
    await rm(request, { force: true });
    const session = await runtime.repository.get(sessionId);
    if (!session) {
      io.stderr(`error: no session ${sessionId}\n`);
      return 1;
    }
    io.stderr(
      delivered && session.status === 'ABORTED'
        ? `Abort delivered to the process that ran session ${sessionId}: it stopped the execution, and the session closed ABORTED.\n`
        : runtime.orphansClosed.includes(sessionId)
        ? `Session ${sessionId} was RUNNING with no process left to run it: closed ABORTED.\n`
        : `Session ${sessionId} is not running (it ended ${session.status}); nothing to abort.\n`,
    );
    io.stdout(`${formatSession(session)}\n`);
    return 0;
  } finally {
    await runtime.close();
  }
}
