import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AnthropicStandIn } from '../lib/local/anthropic-stand-in.js';
import { prepareSessionStart } from '../lib/sessions/execution-input.js';
import { RecordingAwsEndpoint } from './support/aws-endpoint.js';
import { LocalDynamoDb } from '../lib/local/local-dynamodb.js';
import { SessionRepository } from '../lib/sessions/session-repository.js';
import { deployedFunctions, invokeHandler, invokeWarm, lambdaEnvironment, readAssembly, taskRoot, type Wrap } from './support/deployed-code.js';
import { DEFAULT_TOOLS } from '../lib/sessions/session-limits.js';
import { templateResolver } from './support/template-resolver.js';

// The runner's synthesized Lambda handler, run once in a sandbox shaped like Lambda: the whole
// filesystem read-only but /tmp, the task root at /var/task, Lambda's user and environment, no
// HOME. Whatever the Claude CLI writes has to go to /tmp, or the session fails.

/** Lambda runs a function as sbx_user1051 (uid 993, gid 990). */
const LAMBDA_UID = '993';
const LAMBDA_GID = '990';

/** The flags that give the sandboxed process its identity here, or why bwrap cannot start. */
function probeSandbox(): { identity: string[] } | { why: string } {
  const candidates = [
    // Lambda's own unprivileged user, in a user namespace (no capabilities).
    ['--unshare-user', '--uid', LAMBDA_UID, '--gid', LAMBDA_GID],
    // Root where user namespaces are off: uid 0 stays, every capability goes.
    ['--cap-drop', 'ALL'],
  ];
  const failures: string[] = [];
  for (const identity of candidates) {
    const probe = spawnSync('bwrap', [...identity, '--ro-bind', '/', '/', '--tmpfs', '/tmp', '--dev', '/dev', '--proc', '/proc', '--unshare-pid', '--', 'true'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    if (probe.error) return { why: `bwrap cannot be started (${probe.error.message}); install Debian's bubblewrap` };
    if (probe.status === 0) return { identity };
    failures.push(`bwrap ${identity.join(' ')}: ${probe.stderr.trim() || `exit ${probe.status}`}`);
  }
  return { why: `bwrap cannot make a sandbox here: ${failures.join('; ')}` };
}

/**
 * bwrap's arguments for Lambda's filesystem: the host's, read-only, with the scratch folder as
 * /tmp and the task root at /var/task. /var is the host's too, rebuilt entry by entry on a tmpfs
 * (a read-only / has no /var/task to mount on), then made read-only again, as /dev is. Lambda's
 * user is in its /etc/passwd, with a home that does not exist (os.homedir() answers
 * /home/sbx_user1051, where nothing can be written): `etc` gets the host's files plus that user.
 */
function lambdaSandbox(identity: string[], scratch: string, task: string, etc: string): string[] {
  // The task root's packages are links into this checkout, which may itself live under /tmp
  // (hidden by the scratch bind): each is bound in at its place instead, as the image has them.
  const modules = join(task, 'node_modules', '@anthropic-ai');
  const packages = readdirSync(modules).flatMap((name) => {
    const link = join(modules, name);
    const target = realpathSync(link);
    rmSync(link);
    mkdirSync(link);
    return ['--ro-bind', target, `/var/task/node_modules/@anthropic-ai/${name}`];
  });
  writeFileSync(join(etc, 'passwd'), `${readFileSync('/etc/passwd', 'utf8').trimEnd()}\nsbx_user1051:x:${LAMBDA_UID}:${LAMBDA_GID}::/home/sbx_user1051:/sbin/nologin\n`);
  writeFileSync(join(etc, 'group'), `${readFileSync('/etc/group', 'utf8').trimEnd()}\nsbx_user1051:x:${LAMBDA_GID}:\n`);
  const varEntries = readdirSync('/var').flatMap((name) => {
    const path = join('/var', name);
    return lstatSync(path).isSymbolicLink() ? ['--symlink', readlinkSync(path), path] : ['--ro-bind', path, path];
  });
  return [
    'bwrap', ...identity,
    '--ro-bind', '/', '/',
    '--ro-bind', join(etc, 'passwd'), '/etc/passwd', '--ro-bind', join(etc, 'group'), '/etc/group',
    '--bind', scratch, '/tmp',
    '--dev', '/dev', '--remount-ro', '/dev',
    '--proc', '/proc',
    '--tmpfs', '/var', ...varEntries, '--ro-bind', task, '/var/task', ...packages, '--remount-ro', '/var',
    '--chdir', '/var/task',
    // Its own process tree, gone with it; the network stays the host's, for the local endpoints on 127.0.0.1.
    '--unshare-pid', '--die-with-parent',
    '--',
  ];
}

/** Every path under a folder, relative to it (folders end in '/'). */
function listTree(dir: string, skip: (name: string) => boolean = () => false): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => !skip(entry.name))
    .flatMap((entry) => entry.isDirectory() ? [`${entry.name}/`, ...listTree(join(dir, entry.name)).map((p) => `${entry.name}/${p}`)] : [entry.name]);
}

const sandbox = probeSandbox();
const required = Boolean(process.env.CI) || process.env.REQUIRE_SANDBOX === '1';
const unavailable = 'why' in sandbox ? sandbox.why : undefined;
const skipped = unavailable !== undefined && !required;
if (skipped) console.warn(`test/lambda-sandbox.test.ts is skipped: ${unavailable} (CI or REQUIRE_SANDBOX=1 makes this a failure)`);
const SECRET = JSON.stringify({ ANTHROPIC_API_KEY: 'sk-ant-sandbox' });

describe('the runner in a Lambda-shaped sandbox', () => {
  let anthropic: AnthropicStandIn;
  let aws: RecordingAwsEndpoint;
  /** The sandbox's /tmp, seen from the host; and the files its /etc gets. */
  let scratch: string;
  let etc: string;
  let dynamodb: LocalDynamoDb;

  beforeAll(async () => {
    if (skipped) return;
    scratch = mkdtempSync(join(tmpdir(), 'lambda-tmp-'));
    etc = mkdtempSync(join(tmpdir(), 'lambda-etc-'));
    anthropic = await new AnthropicStandIn().start();
    // The session table, where the runner claims its attempt before Claude starts.
    const assembly = readAssembly(inject('cdkOut'));
    const tableId = Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::DynamoDB::Table')![0];
    dynamodb = await LocalDynamoDb.start({ table: assembly.template.Resources[tableId]!.Properties as never, tableName: templateResolver(assembly.template).physicalName(tableId) });
    aws = await RecordingAwsEndpoint.start({
      upstreams: { dynamodb },
      handlers: { 'secretsmanager.GetSecretValue': (p: { SecretId: string }) => ({ ARN: p.SecretId, Name: 'AnthropicApiKey', SecretString: SECRET }) },
    });
  });

  afterAll(async () => {
    await aws?.close();
    await anthropic?.close();
    await dynamodb?.close();
    for (const dir of [scratch, etc]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The runner's task root as its image lays it out, its environment as Lambda's and the template's (plus `extra`). */
  function deployedRunner(extra: Record<string, string> = {}) {
    const assembly = readAssembly(inject('cdkOut'));
    const resolver = templateResolver(assembly.template);
    const runner = deployedFunctions(assembly).find((f) => f.logicalId.startsWith('RunnerFunction'))!;
    const environment = Object.fromEntries(Object.entries(runner.environment).map(([k, v]) => [k, String(resolver.resolve(v))]));
    const env: Record<string, string> = {
      ...lambdaEnvironment(resolver.physicalName(runner.logicalId), '/var/task'),
      ...environment,
      ...aws.envFor(runner.role),
      ANTHROPIC_BASE_URL: anthropic.endpoint.baseUrl!,
      ...extra,
    };
    const stateMachineArn = resolver.ref(Object.entries(assembly.template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')![0]);
    return { runner, task: taskRoot(runner.codeDir, 'claude-code'), env, stateMachineArn };
  }

  const title = 'runs a session to COMPLETED, writing only to /tmp, with no HOME';
  it.skipIf(skipped)(skipped ? `${title} (skipped: ${unavailable}; set REQUIRE_SANDBOX=1 to fail instead)` : title, async () => {
    if ('why' in sandbox) throw new Error(`a sandbox is required here (CI or REQUIRE_SANDBOX=1): ${sandbox.why}`);
    // Prepare
    const { runner, task, env, stateMachineArn } = deployedRunner();
    const sessionId = randomUUID();
    const { session, prompt } = prepareSessionStart(
      { prompt: 'Say hello from the sandbox', projectId: 'sandbox', sessionId },
      { executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}` },
    );
    await new SessionRepository(dynamodb.documentClient, dynamodb.tableName).create(session);
    anthropic.respondWith({ kind: 'text', text: 'hello from the sandbox', usage: { input_tokens: 10, output_tokens: 4 } });
    const wrap: Wrap = { command: lambdaSandbox(sandbox.identity, scratch, task, etc), taskRoot: '/var/task', io: { host: scratch, inside: '/tmp' } };
    // What appears in /tmp while it runs (the folder seen from the host).
    const appeared = new Set<string>();
    const watcher: FSWatcher = watch(scratch, (_, name) => name && appeared.add(name));

    // Act
    const answer = await invokeHandler(task, runner.module, runner.exportName, env, { session, prompt, milestone: { item: null }, retry: { attempt: 1, prior: null } }, wrap);
    watcher.close();

    // Assess: the session completed with the stand-in's reply, one Messages request for it
    expect(answer.exitCode, answer.output).toBe(0);
    expect(answer.error, answer.output).toBeUndefined();
    expect((answer.result as { record: unknown }).record, answer.output).toMatchObject({ sessionId, status: 'COMPLETED', result: 'hello from the sandbox' });
    expect(anthropic.messageRequests.map((r) => r.sessionId)).toEqual([sessionId]);
    // Its per-run HOME was made in /tmp and removed; nothing else of the run is left there
    const invocationFiles = (name: string) => name.startsWith('invoke-');
    expect([...appeared].filter((name) => name.startsWith('claude-run-')), answer.output).toHaveLength(1);
    expect(listTree(scratch, invocationFiles), answer.output).toEqual([]);
    // The handler's process never had a HOME: not given one, none before its module loaded, none after it answered
    expect(env).not.toHaveProperty('HOME');
    const { before, after } = answer.envKeys!;
    expect(before).toContain('LAMBDA_TASK_ROOT');
    expect(before).not.toContain('HOME');
    expect(after).not.toContain('HOME');
  });

  const warmTitle = 'leaves nothing of a session for the next on a warm environment: a process that left with setsid and cleared its environment is gone';
  it.skipIf(skipped)(skipped ? `${warmTitle} (skipped)` : warmTitle, async () => {
    if ('why' in sandbox) throw new Error(`a sandbox is required here (CI or REQUIRE_SANDBOX=1): ${sandbox.why}`);
    // Prepare: a deployment that lets Lambda sessions run Bash (shellOnLambda, permissionRules)
    const { runner, task, env, stateMachineArn } = deployedRunner({ CLAUDE_PERMISSION_RULES: JSON.stringify(['Bash']) });
    const repository = new SessionRepository(dynamodb.documentClient, dynamodb.tableName);
    const events = [];
    for (const text of ['Start a server and leave it', 'List what runs']) {
      const sessionId = randomUUID();
      const { session, prompt } = prepareSessionStart(
        { prompt: text, projectId: 'sandbox', sessionId, tools: [...DEFAULT_TOOLS, 'Bash'] },
        { executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${sessionId}` },
      );
      await repository.create(session);
      events.push({ session, prompt, milestone: { item: null }, retry: { attempt: 1, prior: null } });
    }
    const bash = (command: string) => ({ kind: 'tool_use' as const, name: 'Bash', input: { command } });
    const leftover = 'sleep 3174.5';
    anthropic.respondWith(
      // With no environment, it carries no marker of its run: only its user and its start tell it apart.
      bash(`env -i setsid -f ${leftover} >/dev/null 2>&1 </dev/null; echo started`),
      { kind: 'text', text: 'Left it running.' },
      bash('for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done 2>/dev/null'),
      { kind: 'text', text: 'Listed.' },
    );
    const wrap: Wrap = { command: lambdaSandbox(sandbox.identity, scratch, task, etc), taskRoot: '/var/task', io: { host: scratch, inside: '/tmp' } };
    const before = anthropic.messageRequests.length;

    // Act: two sessions, one after the other, in one warm environment
    const answer = await invokeWarm(task, runner.module, runner.exportName, env, events, wrap);

    // Assess: both completed; the first one's shell did start its process…
    expect(answer.exitCode, answer.output).toBe(0);
    expect(answer.results?.map((r) => (r.result as { record: { status: string } } | undefined)?.record.status), answer.output).toEqual(['COMPLETED', 'COMPLETED']);
    const toolResult = (i: number) => JSON.stringify((anthropic.messageRequests[before + i]!.body.messages as { content: unknown }[]).at(-1)!.content);
    expect(toolResult(1)).toContain('started');
    // …and the second session, listing every process it can see, found the runtime and its own CLI but not that one
    const listing = toolResult(3);
    expect(listing).toContain('claude');
    expect(listing).not.toContain(leftover);
  });
});
