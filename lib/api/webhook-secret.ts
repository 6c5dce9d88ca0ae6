import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/** How long a read secret is used before it is read again, so a rotated one takes effect without a deploy. */
const SECRET_TTL_MS = 5 * 60_000;

/**
 * The webhook's secret from Secrets Manager (its string, as GitHub was given it), read at the
 * first delivery and again after SECRET_TTL_MS: a flood of bad signatures reads it no more often.
 */
export function readWebhookSecret(client: SecretsManagerClient, secretId: string, now = () => Date.now()): () => Promise<string> {
  let cached: { value: Promise<string>; at: number } | undefined;
  return () => {
    if (!cached || now() - cached.at > SECRET_TTL_MS) {
      const value = client.send(new GetSecretValueCommand({ SecretId: secretId })).then(({ SecretString }) => {
        if (!SecretString) throw new Error(`secret ${secretId} holds no string: put the webhook's secret there`);
        return SecretString;
      });
      cached = { value, at: now() };
      value.catch(() => (cached = undefined)); // a failed read is tried again at the next delivery
    }
    return cached.value;
  };
}
