import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

export class ApiKeyMissingError extends Error {
  override readonly name = 'ApiKeyMissingError';
}

/** The Anthropic API key from its secret: a plain string, or JSON with ANTHROPIC_API_KEY. */
export async function readApiKey(client: SecretsManagerClient, secretId: string): Promise<string> {
  const { SecretString } = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
  let key = SecretString?.trim() ?? '';
  if (key.startsWith('{')) {
    try {
      key = String((JSON.parse(key) as { ANTHROPIC_API_KEY?: unknown }).ANTHROPIC_API_KEY ?? '').trim();
    } catch {
      throw new ApiKeyMissingError(`secret ${secretId} looks like JSON but does not parse`);
    }
  }
  if (!key || key === 'REPLACE_ME') {
    throw new ApiKeyMissingError(
      `secret ${secretId} holds no Anthropic API key yet: aws secretsmanager put-secret-value --secret-id ${secretId} --secret-string "$ANTHROPIC_API_KEY"`,
    );
  }
  return key;
}
