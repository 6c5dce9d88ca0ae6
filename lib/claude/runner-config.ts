import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { invokeGitTokenMinter } from '../github/git-token-minter.js';
import { readGitToken } from './git-token.js';
import { sessionEndpoints, type EndpointClients } from './model-endpoint.js';
import type { RunnerConfig } from './run-session-task.js';
import type { RunnerEnvironment, RunnerSettings } from './runner-environment.js';
import type { TranscriptStore } from './transcript-store.js';

// The one assembly of the RunnerConfig runSessionTask takes, for all three runners: the Lambda
// handler and the Fargate task from the environment they read (readRunnerEnvironment), the local
// runtime from the settings it was given, which its own Fargate tasks get as their environment.
// A setting's name in the environment and in the config (CLAUDE_CODE_MAX_RETRIES is
// `maxApiRetries` there, `maxRetries` here) is mapped here alone, both ways: a setting reaches
// every runner, or none.

/** The settings of a runner's environment that shape its CLI and its workspaces. */
export type RunnerConfigSettings = Pick<RunnerSettings,
  'idleTimeoutMs' | 'maxApiRetries' | 'tools' | 'permissionMode' | 'permissionRules' | 'separateUser' | 'gitTokenScopes' | 'trustedSettingsRepositories' | 'maxCloneMiB'>;

/** The RunnerConfig keys those settings fill. */
const SETTING_KEYS = [
  'idleTimeoutMs', 'maxRetries', 'tools', 'permissionMode', 'permissionRules', 'separateUser', 'gitTokenScopes', 'trustedSettingsRepositories', 'maxCloneMiB',
] as const satisfies readonly (keyof RunnerConfig)[];

/** What a runner's platform gives it beside its settings: where Claude is, its stores and credentials, its watch and its limits. */
export type RunnerPlatform = Omit<RunnerConfig, (typeof SETTING_KEYS)[number]>;

/** A runner's RunnerConfig: its settings, and what its platform gives it. */
export function runnerConfigOf<P extends RunnerPlatform>(settings: RunnerConfigSettings, platform: P): RunnerConfig & P {
  const fromSettings: Pick<RunnerConfig, (typeof SETTING_KEYS)[number]> = {
    idleTimeoutMs: settings.idleTimeoutMs,
    maxRetries: settings.maxApiRetries,
    tools: settings.tools,
    permissionMode: settings.permissionMode,
    permissionRules: settings.permissionRules,
    separateUser: settings.separateUser,
    gitTokenScopes: settings.gitTokenScopes,
    trustedSettingsRepositories: settings.trustedSettingsRepositories,
    maxCloneMiB: settings.maxCloneMiB,
  };
  // A setting left out leaves the config's default, as an environment without the variable does.
  const given = Object.fromEntries(Object.entries(fromSettings).filter(([, value]) => value !== undefined));
  return { ...platform, ...given };
}

/** A RunnerConfig taken apart again: its settings, as a runner's environment carries them (runnerEnvironment), and the rest. */
export function splitRunnerConfig(config: RunnerConfig): { settings: RunnerConfigSettings; platform: RunnerPlatform } {
  const platform: Partial<RunnerConfig> = { ...config };
  for (const key of SETTING_KEYS) delete platform[key];
  return {
    settings: {
      idleTimeoutMs: config.idleTimeoutMs,
      maxApiRetries: config.maxRetries,
      tools: config.tools,
      permissionMode: config.permissionMode,
      permissionRules: config.permissionRules,
      separateUser: config.separateUser,
      gitTokenScopes: config.gitTokenScopes,
      trustedSettingsRepositories: config.trustedSettingsRepositories,
      maxCloneMiB: config.maxCloneMiB,
    },
    platform,
  };
}

/** What a deployed runner reaches: Secrets Manager (the API key, the git token), Lambda (the git token minter), STS (Bedrock), the transcript bucket, its role's credentials. */
export interface DeployedRunnerClients extends EndpointClients {
  /** The transcript bucket's store, where a deployment has one (TRANSCRIPT_BUCKET). */
  transcripts?: TranscriptStore;
  /** The runner's role, which signs git's password for CodeCommit workspaces. */
  codeCommitCredentials: AwsCredentialIdentityProvider;
  /** Lambda, to ask the git token minter (GIT_TOKEN_MINTER_ARN) for a GitHub App's token. */
  lambda: () => LambdaClient;
}

/**
 * A deployed runner's config (the Lambda's, the Fargate task's), made once per process: each
 * session's endpoint from the model settings, the git token when a session needs it (a GitHub
 * App's from the minter, else the deployment's secret), milestone transcripts and unpushed patches in the bucket. `platform`: what only one of them
 * has (the Lambda's sandbox); the execution watch and the time left are each invocation's own.
 */
export function deployedRunnerConfig(runner: RunnerEnvironment, clients: DeployedRunnerClients, platform: RunnerPlatform = {}): RunnerConfig {
  const { transcripts } = clients;
  return runnerConfigOf(runner, {
    sessionEndpoint: sessionEndpoints(runner, clients),
    transcripts,
    // git's token: a GitHub App's, minted per repository by the minter (which alone holds the App's
    // key), else the deployment's secret.
    gitToken: runner.gitTokenMinterArn
      ? (repo) => invokeGitTokenMinter(clients.lambda(), runner.gitTokenMinterArn!)(repo)
      : runner.gitTokenSecretArn ? () => readGitToken(clients.secrets(), runner.gitTokenSecretArn!) : undefined,
    codeCommitCredentials: clients.codeCommitCredentials,
    savePatch: transcripts ? (sessionId, patch) => transcripts.savePatch(sessionId, patch) : undefined,
    ...platform,
  });
}
