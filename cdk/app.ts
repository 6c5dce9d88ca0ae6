import { App, Validations } from 'aws-cdk-lib';
import cdkNag from 'cdk-nag';
import { ClaudeSessionsStack, type ClaudeSessionsStackProps } from './claude-sessions-stack.js';
import { DeploymentContext } from './deployment-context.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';
import { parseProjectLimits } from '../lib/sessions/project-limits.js';

const app = new App();
// Every setting is read through it: a key no setting reads fails the synth, a setting given only by -c is warned of.
const context = new DeploymentContext(app);
const props: ClaudeSessionsStackProps = {
  apiKeySecretName: context.tryGetContext('apiKeySecretName'),
  apiKeySecretKmsKeyArn: context.tryGetContext('apiKeySecretKmsKeyArn'),
  gitTokenSecretName: context.tryGetContext('gitTokenSecretName'),
  // Both checked by the stack, naming the context key.
  gitTokenScopes: commaList(context.tryGetContext('gitTokenScopes')),
  trustedSettingsRepositories: commaList(context.tryGetContext('trustedSettingsRepositories')),
  maxCloneMiB: positiveInt(context.tryGetContext('maxCloneMiB'), 'maxCloneMiB'),
  // Checked by the stack, naming the context key.
  codeCommitRepositories: commaList(context.tryGetContext('codeCommitRepositories')),
  allowedTools: toolList(context.tryGetContext('allowedTools')),
  // Checked by the stack, naming the context key. A rule may hold a comma only in a JSON array.
  permissionRules: commaList(context.tryGetContext('permissionRules')),
  shellOnLambda: booleanFlag(context.tryGetContext('shellOnLambda'), 'shellOnLambda'),
  // `-c protectedBranches=main,release/*`; `none` protects none. Checked by the stack.
  protectedBranches: context.tryGetContext('protectedBranches') === 'none' ? [] : commaList(context.tryGetContext('protectedBranches')),
  alarmTopicArn: context.tryGetContext('alarmTopicArn'),
  // `-c notifyStatuses=FAILED,TIMED_OUT` or a JSON array in cdk.json; checked by the stack, naming the key.
  notifyStatuses: commaList(context.tryGetContext('notifyStatuses')),
  maxConcurrentSessions: positiveInt(context.tryGetContext('maxConcurrentSessions'), 'maxConcurrentSessions'),
  monthlyBudgetUsd: positiveNumber(context.tryGetContext('monthlyBudgetUsd'), 'monthlyBudgetUsd'),
  // An object in cdk.json, or its JSON text from `-c projectLimits='{"demo":{"maxBudgetUsd":5}}'`; checked here naming key and project.
  projectLimits: parseProjectLimits(context.tryGetContext('projectLimits'), 'context projectLimits'),
  runAttempts: positiveInt(context.tryGetContext('runAttempts'), 'runAttempts', 10),
  // The runner Lambda's reserved concurrency; off unless set (a new account's 10 cannot spare any).
  runnerConcurrency: positiveInt(context.tryGetContext('runnerConcurrency'), 'runnerConcurrency'),
  // arm64 or x86_64; checked by the stack, naming the key.
  runnerArchitecture: context.tryGetContext('runnerArchitecture'),
  keepLegacyProjectIndex: booleanFlag(context.tryGetContext('keepLegacyProjectIndex'), 'keepLegacyProjectIndex'),
  withoutRunningIndex: booleanFlag(context.tryGetContext('withoutRunningIndex'), 'withoutRunningIndex'),
  keepLegacyMilestoneIndex: booleanFlag(context.tryGetContext('keepLegacyMilestoneIndex'), 'keepLegacyMilestoneIndex'),
  withoutMilestoneSummaryIndex: booleanFlag(context.tryGetContext('withoutMilestoneSummaryIndex'), 'withoutMilestoneSummaryIndex'),
  sessionRetentionDays: positiveInt(context.tryGetContext('sessionRetentionDays'), 'sessionRetentionDays', 36_500),
  // Checked by the stack with the runner's own schema, naming the context key.
  provider: context.tryGetContext('provider'),
  model: context.tryGetContext('model'),
  smallFastModel: context.tryGetContext('smallFastModel'),
  projectModels: jsonObject(context.tryGetContext('projectModels'), 'projectModels'),
  githubWebhookSecretName: context.tryGetContext('githubWebhookSecretName'),
  // An object in cdk.json, or its JSON text; checked by the stack, naming the key and the field.
  githubTriggers: context.tryGetContext('githubTriggers'),
  // Checked by the stack (an https URL), naming the key.
  githubApiUrl: context.tryGetContext('githubApiUrl'),
  githubAppSecretName: context.tryGetContext('githubAppSecretName'),
  // Validated here with the shared schema: a bad entry fails the synth, naming entry and field.
  schedules: parseSchedules(context.tryGetContext('schedules')),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
};
// Before the stack bundles anything: a misspelt key fails at once.
context.assertOnlySettings();
context.warnAboutCommandLineSettings(new ClaudeSessionsStack(app, 'ClaudeSessions', props));

/** `-c allowedTools=Read,Bash` or a JSON array in cdk.json. */
function toolList(value: unknown): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const tools = Array.isArray(value) ? value.map(String) : String(value).split(',').map((t) => t.trim()).filter(Boolean);
  const bad = tools.filter((t) => !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(t));
  if (bad.length) throw new Error(`context allowedTools must be tool names such as Read or Bash, not ${bad.join(', ')}`);
  return tools;
}

/** `-c codeCommitRepositories=widgets,gadgets` or a JSON array in cdk.json. */
function commaList(value: unknown): string[] | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return Array.isArray(value) ? value.map(String) : String(value).split(',').map((item) => item.trim()).filter(Boolean);
}

/** `-c shellOnLambda=true` or a boolean in cdk.json. */
function booleanFlag(value: unknown, name: string): boolean | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new Error(`context ${name} must be true or false, not ${JSON.stringify(value)}`);
}

/** `-c projectModels='{"demo":"arn:…"}'` or an object in cdk.json. */
function jsonObject(value: unknown, name: string): Record<string, string> | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'object' && !Array.isArray(value)) return value as Record<string, string>;
  try {
    const parsed: unknown = JSON.parse(String(value));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, string>;
  } catch {
    // named below
  }
  throw new Error(`context ${name} must be a JSON object of project id to application inference profile ARN, not ${JSON.stringify(value)}`);
}

function positiveInt(value: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new Error(`context ${name} must be a whole number from 1${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}, not ${JSON.stringify(value)}`);
  }
  return n;
}

function positiveNumber(value: unknown, name: string): number | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`context ${name} must be a number above 0, not ${JSON.stringify(value)}`);
  return n;
}

// Every synth runs the AwsSolutions pack; a finding fails it unless acknowledged with a reason.
Validations.of(app).addPlugins(new cdkNag.AwsSolutionsChecks(app, { verbose: true }));
