import { getNumberFromEnv, getStringFromEnv } from '@aws-lambda-powertools/commons/utils/env';
import { DEFAULT_PERMISSION_MODE, PERMISSION_MODES, assertPermissionModeAllowed, checkedPermissionRules, type PermissionMode } from './claude-args.js';
import { DEFAULT_TOOLS } from '../sessions/session-limits.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from './claude-process.js';
import { parseModelSettings, type ModelSettings } from './model-provider.js';
import { checkedTokenScopes } from './repository-scopes.js';
import { DEFAULT_MAX_CLONE_MIB } from './workspace.js';

// The one contract between what deploys a runner and the runner itself: the CDK constructs
// (cdk/claude-runner.ts, cdk/fargate-runner.ts) and the local runtime's Fargate task build its
// environment with runnerEnvironment(); both entry points read it once, at start, with
// readRunnerEnvironment(). A setting added here reaches every runner, or none.

/** How a runner runs Claude, as its deployment sets it. */
export interface RunnerSettings {
  /** The Secrets Manager secret with the Anthropic API key (deployed runners). */
  apiKeySecretArn?: string;
  /** Where milestone transcripts (and the patches of workspaces that could not be pushed) are kept. */
  transcriptBucket?: string;
  /** The Secrets Manager secret with the git token for https workspaces. */
  gitTokenSecretArn?: string;
  /**
   * A GitHub App's token minter (cdk/git-token-minter.ts), asked for git's token of each https
   * workspace instead of a secret the runner reads: the App's key never reaches the runner.
   */
  gitTokenMinterArn?: string;
  /** The URL prefixes (https://host/owner/) the git token is sent to; another https repository is cloned anonymously. */
  gitTokenScopes?: readonly string[];
  /** Workspace repositories whose own Claude Code settings (hooks, MCP servers, env …) the CLI reads. @default none */
  trustedSettingsRepositories?: readonly string[];
  /** What a workspace's clone may hold on disk, in MiB. @default DEFAULT_MAX_CLONE_MIB (1,024) */
  maxCloneMiB?: number;
  /** No output for this long and the CLI is treated as hung. @default 5 minutes */
  idleTimeoutMs?: number;
  /** The CLI's own API retries (CLAUDE_CODE_MAX_RETRIES). @default 2 */
  maxApiRetries?: number;
  /** The only tools Claude may use. @default Read, Glob, Grep, Edit, Write */
  tools?: readonly string[];
  /** @default 'acceptEdits'; `bypassPermissions` only with trustedInputsOnly */
  permissionMode?: PermissionMode;
  /** Permission rules the CLI allows unasked, e.g. `Bash(npm test:*)`. @default none */
  permissionRules?: readonly string[];
  /** The deployment runs no untrusted prompt or repository: what `bypassPermissions` needs. @default false */
  trustedInputsOnly?: boolean;
  /** The session table: where a runner records a run its execution ended under (ExecutionWatch). @default none: no watch */
  sessionTable?: string;
  /** Fargate: each run's CLI starts as a user of its own (the task runs as root). @default false */
  separateUser?: boolean;
  /** Fargate only: how often the task beats on its token. @default 30 */
  heartbeatIntervalSeconds?: number;
  /** Who serves Claude, and which model. @default the Anthropic API, the CLI's default model */
  model?: ModelSettings;
  /** Bedrock: the role whose credentials (for invoking the model only) Claude's process gets. */
  modelRoleArn?: string;
}

const NAMES = {
  apiKeySecretArn: 'API_KEY_SECRET_ARN',
  transcriptBucket: 'TRANSCRIPT_BUCKET',
  gitTokenSecretArn: 'GIT_TOKEN_SECRET_ARN',
  gitTokenScopes: 'GIT_TOKEN_SCOPES',
  gitTokenMinterArn: 'GIT_TOKEN_MINTER_ARN',
  trustedSettingsRepositories: 'TRUSTED_SETTINGS_REPOSITORIES',
  maxCloneMiB: 'CLAUDE_MAX_CLONE_MIB',
  idleTimeoutMs: 'CLAUDE_IDLE_TIMEOUT_MS',
  maxApiRetries: 'CLAUDE_CODE_MAX_RETRIES',
  tools: 'CLAUDE_TOOLS',
  permissionMode: 'CLAUDE_PERMISSION_MODE',
  permissionRules: 'CLAUDE_PERMISSION_RULES',
  trustedInputsOnly: 'TRUSTED_INPUTS_ONLY',
  separateUser: 'CLAUDE_SEPARATE_USER',
  sessionTable: 'SESSION_TABLE',
  heartbeatIntervalSeconds: 'HEARTBEAT_INTERVAL_SECONDS',
  provider: 'MODEL_PROVIDER',
  model: 'CLAUDE_MODEL',
  smallFastModel: 'CLAUDE_SMALL_FAST_MODEL',
  projectModels: 'PROJECT_MODELS',
  modelRoleArn: 'MODEL_ROLE_ARN',
} as const;

/** The environment that carries these settings; values may be CDK tokens (a secret's ARN, a bucket's name). */
export function runnerEnvironment(settings: RunnerSettings): Record<string, string> {
  const env: Record<string, string> = {
    [NAMES.idleTimeoutMs]: String(settings.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS),
    [NAMES.maxApiRetries]: String(settings.maxApiRetries ?? 2),
    [NAMES.tools]: (settings.tools ?? DEFAULT_TOOLS).join(','),
    [NAMES.permissionMode]: settings.permissionMode ?? DEFAULT_PERMISSION_MODE,
    [NAMES.maxCloneMiB]: String(checkedMaxCloneMiB(settings.maxCloneMiB, 'maxCloneMiB') ?? DEFAULT_MAX_CLONE_MIB),
  };
  assertPermissionModeAllowed(settings.permissionMode, settings.trustedInputsOnly, 'permissionMode');
  if (settings.trustedInputsOnly) env[NAMES.trustedInputsOnly] = 'true';
  if (settings.separateUser) env[NAMES.separateUser] = 'true';
  if (settings.sessionTable) env[NAMES.sessionTable] = settings.sessionTable;
  // JSON: a rule may hold a comma.
  if (settings.permissionRules?.length) env[NAMES.permissionRules] = JSON.stringify(checkedPermissionRules(settings.permissionRules, 'permissionRules'));
  if (settings.apiKeySecretArn) env[NAMES.apiKeySecretArn] = settings.apiKeySecretArn;
  if (settings.transcriptBucket) env[NAMES.transcriptBucket] = settings.transcriptBucket;
  if (settings.gitTokenSecretArn) env[NAMES.gitTokenSecretArn] = settings.gitTokenSecretArn;
  if (settings.gitTokenMinterArn) env[NAMES.gitTokenMinterArn] = settings.gitTokenMinterArn;
  if (settings.gitTokenScopes?.length) env[NAMES.gitTokenScopes] = settings.gitTokenScopes.join(',');
  if (settings.trustedSettingsRepositories?.length) env[NAMES.trustedSettingsRepositories] = settings.trustedSettingsRepositories.join(',');
  if (settings.heartbeatIntervalSeconds !== undefined) env[NAMES.heartbeatIntervalSeconds] = String(settings.heartbeatIntervalSeconds);
  const model = settings.model ?? { provider: 'anthropic' };
  env[NAMES.provider] = model.provider;
  if (model.model) env[NAMES.model] = model.model;
  if (model.provider === 'bedrock') {
    if (model.smallFastModel) env[NAMES.smallFastModel] = model.smallFastModel;
    if (model.projectModels && Object.keys(model.projectModels).length) env[NAMES.projectModels] = JSON.stringify(model.projectModels);
  }
  if (settings.modelRoleArn) env[NAMES.modelRoleArn] = settings.modelRoleArn;
  return env;
}

/** What a runner read from its environment: every setting resolved to its value. */
export type RunnerEnvironment = Required<Omit<RunnerSettings,
  'apiKeySecretArn' | 'transcriptBucket' | 'gitTokenSecretArn' | 'gitTokenMinterArn' | 'tools' | 'modelRoleArn' | 'gitTokenScopes' | 'trustedSettingsRepositories' | 'permissionRules' | 'sessionTable'>> &
  Pick<RunnerSettings, 'apiKeySecretArn' | 'transcriptBucket' | 'gitTokenSecretArn' | 'gitTokenMinterArn' | 'modelRoleArn' | 'sessionTable'> & {
    tools: string[];
    gitTokenScopes: string[];
    trustedSettingsRepositories: string[];
    permissionRules: string[];
  };

/** Reads the settings once, at start; a bad value throws naming its variable. */
export function readRunnerEnvironment(): RunnerEnvironment {
  const optional = (key: string) => getStringFromEnv({ key, defaultValue: '' }) || undefined;
  const permissionMode = getStringFromEnv({ key: NAMES.permissionMode, defaultValue: DEFAULT_PERMISSION_MODE });
  if (!PERMISSION_MODES.includes(permissionMode as PermissionMode)) {
    throw new Error(`${NAMES.permissionMode} must be one of ${PERMISSION_MODES.join(', ')}, not ${JSON.stringify(permissionMode)}`);
  }
  const trustedInputsOnly = optional(NAMES.trustedInputsOnly) === 'true';
  assertPermissionModeAllowed(permissionMode as PermissionMode, trustedInputsOnly, NAMES.permissionMode);
  let permissionRules: unknown = [];
  try {
    permissionRules = JSON.parse(optional(NAMES.permissionRules) ?? '[]');
  } catch {
    permissionRules = undefined; // named below
  }
  if (!Array.isArray(permissionRules) || !permissionRules.every((r) => typeof r === 'string')) {
    throw new Error(`${NAMES.permissionRules} must be a JSON array of permission rules such as ["Bash(npm test:*)"]`);
  }
  // Powertools reads '' as 0: every number here must be above 0 (a 0 heartbeat would spin).
  const positive = (key: string, defaultValue: number) => {
    const n = getNumberFromEnv({ key, defaultValue });
    if (!(n > 0)) throw new Error(`${key} must be a number above 0, not ${JSON.stringify(process.env[key])}`);
    return n;
  };
  const list = (key: string) => (optional(key) ?? '').split(',').map((item) => item.trim()).filter(Boolean);
  return {
    apiKeySecretArn: optional(NAMES.apiKeySecretArn),
    transcriptBucket: optional(NAMES.transcriptBucket),
    gitTokenSecretArn: optional(NAMES.gitTokenSecretArn),
    gitTokenMinterArn: optional(NAMES.gitTokenMinterArn),
    gitTokenScopes: checkedTokenScopes(list(NAMES.gitTokenScopes), NAMES.gitTokenScopes)!,
    trustedSettingsRepositories: list(NAMES.trustedSettingsRepositories),
    maxCloneMiB: checkedMaxCloneMiB(getNumberFromEnv({ key: NAMES.maxCloneMiB, defaultValue: DEFAULT_MAX_CLONE_MIB }), NAMES.maxCloneMiB)!,
    idleTimeoutMs: positive(NAMES.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS),
    maxApiRetries: getNumberFromEnv({ key: NAMES.maxApiRetries, defaultValue: 2 }),
    tools: getStringFromEnv({ key: NAMES.tools, defaultValue: DEFAULT_TOOLS.join(',') }).split(',').map((t) => t.trim()).filter(Boolean),
    permissionMode: permissionMode as PermissionMode,
    permissionRules: checkedPermissionRules(permissionRules as string[], NAMES.permissionRules)!,
    trustedInputsOnly,
    separateUser: optional(NAMES.separateUser) === 'true',
    sessionTable: optional(NAMES.sessionTable),
    heartbeatIntervalSeconds: positive(NAMES.heartbeatIntervalSeconds, 30),
    model: readModelSettings(optional),
    modelRoleArn: optional(NAMES.modelRoleArn),
  };
}

function readModelSettings(optional: (key: string) => string | undefined): ModelSettings {
  const projectModels = optional(NAMES.projectModels);
  let parsedProjects: unknown;
  try {
    parsedProjects = projectModels === undefined ? undefined : JSON.parse(projectModels);
  } catch {
    throw new Error(`${NAMES.projectModels} must be a JSON object of project id to application inference profile ARN`);
  }
  return parseModelSettings({
    provider: optional(NAMES.provider),
    model: optional(NAMES.model),
    smallFastModel: optional(NAMES.smallFastModel),
    projectModels: parsedProjects,
  }, 'runner environment:', { provider: NAMES.provider, model: NAMES.model, smallFastModel: NAMES.smallFastModel, projectModels: NAMES.projectModels });
}

/** A clone's size limit from a setting: a whole number of MiB from 1, or a clear error naming the setting. */
export function checkedMaxCloneMiB(value: number | undefined, setting: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1) throw new Error(`${setting} must be a whole number of MiB from 1, not ${JSON.stringify(value)}`);
  return value;
}
