/**
 * Benchmarks of the orchestration around Claude, printed as one JSON object on stdout
 * (and a readable summary on stderr). Every figure carries its unit and its N.
 *
 *   npm run bench                 # defaults
 *   npm run bench -- --n 20 --concurrency 1,10,50
 *   npm run bench -- --scale 1000,100000   # sessions of history for the scale section (0: none)
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { v4 as uuidv4 } from 'uuid';
import { defaultClaudePath } from '../lib/claude/claude-process.js';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { LocalRuntime, type EventLog } from '../lib/local/local-runtime.js';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { scaleFigures, type ScaleFigures } from './scale.js';
import { measureWriteUnits, totalWriteUnits } from './write-units.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '10' },
    'cold-n': { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '1,10,50' },
    scale: { type: 'string', default: '1000,100000' },
  },
});
const N = Number(values.n);
const COLD_N = Number(values['cold-n']);
const LEVELS = values.concurrency!.split(',').map(Number);
const SCALE_SIZES = values.scale!.split(',').map(Number).filter((n) => n > 0);

// Published us-east-1 prices (USD), as of 2026; the figures say which they used.
const PRICES = {
  standardTransition: 0.025 / 1_000,
  expressRequest: 1.0 / 1_000_000,
  expressGbSecond: 0.00001667,
  dynamodbWriteUnit: 0.625 / 1_000_000,
  dynamodbReadUnit: 0.125 / 1_000_000,
  lambdaRequest: 0.2 / 1_000_000,
  lambdaArmGbSecond: 0.0000133334,
  lambdaX86GbSecond: 0.0000166667,
};

const log = (line: string) => process.stderr.write(`${line}\n`);

function stats(samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { n: sorted.length, medianMs: round(at(0.5)), p95Ms: round(at(0.95)), minMs: round(sorted[0]!), maxMs: round(sorted.at(-1)!) };
}

function round(n: number, digits = 1) {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function runProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started }));
  });
}

/** Bare `claude -p --output-format json`: what a hand-made container would run. */
async function bareClaude(standIn: AnthropicStandIn): Promise<number> {
  const home = await mkdtemp(join(tmpdir(), 'bench-bare-'));
  try {
    const { code, ms } = await runProcess(
      defaultClaudePath(),
      ['-p', 'Summarise the README', '--output-format', 'json', '--session-id', uuidv4(), '--no-session-persistence'],
      {
        PATH: process.env.PATH, HOME: home, CLAUDE_CONFIG_DIR: join(home, '.claude'), ANTHROPIC_API_KEY: 'sk-ant-bench',
        ANTHROPIC_BASE_URL: standIn.url, DISABLE_AUTOUPDATER: '1', DISABLE_TELEMETRY: '1', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      },
      home,
    );
    if (code !== 0) throw new Error(`bare claude exited ${code}`);
    return ms;
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

async function collectStates(events: AsyncIterable<EventLog>): Promise<string[]> {
  const states: string[] = [];
  for await (const e of events) if (e.type === 'StateEntered') states.push(e.state.name);
  return states;
}

async function main() {
  const machine = {
    cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: round(totalmem() / 2 ** 30), node: process.version,
    // A shared machine: the load when the bench started and when it ended say how far to trust the times.
    loadAverage1mAtStart: round(loadavg()[0]!, 2),
  };
  const standIn = await new AnthropicStandIn().start();
  const runtime = await LocalRuntime.boot({ standIn, runner: { maxRetries: 0 } });

  // DynamoDB calls the workflow makes, counted at the SDK boundary.
  const calls: Record<string, number> = {};
  const countCalls = (rt: LocalRuntime) =>
    rt.dynamodb.client.middlewareStack.add(
      (next, context) => async (args) => {
        calls[context.commandName ?? 'unknown'] = (calls[context.commandName ?? 'unknown'] ?? 0) + 1;
        return next(args);
      },
      { step: 'initialize', name: 'benchCounter' },
    );
  countCalls(runtime);
  const writeUnits = await measureWriteUnits(runtime.dynamodb);

  // --- overhead (warm): interleaved, so drift on a shared machine hits both sides alike
  log(`overhead: ${N} bare runs and ${N} warm sessions, interleaved…`);
  await bareClaude(standIn); // first-spawn costs (page cache) out of the samples
  await runtime.run({ prompt: 'warm-up', projectId: 'bench' });
  const bare: number[] = [];
  const warm: number[] = [];
  for (let i = 0; i < N; i++) {
    bare.push(await bareClaude(standIn));
    const t0 = performance.now();
    const { session } = await runtime.run({ prompt: 'Summarise the README', projectId: 'bench' });
    warm.push(performance.now() - t0);
    if (session?.status !== 'COMPLETED') throw new Error(`warm session ended ${session?.status}`);
  }

  // --- overhead of the command: a new `claude-sessions run` process each time, through a warm engine,
  // with the CLI the engine boots ahead for the next run (the default) and without (CLAUDE_SESSIONS_STANDBY=0)
  const bin = join(PROJECT_ROOT, 'bin', 'claude-sessions.js');
  const measureRuns = async (extraEnv: NodeJS.ProcessEnv) => {
    const home = await mkdtemp(join(tmpdir(), 'bench-cold-'));
    const env = { ...process.env, CLAUDE_SESSIONS_HOME: home, ANTHROPIC_API_KEY: 'sk-ant-bench', ANTHROPIC_BASE_URL: standIn.url, ...extraEnv };
    // Builds the bundle, fills the definition cache and starts the background engine the runs then use.
    await runProcess(process.execPath, [bin, 'run', 'warm-up', '--project', 'bench'], env);
    const runs: number[] = [];
    const bares: number[] = [];
    for (let i = 0; i < COLD_N; i++) {
      // A pause as a user's between two commands: the CLI booted for the next run is not
      // booting while the bare CLI runs (2 cores), which would slow the bare side.
      await new Promise((r) => setTimeout(r, 1_500));
      bares.push(await bareClaude(standIn));
      await new Promise((r) => setTimeout(r, 1_500));
      const r = await runProcess(process.execPath, [bin, 'run', 'Summarise the README', '--project', 'bench', '--json'], env);
      if (r.code !== 0) throw new Error(`run exited ${r.code}: ${r.stderr}`);
      if (r.stderr.includes('Started a claude-sessions engine')) throw new Error('the engine was not warm');
      runs.push(r.ms);
    }
    const engine = JSON.parse(await readFile(join(home, 'engine.json'), 'utf8')) as { pid: number; url: string };
    const { standby } = (await (await fetch(`${engine.url}/local/engine`)).json()) as { standby: unknown };
    process.kill(engine.pid, 'SIGTERM');
    for (let i = 0; i < 50 && existsSync(join(home, 'engine.json')); i++) await new Promise((r) => setTimeout(r, 100));
    await rm(home, { recursive: true, force: true });
    const run = stats(runs);
    const bare = stats(bares);
    return { run, bare, ratio: { median: round(run.medianMs / bare.medianMs, 3), p95: round(run.p95Ms / bare.p95Ms, 3) }, standby };
  };
  log(`overhead: ${COLD_N} \`claude-sessions run\` processes through a running engine, and ${COLD_N} bare runs, interleaved…`);
  const withStandby = await measureRuns({});
  log(`overhead: the same with no CLI booted ahead (CLAUDE_SESSIONS_STANDBY=0)…`);
  const withoutStandby = await measureRuns({ CLAUDE_SESSIONS_STANDBY: '0' });

  // --- transitions and DynamoDB calls per path
  log('transitions and DynamoDB calls per path…');
  const paths: Record<string, { states: string[]; transitions: number; dynamodb: Record<string, number>; writeUnits?: ReturnType<typeof totalWriteUnits> }> = {};
  const measurePath = async (name: string, input: unknown, prepare?: () => void, rt: LocalRuntime = runtime) => {
    prepare?.();
    for (const k of Object.keys(calls)) delete calls[k];
    writeUnits.take();
    const execution = rt.startExecution(input);
    const [states] = await Promise.all([collectStates(execution.events), execution.outcome]);
    const written = writeUnits.take();
    paths[name] = { states, transitions: states.length, dynamodb: { ...calls }, ...(rt === runtime ? { writeUnits: totalWriteUnits(written) } : {}) };
  };
  await measurePath('completed', { prompt: 'hi', projectId: 'bench' });
  await measurePath('claudeFailed', { prompt: 'hi', projectId: 'bench' }, () => standIn.respondWith({ kind: 'error', status: 400 }));
  await measurePath('invalidInput', { projectId: 'bench' });
  const milestone = await runtime.milestones.open('bench');
  await measurePath('milestoneFirstTask', { prompt: 'hi', projectId: 'bench', milestoneId: milestone.milestoneId });
  await measurePath('milestoneResumedTask', { prompt: 'hi', projectId: 'bench', milestoneId: milestone.milestoneId });
  const limited = await LocalRuntime.boot({ standIn, runner: { maxRetries: 0 }, policy: { maxConcurrentSessions: 5 }, cacheDir: join(PROJECT_ROOT, '.claude-sessions', 'cache') });
  countCalls(limited);
  await measurePath('completedWithConcurrencyLimit', { prompt: 'hi', projectId: 'bench' }, undefined, limited);
  await limited.close();
  const crashing = await LocalRuntime.boot({ standIn, runner: { claudePath: '/bin/false' }, cacheDir: join(PROJECT_ROOT, '.claude-sessions', 'cache') });
  countCalls(crashing);
  await measurePath('cliCrash', { prompt: 'hi', projectId: 'bench' }, undefined, crashing);
  await crashing.close();

  // --- concurrency
  const concurrency: Record<string, unknown>[] = [];
  for (const level of LEVELS) {
    log(`concurrency: ${level} sessions at once…`);
    const project = `bench-c${level}-${Date.now()}`;
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: level }, () => runtime.run({ prompt: 'hi', projectId: project })));
    const wallMs = performance.now() - t0;
    const closed = results.filter((r) => r.session && r.session.status !== 'RUNNING').length;
    const completed = results.filter((r) => r.session?.status === 'COMPLETED').length;
    const running = (await runtime.repository.listRunning(project)).length;
    concurrency.push({ sessions: level, wallMs: round(wallMs), sessionsPerSecond: round((level / wallMs) * 1000, 2), closed, completed, running });
  }

  // --- bundles: what esbuild makes of each Lambda entry (the runner's excludes the CLI)
  log('bundle sizes…');
  const bundle: Record<string, { bytes: number }> = {};
  for (const [name, entry, external] of [
    ['createSession', 'functions/create-session/handler.ts', []],
    ['api', 'functions/api/handler.ts', []],
    ['runner', 'functions/runner/handler.ts', ['@anthropic-ai/claude-code']],
  ] as const) {
    const out = await build({
      entryPoints: [join(PROJECT_ROOT, entry)], bundle: true, platform: 'node', format: 'esm', target: 'node22',
      minify: true, write: false, external: [...external], logLevel: 'silent',
    });
    bundle[name] = { bytes: out.outputFiles.reduce((n, f) => n + f.contents.byteLength, 0) };
  }

  await runtime.close();
  await standIn.close();

  // --- scale: a start's budget check, `usage` and a list page with 1,000 and 100,000 sessions of history
  const scale: ScaleFigures[] = [];
  for (const size of SCALE_SIZES) {
    log(`scale: seeding ${size} sessions…`);
    scale.push(await scaleFigures(size, log));
  }

  // --- cost per 1,000 sessions of orchestration (happy path), from the counts above
  const happy = paths.completed!;
  const writes = (happy.dynamodb.PutItemCommand ?? 0) + (happy.dynamodb.UpdateItemCommand ?? 0) + (happy.dynamodb.TransactWriteItemsCommand ?? 0);
  const reads = (happy.dynamodb.GetItemCommand ?? 0) + (happy.dynamodb.QueryCommand ?? 0);
  // Write units of a happy session as measured on the items it wrote (bench/write-units.ts): the
  // stand-in's reply is short, so the closed session item is about 1 KB (a 2,000-character reply adds 2 units a copy).
  const writeUnitsPerSession = happy.writeUnits!.total;
  const createSessionGbSeconds = 0.25 * 0.05; // 256 MB for ~50 ms
  const standard =
    1000 * (happy.transitions * PRICES.standardTransition + writeUnitsPerSession * PRICES.dynamodbWriteUnit + reads * PRICES.dynamodbReadUnit +
      2 * PRICES.lambdaRequest + createSessionGbSeconds * PRICES.lambdaArmGbSecond);
  // Express bills the whole duration the workflow waits on Claude (64 MB steps), and stops at 5 minutes.
  const expressFor = (sessionSeconds: number) =>
    1000 * (PRICES.expressRequest + 0.0625 * sessionSeconds * PRICES.expressGbSecond + writeUnitsPerSession * PRICES.dynamodbWriteUnit +
      2 * PRICES.lambdaRequest + createSessionGbSeconds * PRICES.lambdaArmGbSecond);
  const runnerPer1k = (seconds: number, memoryGb: number) => round(1000 * seconds * memoryGb * PRICES.lambdaX86GbSecond, 4);

  const warmStats = stats(warm);
  const bareStats = stats(bare);
  const result = {
    machine,
    overhead: {
      unit: 'ms per session, wall clock, same local stand-in',
      bareClaude: bareStats,
      warmSession: warmStats,
      warmRatio: { median: round(warmStats.medianMs / bareStats.medianMs, 3), p95: round(warmStats.p95Ms / bareStats.p95Ms, 3), target: 1.05 },
      runThroughEngine: { ...withStandby.run, note: 'a new `claude-sessions run` process (node bin/claude-sessions.js), through a running background engine that booted a CLI after the previous run' },
      coldBareClaude: withStandby.bare,
      runRatio: { ...withStandby.ratio, target: 1.15 },
      standbyCounts: withStandby.standby,
      runWithoutStandby: { ...withoutStandby.run, note: 'the same with CLAUDE_SESSIONS_STANDBY=0: what a run that cannot use the booted CLI costs (other flags, a workspace, a milestone task, concurrent runs)' },
      coldBareClaudeWithoutStandby: withoutStandby.bare,
      runRatioWithoutStandby: withoutStandby.ratio,
    },
    transitions: Object.fromEntries(Object.entries(paths).map(([k, v]) => [k, { count: v.transitions, states: v.states }])),
    dynamodbWrites: {
      perHappySession: writes, writeUnitsPerHappySession: happy.writeUnits, target: 2,
      writeUnitsByPath: Object.fromEntries(Object.entries(paths).filter(([, v]) => v.writeUnits).map(([k, v]) => [k, v.writeUnits])),
      note: 'units measured on the items each write left (bench/write-units.ts): the table\'s, twice in a transaction, and each index\'s copy',
    },
    dynamodbReads: { perHappySession: reads, target: 0 },
    dynamodbCallsByPath: Object.fromEntries(Object.entries(paths).map(([k, v]) => [k, v.dynamodb])),
    costPer1kSessionsUsd: {
      standardOrchestration: round(standard, 4),
      target: 0.3,
      expressOrchestration: { for1MinuteSessions: round(expressFor(60), 4), for5MinuteSessions: round(expressFor(300), 4), note: 'Express stops at 5 minutes: sessions may run 15 min (Lambda) to 8 h' },
      runnerLambdaCompute: { for1MinuteAt3008MB: runnerPer1k(60, 3.008), for10MinutesAt3008MB: runnerPer1k(600, 3.008) },
      claudeTokens: 'reported per session as totalCostUsd; not orchestration',
      prices: PRICES,
    },
    concurrency,
    scale,
    bundle: { unit: 'bytes, minified ESM', ...bundle },
  };
  Object.assign(result.machine, { loadAverage1mAtEnd: round(loadavg()[0]!, 2) });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);

  log('');
  log(`overhead warm: bare median ${bareStats.medianMs} ms, session median ${warmStats.medianMs} ms -> x${result.overhead.warmRatio.median} (N=${N})`);
  log(`overhead of run through a warm engine: bare median ${withStandby.bare.medianMs} ms, run median ${withStandby.run.medianMs} ms -> x${withStandby.ratio.median} (N=${COLD_N})`);
  log(`  without the CLI booted ahead: bare median ${withoutStandby.bare.medianMs} ms, run median ${withoutStandby.run.medianMs} ms -> x${withoutStandby.ratio.median}`);
  log(`transitions: ${Object.entries(paths).map(([k, v]) => `${k} ${v.transitions}`).join(', ')}`);
  log(`DynamoDB per happy session: ${writes} writes (${writeUnitsPerSession} write units: ${happy.writeUnits!.table} table, ${happy.writeUnits!.indexes} indexes), ${reads} reads`);
  log(`orchestration per 1k sessions: $${result.costPer1kSessionsUsd.standardOrchestration} (Standard)`);
  for (const c of scale) log(`scale ${c.sessions}: start ${c.startMs} ms (${c.startItemsRead} items), usage ${c.usageMs} ms (${c.usageItemsRead} items), list page ${c.listPageMs} ms, milestone view ${c.milestoneViewMs} ms (${c.milestoneViewItemsRead} items, ${c.milestoneTasks} tasks)`);
  for (const c of concurrency) log(`concurrency ${c.sessions}: ${c.wallMs} ms, ${c.sessionsPerSecond}/s, closed ${c.closed}, running ${c.running}`);
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
