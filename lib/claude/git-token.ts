import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/**
 * The git token for https workspaces, from its secret: a plain string, or JSON with GIT_TOKEN.
 * Handed to git only through its environment (lib/claude/workspace.ts), never logged.
 */
export async function readGitToken(client: SecretsManagerClient, secretId: string): Promise<string | undefined> {
  const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
  const text = SecretString?.trim() ?? '';
  if (!text.startsWith('{')) return text || undefined;
  try {
    const token = (JSON.parse(text) as { GIT_TOKEN?: unknown }).GIT_TOKEN;
    return typeof token === 'string' && token ? token : undefined;
  } catch {
    throw new Error(`secret ${secretId} looks like JSON but does not parse`);
  }
}
