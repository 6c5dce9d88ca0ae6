import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClaudeSessionsStack, type ClaudeSessionsStackProps } from '../cdk/claude-sessions-stack.js';
import { ExecutionInput } from '../lib/sessions/execution-input.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';
import { toSessionRecord } from '../lib/sessions/session-item.js';

// The tables of README.md and docs/ that restate the code (IAM per role, settings, routes, error
// names, the lifecycle) are read here and held to the code they describe, so a grant, a setting,
// a route or an error added without its row fails the suite instead of leaving the docs behind.

const root = join(import.meta.dirname, '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');

/** The part of a markdown document under a heading, up to the next heading of its level or above. */
function section(markdown: string, heading: string): string {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.trim() === heading);
  if (start < 0) throw new Error(`no heading "${heading}"`);
  const level = heading.indexOf(' ');
  const end = lines.findIndex((line, i) => i > start && /^#+ /.test(line) && line.indexOf(' ') <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join('\n');
}

type Row = [string, string, string, string];

/** The first four cells of a section's table rows (header and separator left out), '' where a row has fewer. */
function tableRows(text: string): Row[] {
  const rows = text.split('\n').filter((line) => line.startsWith('|') && !/^\|[-\s|]+\|$/.test(line));
  return rows.slice(1).map((line) => {
    const cells = line.replace(/\\\|/g, '¦').split('|').slice(1, -1).map((cell) => cell.trim());
    return [cells[0] ?? '', cells[1] ?? '', cells[2] ?? '', cells[3] ?? ''];
  });
}

/** Every capture group 1 of a global pattern. */
const captures = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].map((m) => m[1] ?? '');
const backticked = (text: string) => captures(text, /`([^`]+)`/g);
const firstBackticked = (cell: string) => backticked(cell)[0] ?? '';
const sorted = (values: Iterable<string>) => [...new Set(values)].sort();

/** What the code has and the document lacks, and the other way round: both empty when they agree. */
function drift(documented: Iterable<string>, inCode: Iterable<string>): { noRow: string[]; notInCode: string[] } {
  const rows = new Set(documented);
  const code = new Set(inCode);
  return { noRow: sorted([...code].filter((x) => !rows.has(x))), notInCode: sorted([...rows].filter((x) => !code.has(x))) };
}
const agreed = { noRow: [], notInCode: [] };

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) return sourceFiles(path);
    return /\.(ts|js)$/.test(name) ? [path] : [];
  });
}

describe('docs/SECURITY.md: what each role may do', () => {
  // Every optional grant on: a deployment on the Anthropic API with a KMS-encrypted key, a git
  // token, CodeCommit, a budget, a schedule and the GitHub webhook; and one on Bedrock (the model role, AssumeRole).
  const variants: ClaudeSessionsStackProps[] = [
    {
      apiKeySecretName: 'claude/key',
      apiKeySecretKmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
      gitTokenSecretName: 'claude/git', gitTokenScopes: ['https://github.com/acme/'],
      codeCommitRepositories: ['widgets'],
      maxConcurrentSessions: 3, monthlyBudgetUsd: 50,
      alarmTopicArn: 'arn:aws:sns:eu-west-1:123456789012:alarms',
      schedules: parseSchedules([{ name: 'nightly', expression: 'rate(1 day)', projectId: 'demo', prompt: 'Summarise' }]),
      githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'demo' } },
    },
    { provider: 'bedrock', model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0' },
    // A GitHub App instead of the git token: the minter, and the runners' grant to invoke it.
    {
      apiKeySecretName: 'claude/key', githubAppSecretName: 'claude/github-app', gitTokenScopes: ['https://github.com/acme/'],
      githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'demo' } },
    },
  ];

  /** Logical id -> every action its policies allow or deny, and its managed policies' names. */
  function grantsByRole(): Map<string, Set<string>> {
    const byRole = new Map<string, Set<string>>();
    for (const [i, props] of variants.entries()) {
      const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
      const env = { account: '123456789012', region: 'eu-west-1' };
      const resources = Template.fromStack(new ClaudeSessionsStack(app, `Drift${i}`, { env, ...props })).toJSON().Resources as Record<string, { Type: string; Properties: any }>;
      const grants = (role: string) => byRole.get(role) ?? byRole.set(role, new Set()).get(role)!;
      const actions = (document: any): string[] => document.Statement.flatMap((s: any) => [s.Action ?? s.NotAction].flat());
      for (const [id, resource] of Object.entries(resources)) {
        if (resource.Type === 'AWS::IAM::Role') {
          const role = grants(id);
          for (const arn of resource.Properties.ManagedPolicyArns ?? []) role.add(captures(JSON.stringify(arn), /policy\/(?:service-role\/)?([\w-]+)/g)[0] ?? String(arn));
          for (const policy of resource.Properties.Policies ?? []) for (const action of actions(policy.PolicyDocument)) role.add(action);
        }
        if (resource.Type === 'AWS::IAM::Policy') {
          for (const { Ref } of resource.Properties.Roles) for (const action of actions(resource.Properties.PolicyDocument)) grants(Ref).add(action);
        }
      }
    }
    return byRole;
  }

  it('has one row per role, listing exactly the actions and managed policies the role holds', () => {
    // Prepare: the table, and the tracing actions every function's role holds besides (the note under it)
    const doc = section(read('docs/SECURITY.md'), '## What each role may do');
    const rows = tableRows(doc).map(([name, logicalId, actions]) => ({
      name, prefix: firstBackticked(logicalId), listed: backticked(actions).filter((t) => /^[a-z0-9-]+:[A-Za-z]+$|^[A-Z][A-Za-z]+$/.test(t)),
    }));
    const tracing = backticked(doc.slice(doc.indexOf("Every function's role"))).filter((t) => t.startsWith('xray:'));
    expect(tracing).toEqual(['xray:PutTraceSegments', 'xray:PutTelemetryRecords']);

    // Act
    const byRole = grantsByRole();

    // Assess: each role has its row, by the start of its logical id, and the row lists what it holds
    const unlisted = [...byRole.keys()].filter((id) => !rows.some((row) => id.startsWith(row.prefix)));
    expect(unlisted, 'roles with no row in docs/SECURITY.md').toEqual([]);
    for (const row of rows) {
      const held = [...byRole].filter(([id]) => id.startsWith(row.prefix)).flatMap(([, grants]) => [...grants]);
      expect(held.length, `row "${row.name}" (${row.prefix}) names no role of the template`).toBeGreaterThan(0);
      expect(drift(row.listed, held.filter((a) => !tracing.includes(a))), `row "${row.name}" of docs/SECURITY.md`).toEqual(agreed);
    }
  });
});

describe('docs/CONFIGURATION.md: every setting', () => {
  const doc = read('docs/CONFIGURATION.md');
  const settings = tableRows(section(doc, '## Deployment settings'));

  it('has a row for each context key cdk/ reads, and no other', () => {
    const read_ = sourceFiles('cdk').flatMap((file) => captures(read(file), /tryGetContext\('(\w+)'\)/g));
    const documented = settings.map(([context]) => firstBackticked(context)).filter(Boolean);
    expect(drift(documented, read_)).toEqual(agreed);
  });

  it('has a row for each prop of ClaudeSessionsStackProps, and no other', () => {
    const stack = read('cdk/claude-sessions-stack.ts');
    const body = stack.slice(stack.indexOf('export interface ClaudeSessionsStackProps'), stack.indexOf('\n}\n', stack.indexOf('export interface ClaudeSessionsStackProps')));
    const props = captures(body, /^\s+readonly (\w+)\??:/gm);
    expect(props.length).toBeGreaterThan(10);
    const documented = settings.map(([, prop]) => firstBackticked(prop)).filter(Boolean);
    expect(drift(documented, props)).toEqual(agreed);
  });

  it('names each CLAUDE_SESSIONS_ variable the code reads, and no other', () => {
    // The variables named whole, and the deployment's policy the engine reads behind the CLI's prefix
    const named = ['lib', 'bin'].flatMap(sourceFiles).flatMap((file) => [...read(file).matchAll(/\bCLAUDE_SESSIONS_[A-Z_]+\b/g)].map((m) => m[0]));
    const prefix = captures(read('lib/cli/main.ts'), /POLICY_ENV_PREFIX = '(\w+)'/g)[0];
    expect(prefix).toBe('CLAUDE_SESSIONS_');
    const policy = read('lib/sessions/session-creation.ts');
    const policyFromEnv = policy.slice(policy.indexOf('export function sessionPolicyFromEnv'), policy.indexOf('\n}\n', policy.indexOf('export function sessionPolicyFromEnv')));
    const behindPrefix = captures(policyFromEnv, /(?:read\(|prefix \+ )'([A-Z_]+)'/g).map((name) => `CLAUDE_SESSIONS_${name}`);
    expect(behindPrefix.length).toBeGreaterThan(5);
    const documented = [...doc.matchAll(/\bCLAUDE_SESSIONS_[A-Z_]+\b/g)].map((m) => m[0]);
    expect(drift(documented, [...named, ...behindPrefix])).toEqual(agreed);
  });

  it("README's configuration table names only context keys the app reads", () => {
    const keys = settings.map(([context]) => firstBackticked(context)).filter(Boolean);
    const readme = tableRows(section(read('README.md'), '## Configuration')).flatMap(([context]) => backticked(context));
    expect(readme.length).toBeGreaterThan(5);
    expect(readme.filter((key) => !keys.includes(key))).toEqual([]);
  });
});

describe('docs/API.md: the routes', () => {
  it('has a row for each route of lib/api/router.ts, and no other', () => {
    const router = read('lib/api/router.ts');
    const routes = [...router.matchAll(/method:\s*'([A-Z]+)',\s*path:\s*'([^']+)'/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(routes.length).toBeGreaterThan(5);
    const table = section(read('docs/API.md'), '## Routes');
    const documented = tableRows(table.slice(0, table.indexOf('\n\n', table.indexOf('|')))).flatMap(([route]) =>
      [...route.matchAll(/`([A-Z]+) (\/[^`?\s]*)/g)].map((m) => `${m[1]} ${m[2]}`));
    expect(drift(documented, routes)).toEqual(agreed);
  });
});

describe('docs/API.md: the input', () => {
  it('has a row for each field of the execution input schema, and no other', () => {
    const documented = tableRows(section(read('docs/API.md'), '## Input')).map(([field]) => firstBackticked(field));
    expect(drift(documented, Object.keys(ExecutionInput.shape))).toEqual(agreed);
  });
});

describe('docs/SESSIONS.md: the record', () => {
  it('shows every field of a session record, and no other', () => {
    const doc = section(read('docs/SESSIONS.md'), '## What a session records');
    const sample = JSON.parse(doc.slice(doc.indexOf('```json') + 7, doc.indexOf('```', doc.indexOf('```json') + 7))) as Record<string, unknown>;
    const record = toSessionRecord({ sessionId: 'a', projectId: 'p', mode: 'fresh', trigger: 'cli', runtime: 'lambda', status: 'RUNNING', startedAt: 'now' });
    expect(drift(Object.keys(sample), Object.keys(record))).toEqual(agreed);
  });
});

describe('docs/SESSIONS.md: the failure table', () => {
  it('has a row naming each error the sessions code, the runner and the workflow can record or answer', () => {
    // Error classes' names, 'SomethingError' literals, and names given as a session's error
    const files = [...sourceFiles('lib/claude'), ...sourceFiles('lib/sessions'), ...sourceFiles('cdk/workflow'), 'cdk/session-workflow.ts'];
    const names = files.flatMap((file) => read(file).split('\n').flatMap((line) => [
      ...captures(line, /readonly name = '(\w+)'/g),
      ...captures(line, /'([A-Z]\w*Error)'/g),
      ...(/\b[eE]rror\b\s*[:=]/.test(line) ? captures(line, /'([A-Z][a-z]+[A-Z][A-Za-z]+)'/g) : []),
    ]));
    expect(names).toContain('ClaudeMaxTurns');
    const tables = [section(read('docs/SESSIONS.md'), '## Failure handling'), read('docs/WORKSPACES.md')]
      .flatMap((text) => text.split('\n').filter((line) => line.startsWith('|')));
    const documented = new Set(tables.flatMap(backticked).flatMap((token) => token.split(/[^\w.]+/)));
    expect(sorted(names).filter((name) => !documented.has(name))).toEqual([]);
  });
});

describe("docs/ARCHITECTURE.md: a session's life", () => {
  it('opens with the lifecycle table, each function in the file it names', () => {
    const doc = read('docs/ARCHITECTURE.md');
    expect(doc.indexOf("## A session's life, by file and function")).toBeLessThan(doc.indexOf('## The invariant'));
    const rows = tableRows(section(doc, "## A session's life, by file and function"));
    expect(rows.map(([step]) => step)).toEqual(['create', 'run', 'charge', 'close', 'reap', 'sweep']);
    for (const [step, file, fn] of rows) {
      const path = firstBackticked(file);
      const name = firstBackticked(fn);
      expect(existsSync(join(root, path)), `${step}: ${path}`).toBe(true);
      expect(read(path), `${step}: ${name} in ${path}`).toMatch(new RegExp(`(function\\s+${name}\\b|^\\s+(async\\s+)?${name}\\s*\\(|const ${name}\\b)`, 'm'));
    }
  });
});

describe('links between README.md and docs/', () => {
  it('lead to a file that exists and, with a #fragment, to a heading it has', () => {
    const documents: string[] = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    // GitHub's anchors: lower case, punctuation but - and _ dropped, spaces as -
    const slug = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replace(/ /g, '-');
    const anchors = new Map(documents.map((doc) => [doc, new Set(
      captures(read(doc).replace(/```[\s\S]*?```/g, ''), /^#+ (.*)$/gm).map(slug),
    )]));
    const broken = documents.flatMap((doc) => captures(read(doc), /\]\(([^)\s]+)\)/g)
      .filter((target) => !/^(https?|mailto):/.test(target))
      .filter((target) => {
        const [path = '', fragment = ''] = target.split('#');
        const dest = path ? relative(root, normalize(join(root, dirname(doc), path))) : doc;
        if (!existsSync(join(root, dest))) return true;
        return Boolean(fragment) && dest.endsWith('.md') && !anchors.get(dest)?.has(fragment);
      })
      .map((target) => `${doc} -> ${target}`));
    expect(broken).toEqual([]);
  });
});
