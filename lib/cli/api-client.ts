import type { AwsCredentialIdentity } from '@smithy/types';
import { hasAwsCredentials } from '../local/local-endpoint.js';
import { isLoopbackName } from '../local/loopback-guard.js';
import { EngineRequestError } from './engine-client.js';

// The CLI as a client of a sessions HTTP API: a deployed stack's API Gateway URL (every method is
// IAM-authorised, so requests are signed with SigV4 from the default AWS credential chain, with the
// SDK's own signer) or a local engine's URL (docs/ARCHITECTURE.md#local-runtime-vs-aws).

export class ApiRequestError extends Error {
  override readonly name = 'ApiRequestError';
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export interface ApiResponse {
  status: number;
  body: unknown;
}


/** `--api`, else CLAUDE_SESSIONS_API; undefined: the local state. */
export function apiUrlOf(flag: string | undefined, env: NodeJS.ProcessEnv): URL | undefined {
  const value = flag ?? (env.CLAUDE_SESSIONS_API || undefined);
  if (value === undefined) return undefined;
  const source = flag !== undefined ? '--api' : 'CLAUDE_SESSIONS_API';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ApiRequestError(0, `${source} must be the API's URL (https://<id>.execute-api.<region>.amazonaws.com/v1, or a local engine's http://127.0.0.1:<port>), not ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackName(url.hostname))) {
    throw new ApiRequestError(0, `${source} must be https (http only on 127.0.0.1 or localhost): ${url.origin}`);
  }
  return url;
}

/** API Gateway's region from its host name; else the environment's. */
export function regionOf(url: URL, env: NodeJS.ProcessEnv): string {
  return /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$/.exec(url.hostname)?.[1] ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
}

export interface ApiClientOptions {
  env?: NodeJS.ProcessEnv;
  /** Resolves AWS credentials (default: the SDK's default chain). Injected for tests of the signer only. */
  credentials?: () => Promise<AwsCredentialIdentity>;
}

/**
 * Sends JSON requests to the API at `base`. A remote API gets every request signed for
 * `execute-api` in its region; a loopback one (a local engine) only when AWS credentials are
 * at hand without probing the network, since the engine does not need them.
 */
export class SessionsApiClient {
  private credentials?: Promise<(() => Promise<AwsCredentialIdentity>) | undefined>;

  constructor(readonly base: URL, private readonly options: ApiClientOptions = {}) {}

  async request(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<ApiResponse> {
    const url = new URL(this.base.pathname.replace(/\/$/, '') + path, this.base);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { host: url.host, accept: 'application/json' };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const signed = await this.sign(method, url, headers, payload);
    const response = await fetch(url, { method, headers: signed, body: payload });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: kept as text for the error
    }
    if (response.status === 403 && /security token|signature|credential/i.test(text)) {
      throw new ApiRequestError(403, `the API refused the request's AWS signature (${messageOf(parsed)}): check AWS_PROFILE or your credentials, and that the role may call execute-api:Invoke on it`);
    }
    return { status: response.status, body: parsed };
  }

  private async sign(method: string, url: URL, headers: Record<string, string>, body: string | undefined): Promise<Record<string, string>> {
    this.credentials ??= this.credentialProvider();
    const provider = await this.credentials;
    if (!provider) return headers;
    const [{ SignatureV4 }, { Hash }] = await Promise.all([import('@smithy/signature-v4'), import('@smithy/core/serde')]);
    const env = this.options.env ?? process.env;
    const signer = new SignatureV4({ service: 'execute-api', region: regionOf(url, env), credentials: provider, sha256: Hash.bind(null, 'sha256') });
    const request = await signer.sign({
      method, protocol: url.protocol, hostname: url.hostname, port: url.port ? Number(url.port) : undefined,
      path: url.pathname, query: Object.fromEntries(url.searchParams), headers, body,
    });
    return request.headers as Record<string, string>;
  }

  private async credentialProvider(): Promise<(() => Promise<AwsCredentialIdentity>) | undefined> {
    if (this.options.credentials) return this.options.credentials;
    const env = this.options.env ?? process.env;
    if (isLoopbackName(this.base.hostname) && !hasAwsCredentials(env)) return undefined;
    const { fromNodeProviderChain } = await import('@aws-sdk/credential-providers');
    const chain = fromNodeProviderChain({ profile: env.AWS_PROFILE || undefined });
    return async () => {
      try {
        return await chain();
      } catch (err) {
        throw new ApiRequestError(0, `the API at ${this.base.origin} needs AWS credentials and the default chain found none (${(err as Error).message})`);
      }
    };
  }
}

function messageOf(body: unknown): string {
  if (body && typeof body === 'object' && 'message' in body) return String((body as { message: unknown }).message);
  return String(body).slice(0, 200);
}

/**
 * The commands' client of a sessions API named by --api or CLAUDE_SESSIONS_API: the engine's own
 * interface (call and send), so `list`, `show`, `usage` and `milestone` read a deployed stack,
 * or another state folder's engine, as they read the local one.
 */
export class RemoteSessions {
  private readonly client: SessionsApiClient;

  constructor(readonly base: URL, options: ApiClientOptions = {}) {
    this.client = new SessionsApiClient(base, options);
  }

  get url(): string {
    return this.base.href.replace(/\/$/, '');
  }

  async send<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const reply = await this.client.request(method as 'GET', path, body);
    return reply as { status: number; body: T };
  }

  /** JSON in, JSON out; an answer of 400 or more throws as the engine's do (its body kept: field errors, the error's name). */
  async call<T = any>(method: string, path: string, body?: unknown): Promise<T> {
    const { status, body: answer } = await this.send<T>(method, path, body);
    if (status >= 400) {
      const reply = (answer && typeof answer === 'object' ? answer : { message: messageOf(answer) }) as { message?: string };
      throw new EngineRequestError(status, { ...reply, message: `${this.base.host} answered ${status}: ${reply.message ?? messageOf(answer)}` });
    }
    return answer;
  }
}
