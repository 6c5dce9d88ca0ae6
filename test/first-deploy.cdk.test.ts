import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ClaudeSessionsStack, type ClaudeSessionsStackProps } from '../cdk/claude-sessions-stack.js';
import { PROJECT_ROOT } from '../lib/project-root.js';
import { runCfnLint } from './support/cfn-lint.js';
import { synthesizedTemplate } from './support/synthesized.js';

// What a deployer in a new account meets: the outputs the guides name, the notification topic
// they subscribe to, the image their laptop builds, and the traces the functions send.

const read = (path: string) => readFileSync(join(PROJECT_ROOT, path), 'utf8');
const noBundling = { 'aws:cdk:bundling-stacks': [] };
const workDir = mkdtempSync(join(tmpdir(), 'claude-sessions-first-deploy-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

/** A stack of its own app (cdk-nag on these features: the CLI synth of test/deployment-settings.test.ts). */
function synthesize(id: string, props: ClaudeSessionsStackProps) {
  const app = new App({ context: noBundling });
  const stack = new ClaudeSessionsStack(app, id, props);
  const assembly = app.synth();
  return { template: Template.fromStack(stack), imagePlatforms: () => imagePlatforms(join(assembly.directory, `${id}.assets.json`)) };
}

/** The platform of each image in an asset manifest: what cdk deploy hands to docker build --platform. */
function imagePlatforms(assetManifest: string): (string | undefined)[] {
  const assets = JSON.parse(readFileSync(assetManifest, 'utf8')) as { dockerImages: Record<string, { source: { platform?: string } }> };
  return Object.values(assets.dockerImages).map((image) => image.source.platform);
}

// Every optional feature that adds an output on, as a deployer turns them on.
const everything = synthesize('FirstDeployEverything', {
  notifyStatuses: ['FAILED', 'TIMED_OUT'],
  githubWebhookSecretName: 'claude/github-webhook', githubTriggers: { repositories: { 'acme/widgets': 'widgets' } },
  gitTokenSecretName: 'claude/git', gitTokenScopes: ['https://github.com/acme/'],
});

/** The stack output names README.md and docs/*.md tell a reader to use. */
function outputNamesTheDocsUse(): Map<string, string> {
  const names = new Map<string, string>();
  const files = ['README.md', ...readdirSync(join(PROJECT_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const outputName = /^[A-Z][A-Za-z0-9]*(Url|Arn|Name)$/;
  for (const file of files) {
    const text = read(file);
    // --query "Stacks[0].Outputs[?OutputKey=='ApiUrl']…", and placeholders such as <SessionTableName>
    for (const m of text.matchAll(/OutputKey==\\?'(\w+)\\?'/g)) names.set(m[1]!, file);
    for (const m of text.matchAll(/<([A-Z]\w+)>/g)) if (outputName.test(m[1]!)) names.set(m[1]!, file);
    // Plain mentions: a PascalCase …Url/…Arn/…Name in backticks, in a paragraph that speaks of outputs.
    for (const paragraph of text.split(/\n\s*\n/).filter((p) => /\boutputs?\b/i.test(p))) {
      for (const m of paragraph.matchAll(/`([A-Z]\w+)`/g)) if (outputName.test(m[1]!)) names.set(m[1]!, file);
    }
  }
  return names;
}

describe('the outputs the guides use', () => {
  it('exist in the synthesized template, each one the docs name (with every feature that adds one turned on)', () => {
    // Prepare
    const used = outputNamesTheDocsUse();
    const outputs = Object.keys(everything.template.toJSON().Outputs as object);
    // Assess: the ones a first deploy needs are among them, and none the docs name is missing
    expect([...used.keys()]).toEqual(expect.arrayContaining(['ApiUrl', 'StateMachineArn', 'ApiKeySecretArn', 'NotificationTopicArn']));
    const missing = [...used].filter(([name]) => !outputs.includes(name)).map(([name, file]) => `${name} (named in ${file})`);
    expect(missing).toEqual([]);
  });

  it('give the secret\'s and the state machine\'s ARNs', () => {
    const outputs = everything.template.toJSON().Outputs as Record<string, { Value: unknown }>;
    const [machine] = Object.keys(everything.template.findResources('AWS::StepFunctions::StateMachine'));
    const [secret] = Object.keys(everything.template.findResources('AWS::SecretsManager::Secret'));
    expect(outputs.StateMachineArn!.Value).toEqual({ Ref: machine });
    expect(outputs.ApiKeySecretArn!.Value).toEqual({ Ref: secret });
  });
});

describe('notifications of closed sessions', () => {
  const topicId = () => Object.keys(everything.template.findResources('AWS::SNS::Topic'))[0]!;
  const ruleId = () => Object.keys(everything.template.findResources('AWS::Events::Rule', {
    Properties: { EventPattern: { 'detail-type': ['Session Closed'], detail: { status: Match.anyValue() } } },
  }))[0]!;

  it('are off unless notifyStatuses names statuses: no topic, no output', () => {
    const template = synthesizedTemplate();
    template.resourceCountIs('AWS::SNS::Topic', 0);
    expect(Object.keys(template.toJSON().Outputs as object)).not.toContain('NotificationTopicArn');
  });

  it('send "Session Closed" of those statuses to the stack\'s topic, with a dead-letter queue, and output the topic', () => {
    everything.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['claude-sessions'], 'detail-type': ['Session Closed'], detail: { status: ['FAILED', 'TIMED_OUT'] } },
      Targets: [Match.objectLike({
        Arn: { Ref: topicId() },
        DeadLetterConfig: { Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^NotificationsDeadLetters'), 'Arn'] } },
      })],
    });
    expect((everything.template.toJSON().Outputs as Record<string, { Value: unknown }>).NotificationTopicArn!.Value).toEqual({ Ref: topicId() });
  });

  it('let EventBridge publish to the topic for this rule only, and nothing else publish', () => {
    const policies = Object.values(everything.template.findResources('AWS::SNS::TopicPolicy')) as { Properties: { PolicyDocument: { Statement: any[] }; Topics: unknown[] } }[];
    expect(policies.map((p) => p.Properties.Topics)).toEqual([[{ Ref: topicId() }]]);
    const allowing = policies[0]!.Properties.PolicyDocument.Statement.filter((s) => s.Effect === 'Allow');
    expect(allowing).toEqual([expect.objectContaining({
      Effect: 'Allow', Action: 'sns:Publish', Principal: { Service: 'events.amazonaws.com' }, Resource: { Ref: topicId() },
      Condition: { ArnEquals: { 'aws:SourceArn': { 'Fn::GetAtt': [ruleId(), 'Arn'] } } },
    })]);
  });

  it('refuse a status a session never closes with, naming notifyStatuses', () => {
    expect(() => synthesize('NotifyRunning', { notifyStatuses: ['RUNNING'] })).toThrow(/notifyStatuses must name statuses a session closes with .*"RUNNING"/);
  });

  it('pass cfn-lint', () => {
    const path = join(workDir, 'everything.template.json');
    writeFileSync(path, JSON.stringify(everything.template.toJSON()));
    const lint = runCfnLint(path, { ignore: { W3005: 'aws-cdk-lib\'s redundant DependsOn on a service role (test/cfn-lint.test.ts)' } });
    expect(lint.findings).toEqual([]);
  });
});

describe('traces', () => {
  it('hold no response and no error message of any function: every function of ours tells its Tracer so in its environment', () => {
    // Prepare: every Powertools function the deploy ships
    const functions = Object.entries(synthesizedTemplate().findResources('AWS::Lambda::Function'))
      .filter(([, fn]: [string, any]) => fn.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME);
    expect(functions.map(([id]) => id)).toEqual(expect.arrayContaining([expect.stringMatching(/^RunnerFunction/), expect.stringMatching(/^HttpServiceFunction/)]));
    // Assess
    for (const [id, fn] of functions as [string, any][]) {
      expect(fn.Properties.TracingConfig, id).toEqual({ Mode: 'Active' });
      expect(fn.Properties.Environment.Variables, id).toMatchObject({ POWERTOOLS_TRACER_CAPTURE_RESPONSE: 'false', POWERTOOLS_TRACER_CAPTURE_ERROR: 'false' });
    }
  });

  it('are captured by every handler of functions/ without its response', () => {
    const handlers = readdirSync(join(PROJECT_ROOT, 'functions'), { withFileTypes: true }).filter((d) => d.isDirectory())
      .flatMap((d) => readdirSync(join(PROJECT_ROOT, 'functions', d.name)).filter((f) => f.endsWith('.ts')).map((f) => `functions/${d.name}/${f}`));
    const calls = handlers.flatMap((file) => [...read(file).matchAll(/captureLambdaHandler\(tracer[^)]*\)/g)].map((m) => [file, m[0]]));
    expect(calls.length).toBeGreaterThanOrEqual(9);
    expect(calls.filter(([, call]) => !call!.includes('captureResponse: false'))).toEqual([]);
  });
});

describe('the runner image', () => {
  const dockerfile = read('functions/runner/Dockerfile');
  /** The Dockerfile's stages: each FROM line with the RUN instructions under it (continuations joined). */
  const stages = dockerfile.replace(/\\\n/g, ' ').split('\n').reduce<{ from: string; runs: string[] }[]>((all, line) => {
    if (/^FROM /.test(line)) all.push({ from: line, runs: [] });
    else if (/^RUN /.test(line)) all.at(-1)!.runs.push(line);
    return all;
  }, []);

  it('is built for one architecture, arm64 by default as the other functions, which the Lambda and the Fargate task run on', () => {
    // The asset manifest cdk synth wrote for this run
    expect(imagePlatforms(join(inject('cdkOut'), 'ClaudeSessions.assets.json'))).toEqual(['linux/arm64']);
    const template = synthesizedTemplate();
    template.hasResourceProperties('AWS::Lambda::Function', { PackageType: 'Image', Architectures: ['arm64'] });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', { RuntimePlatform: { CpuArchitecture: 'ARM64' } });
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function')) as any[]) expect(fn.Properties.Architectures).toEqual(['arm64']);
  });

  it('is built for x86_64 when runnerArchitecture says so, the image, the Lambda and the task together', () => {
    const x86 = synthesize('RunnerOnX86', { runnerArchitecture: 'x86_64' });
    expect(x86.imagePlatforms()).toEqual(['linux/amd64']);
    x86.template.hasResourceProperties('AWS::Lambda::Function', { PackageType: 'Image', Architectures: ['x86_64'] });
    x86.template.hasResourceProperties('AWS::ECS::TaskDefinition', { RuntimePlatform: { CpuArchitecture: 'X86_64' } });
  });

  it('refuses another runnerArchitecture, naming it', () => {
    expect(() => synthesize('RunnerOnSparc', { runnerArchitecture: 'sparc' as never })).toThrow(/runnerArchitecture must be arm64 or x86_64, not "sparc"/);
  });

  it('runs no program of the target architecture but dnf: the CLI is fetched and the bundles checked on the builder\'s own platform', () => {
    // The stage that installs the CLI runs on BUILDPLATFORM, takes the target's native package by flag and runs no install script
    const cli = stages.find((s) => s.runs.some((r) => r.includes('npm install')))!;
    expect(cli.from).toMatch(/^FROM --platform=\$BUILDPLATFORM /);
    const install = cli.runs.find((r) => r.includes('npm install'))!;
    expect(install).toMatch(/--ignore-scripts/);
    expect(install).toMatch(/--os=linux --cpu=/);
    // The image's own stage: of the target platform, whose only RUN is dnf
    const image = stages.at(-1)!;
    expect(image.from).not.toMatch(/--platform/);
    expect(image.runs).toEqual([expect.stringMatching(/^RUN dnf install -y git && dnf clean all$/)]);
    // Nowhere is the CLI itself started
    expect(stages.flatMap((s) => s.runs).filter((r) => /\.bin\/claude|\bclaude\s+--/.test(r))).toEqual([]);
  });

  it('is pushed as one manifest, which Lambda accepts: the CDK CLI this project runs builds without attestations (no image index)', () => {
    // An image index (what a default attestation makes) is refused by Lambda; cdk-assets turns them off for its docker build.
    const require = createRequire(import.meta.url);
    const cli = readFileSync(join(require.resolve('aws-cdk/package.json'), '..', 'lib', 'index.js'), 'utf8');
    const build = cli.slice(cli.indexOf('async build(options)'), cli.indexOf('async login(ecr)'));
    expect(build).toMatch(/"--platform", options\.platform/);
    expect(build).toMatch(/BUILDX_NO_DEFAULT_ATTESTATIONS: "1"/);
  });
});
