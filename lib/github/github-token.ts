import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import { readGitToken } from '../claude/git-token.js';
import { parseGitHubApp, type GitHubApp } from './app-token.js';

/** How long a read token is used before it is read again, so a rotated one takes effect without a deploy. */
const TOKEN_TTL_MS = 5 * 60_000;

/**
 * The reporter's GitHub token: the deployment's git token (its secret holds a plain string or
 * JSON with GIT_TOKEN), read at the first report and again after TOKEN_TTL_MS; never logged.
 */
export function readGitHubToken(client: SecretsManagerClient, secretId: string, now = () => Date.now()): () => Promise<string> {
  let cached: { value: Promise<string>; at: number } | undefined;
  return () => {
    if (!cached || now() - cached.at > TOKEN_TTL_MS) {
      const value = readGitToken(client, secretId).then((token) => {
        if (!token) throw new Error(`secret ${secretId} holds no token: put the GitHub token there`);
        return token;
      });
      cached = { value, at: now() };
      value.catch(() => (cached = undefined)); // a failed read is tried again at the next report
    }
    return cached.value;
  };
}

/**
 * A GitHub App from its secret (JSON `{appId, privateKey}`), read at the first token and again
 * after TOKEN_TTL_MS, so a rotated key takes effect without a deploy; a bad one names `setting`.
 */
export function readGitHubApp(client: SecretsManagerClient, secretId: string, setting: string, now = () => Date.now()): () => Promise<GitHubApp> {
  let cached: { value: Promise<GitHubApp>; at: number } | undefined;
  return () => {
    if (!cached || now() - cached.at > TOKEN_TTL_MS) {
      const value = client.send(new GetSecretValueCommand({ SecretId: secretId })).then(({ SecretString }) => parseGitHubApp(SecretString ?? '', setting));
      cached = { value, at: now() };
      value.catch(() => (cached = undefined)); // a failed read is tried again at the next token
    }
    return cached.value;
  };
}
