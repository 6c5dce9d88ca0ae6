import { App, Validations } from 'aws-cdk-lib';
import cdkNag from 'cdk-nag';
import { ClaudeSessionsStack } from './claude-sessions-stack.js';
import { parseSchedules } from '../lib/sessions/schedule-entry.js';
import { parseProjectLimits } from '../lib/sessions/project-limits.js';

const app = new App();
new ClaudeSessionsStack(app, 'ClaudeSessions', {
  apiKeySecretName: app.node.tryGetContext('apiKeySecretName'),
  apiKeySecretKmsKeyArn: app.node.tryGetContext('apiKeySecretKmsKeyArn'),
  gitTokenSecretName: app.node.tryGetContext('gitTokenSecretName'),
  // Both checked by the stack, naming the context key.
  gitTokenScopes: commaList(app.node.tryGetContext('gitTokenScopes')),
  trustedSettingsRepositories: commaList(app.node.tryGetContext('trustedSettingsRepositories')),
  maxCloneMiB: positiveInt(app.node.tryGetContext('maxCloneMiB'), 'maxCloneMiB'),
  // Checked by the stack, naming the context key.
  codeCommitRepositories: commaList(app.node.tryGetContext('codeCommitRepositories')),
  allowedTools: toolList(app.node.tryGetContext('allowedTools')),
  // Checked by the stack, naming the context key. A rule may hold a comma only in a JSON array.
  permissionRules: commaList(app.node.tryGetContext('permissionRules')),
  shellOnLambda: booleanFlag(app.node.tryGetContext('shellOnLambda'), 'shellOnLambda'),
  // `-c protectedBranches=main,release/*`; `none` protects none. Checked by the stack.
  protectedBranches: app.node.tryGetContext('protectedBranches') === 'none' ? [] : commaList(app.node.tryGetContext('protectedBranches')),
  alarmTopicArn: app.node.tryGetContext('alarmTopicArn'),
  maxConcurrentSessions: positiveInt(app.node.tryGetContext('maxConcurrentSessions'), 'maxConcurrentSessions'),
  monthlyBudgetUsd: positiveNumber(app.node.tryGetContext('monthlyBudgetUsd'), 'monthlyBudgetUsd'),
  // An object in cdk.json, or its JSON text from `-c projectLimits='{"demo":{"maxBudgetUsd":5}}'`; checked here naming key and project.
  projectLimits: parseProjectLimits(app.node.tryGetContext('projectLimits'), 'context projectLimits'),
  runAttempts: positiveInt(app.node.tryGetContext('runAttempts'), 'runAttempts', 10),
  // The runner Lambda's reserved concurrency; off unless set (a new account's 10 cannot spare any).
  runnerConcurrency: positiveInt(app.node.tryGetContext('runnerConcurrency'), 'runnerConcurrency'),
  keepLegacyProjectIndex: booleanFlag(app.node.tryGetContext('keepLegacyProjectIndex'), 'keepLegacyProjectIndex'),
  sessionRetentionDays: positiveInt(app.node.tryGetContext('sessionRetentionDays'), 'sessionRetentionDays', 36_500),
  // Checked by the stack with the runner's own schema, naming the context key.
  provider: app.node.tryGetContext('provider'),
  model: app.node.tryGetContext('model'),
  smallFastModel: app.node.tryGetContext('smallFastModel'),
  projectModels: jsonObject(app.node.tryGetContext('projectModels'), 'projectModels'),
  githubWebhookSecretName: app.node.tryGetContext('githubWebhookSecretName'),
  // An object in cdk.json, or its JSON text; checked by the stack, naming the key and the field.
  githubTriggers: app.node.tryGetContext('githubTriggers'),
  // Checked by the stack (an https URL), naming the key.
  githubApiUrl: app.node.tryGetContext('githubApiUrl'),
  githubAppSecretName: app.node.tryGetContext('githubAppSecretName'),
  // Validated here with the shared schema: a bad entry fails the synth, naming entry and field.
  schedules: parseSchedules(app.node.tryGetContext('schedules')),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
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
