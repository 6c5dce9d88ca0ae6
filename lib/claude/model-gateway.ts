import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { ClaudeEndpoint } from './claude-process.js';
import { messageCostUsd, type Surcharges } from './model-prices.js';
import { UsageMeter, type BilledRequest, type MeteredBody, type MeteredUsage } from './usage-meter.js';

// The CLI never holds a credential. Each run gets its own endpoint on 127.0.0.1 (ModelGateway):
// the CLI is pointed at it with a random per-run token in place of a key (Anthropic) or with
// CLAUDE_CODE_SKIP_BEDROCK_AUTH (Bedrock), and the runner adds the real API key, or signs with
// the model role's credentials, on the way out. So nothing the CLI starts (Bash, a hook, an MCP
// server) finds a key or AWS credentials in the CLI's environment or its /proc; what it can do
// is what the run could do anyway (call the model through the gateway, while the run lasts).
// Only the model API's own paths are served: no batches, files or admin API with the key.
// What passes is metered (usage-meter.ts): the run's usage is what the model answered here.

/** The Anthropic API paths the CLI uses; anything else (batches, files, admin) is refused. */
const ANTHROPIC_PATHS = /^\/v1\/messages(?:\/count_tokens)?$/;
/** Bedrock's runtime invocations and the inference-profile reads the CLI makes to resolve a model. */
const BEDROCK_PATHS = /^\/(?:model\/[^/]+\/(?:invoke|invoke-with-response-stream|count-tokens)|inference-profiles(?:\/[^/]+)?)$/;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'host', 'content-length']);
/** What the CLI sends that names a credential: never forwarded, the gateway sets its own. */
const CREDENTIAL_HEADERS = /^(?:authorization|x-api-key|x-amz-.*|proxy-authorization|cookie)$/;
/** Bedrock's request options (a latency-optimised tier, a service tier) are priced otherwise: not the CLI's to choose. */
const UNPRICED_HEADERS = /^x-amzn-bedrock-/;
/**
 * The tool types whose cost the meter knows: tools the caller runs (untyped, custom, bash,
 * text editor, computer, memory) and web fetch cost their tokens only, and a web search is priced
 * per request from the answer's usage, as the CLI prices it. Any other server tool (code
 * execution, bills by container time; advisor, another model's tokens in `usage.iterations`;
 * tool search; MCP toolsets) is billed in a way the answer's usage does not show or the CLI does not price.
 */
const METERED_TOOL_TYPES = /^(?:custom|(?:bash|text_editor|computer|memory|web_fetch|web_search)_\d+)$/;
/** The context edits the CLI sends: they only clear, so what is billed is the usage. Compaction runs iterations billed apart from it. */
const METERED_CONTEXT_EDITS = /^(?:clear_thinking|clear_tool_uses)_\d+$/;

/** What a run's gateway holds it to. */
export interface GatewayLimits {
  /** The session's maxBudgetUsd: no model call once the metered cost reaches it. */
  budgetUsd?: number;
}

export class ModelGateway {
  private readonly token = randomBytes(24).toString('hex');
  /** In the environment of the CLI and everything it starts: how the run's processes are found (killRunProcesses). */
  get marker(): string {
    return this.token;
  }
  private closed = false;
  private readonly meter = new UsageMeter();

  /** Model calls refused because the run had spent its budget. */
  private overBudget = 0;
  /** The upstream's statuses for billed calls: whether a failure the CLI reports is one the model gave. */
  private readonly statuses = new Set<number>();
  private readonly inFlight = new Set<InFlightCall>();
  private draining = false;

  private constructor(
    private readonly server: Server,
    /** Where the CLI would have gone: the deployment's endpoint, with its credential. */
    private readonly upstream: ClaudeEndpoint,
    private readonly limits: GatewayLimits,
  ) {}

  /** Listens on 127.0.0.1 for one run's CLI. */
  static async open(upstream: ClaudeEndpoint, limits: GatewayLimits = {}): Promise<ModelGateway> {
    let gateway: ModelGateway | undefined;
    const server = createServer((req, res) => void gateway!.handle(req, res));
    gateway = new ModelGateway(server, upstream, limits);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    server.unref(); // a runner process that is done exits, gateway or not
    return gateway;
  }

  private get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/${this.token}`;
  }

  /** The endpoint the CLI is given: this gateway, and no credential. */
  get endpoint(): ClaudeEndpoint {
    if (this.upstream.provider === 'bedrock') {
      const { credentials: _held, ...rest } = this.upstream;
      return { ...rest, baseUrl: this.url };
    }
    return { ...this.upstream, apiKey: this.token, baseUrl: this.url };
  }

  /** What the model answered through this gateway so far, priced: the run's usage, whatever the CLI prints. */
  metered(): MeteredUsage {
    return { ...this.meter.metered(), refusedOverBudget: this.overBudget, upstreamStatuses: [...this.statuses] };
  }

  /**
   * The run is over: new calls are refused, and the ones under way are awaited (each read to its
   * end, or for GRACE_MS after its caller left), so what is then metered is all the run spent.
   */
  async drain(): Promise<MeteredUsage> {
    this.draining = true;
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight].map((call) => call.done));
    return this.metered();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.draining = true;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const refuse = (status: number, message: string, type = 'permission_error') => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type, message }, message }));
    };
    let call: InFlightCall | undefined;
    try {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const prefix = `/${this.token}`;
      const bedrock = this.upstream.provider === 'bedrock';
      const keyOk = bedrock || sameSecret(String(req.headers['x-api-key'] ?? ''), this.token);
      if (!url.pathname.startsWith(`${prefix}/`) || !keyOk) return refuse(401, 'not this run\'s model gateway');
      const path = url.pathname.slice(prefix.length);
      if (!(bedrock ? BEDROCK_PATHS : ANTHROPIC_PATHS).test(path)) return refuse(403, `the model gateway serves the model API only, not ${req.method} ${path}`);
      if (this.draining) return refuse(503, 'the run is over: its model gateway makes no more calls', 'api_error');
      const body = await readAll(req);
      const billed = billedCall(bedrock, path, body);
      if (billed?.unmetered) return refuse(400, billed.unmetered, 'invalid_request_error');
      if (billed) {
        call = await this.admit(messageCostUsd(billed.model, billed.worstCase, billed.surcharges));
        if (!call) {
          this.overBudget += 1;
          return refuse(402, `this session has spent its budget of $${this.limits.budgetUsd}: the model gateway makes no more model calls for it`, 'budget_exceeded');
        }
      }
      await this.forward(req, res, path + url.search, body, billed);
    } catch (err) {
      refuse(502, `the model gateway could not reach the model: ${(err as Error).message}`);
    } finally {
      call?.finish();
    }
  }

  /**
   * Lets a billed call through while the run is under its budget. The CLI's own --max-budget-usd
   * counts only its own calls (and, resumed, the whole conversation's): the gateway holds every
   * caller of the run to the session's budget. A call whose worst case (its max_tokens, its body
   * as input) would pass the budget with the calls under way waits for them, so parallel calls
   * cannot all start under the budget: a session ends at most one reply past it.
   */
  private async admit(estimate: number): Promise<InFlightCall | undefined> {
    const { budgetUsd } = this.limits;
    for (;;) {
      const spent = this.meter.metered().totalCostUsd;
      if (budgetUsd !== undefined && spent >= budgetUsd) return undefined;
      const open = [...this.inFlight];
      const reserved = open.reduce((sum, c) => sum + c.reserveUsd, 0);
      if (budgetUsd === undefined || open.length === 0 || spent + reserved + estimate <= budgetUsd) {
        // Taken at once, before any other waiting call looks again.
        let finish!: () => void;
        const call: InFlightCall = { reserveUsd: estimate, done: new Promise<void>((resolve) => (finish = resolve)), finish: () => {} };
        call.finish = () => {
          this.inFlight.delete(call);
          finish();
        };
        this.inFlight.add(call);
        return call;
      }
      await Promise.race(open.map((c) => c.done));
    }
  }

  private async forward(req: IncomingMessage, res: ServerResponse, pathAndQuery: string, body: Buffer, billed: BilledCall | undefined): Promise<void> {
    const base = new URL(this.upstream.baseUrl ?? defaultBaseUrl(this.upstream, pathAndQuery));
    const target = new URL(base.pathname.replace(/\/$/, '') + pathAndQuery, base);
    // Uncompressed answers, so the meter reads what the CLI reads.
    const headers: Record<string, string> = { ...forwardable(req.headers), host: target.host, 'content-length': String(body.length), 'accept-encoding': 'identity' };
    if (this.upstream.provider !== 'bedrock') {
      headers['x-api-key'] = this.upstream.apiKey;
    } else if (this.upstream.credentials) {
      const signer = new SignatureV4({ service: 'bedrock', region: this.upstream.region, credentials: this.upstream.credentials, sha256: Hash.bind(null, 'sha256') });
      const signed = await signer.sign({
        method: req.method ?? 'POST', protocol: target.protocol, hostname: target.hostname, port: target.port ? Number(target.port) : undefined,
        path: target.pathname, query: Object.fromEntries(target.searchParams), headers, body,
      });
      Object.assign(headers, signed.headers);
    }
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    await new Promise<void>((resolve, reject) => {
      let answered: IncomingMessage | undefined;
      const upstream = send(target, { method: req.method, headers }, (answer) => {
        answered = answer;
        const status = answer.statusCode ?? 502;
        if (billed) this.statuses.add(status);
        res.writeHead(status, forwardable(answer.headers, false));
        // Only an answered message is billed: an error's body carries no usage.
        const reading = billed && status === 200
          ? this.meter.answer(bodyOf(billed, answer.headers), billed, String(answer.headers['content-encoding'] ?? ''))
          : Promise.resolve(undefined);
        answer.pause();
        void reading.then((reader) => {
          if (reader) answer.on('data', (chunk: Buffer) => reader.write(chunk));
          answer.once('end', () => void Promise.resolve(reader?.end()).then(() => resolve(), reject));
          if (!res.destroyed) answer.pipe(res);
          else answer.resume();
        }, reject);
        answer.once('error', reject);
        answer.once('close', () => resolve()); // cut off (after GRACE_MS): what it said so far is counted
      });
      upstream.once('error', reject);
      res.once('close', () => {
        if (answered?.complete) return;
        // The caller gave up (killed, timed out). A billed answer is still read, for a while, so
        // what the model goes on generating is counted; anything else stops at once.
        if (!billed || !answered) return void upstream.destroy(new Error('the caller closed its request'));
        answered.unpipe(res);
        answered.resume();
        setTimeout(() => upstream.destroy(new Error('the caller closed its request')), GRACE_MS).unref();
      });
      upstream.end(body);
    });
  }
}

/** How long a billed answer is still read after its caller left. */
const GRACE_MS = 5_000;

interface InFlightCall {
  /** The call's worst case, held against the budget until it ends. */
  reserveUsd: number;
  done: Promise<void>;
  finish: () => void;
}

/** A call that answers with a billed message, read once: the model it asks for, its worst case, and what it asks for that cannot be metered. */
interface BilledCall extends BilledRequest {
  bedrock: boolean;
  path: string;
  /** Why the gateway refuses the call: it asks for a feature billed in a way the meter cannot price. */
  unmetered?: string;
}

/** The parts of a Messages body (or a Bedrock invocation's) that decide what its answer costs. */
interface BilledBody {
  max_tokens?: unknown;
  model?: unknown;
  speed?: unknown;
  inference_geo?: unknown;
  tools?: unknown;
  context_management?: { edits?: unknown };
}

/**
 * Which calls answer with a billed message (Messages calls and Bedrock invocations, not
 * count_tokens, not profile reads), with what they ask for. The worst case is the call's
 * max_tokens of output and its body as input at ~4 bytes a token: held against the budget while
 * the call runs, and charged where its answer cannot be read.
 */
function billedCall(bedrock: boolean, pathAndQuery: string, body: Buffer): BilledCall | undefined {
  const path = pathAndQuery.replace(/\?.*$/, '');
  const billed = bedrock ? /^\/model\/[^/]+\/(?:invoke|invoke-with-response-stream)$/.test(path) : path === '/v1/messages';
  if (!billed) return undefined;
  let parsed: BilledBody = {};
  try {
    parsed = (JSON.parse(body.toString('utf8')) ?? {}) as typeof parsed;
  } catch {
    // priced as the fallback model, with no output: the upstream refuses a body it cannot read
  }
  // Bedrock names the model in the path; a Messages body names it in `model`.
  const model = bedrock ? decodeURIComponent(path.split('/')[2]!) : typeof parsed.model === 'string' ? parsed.model : 'unknown';
  const maxTokens = typeof parsed.max_tokens === 'number' && Number.isSafeInteger(parsed.max_tokens) && parsed.max_tokens > 0 ? parsed.max_tokens : 0;
  const worstCase = { inputTokens: Math.ceil(body.length / 4), outputTokens: maxTokens, cacheReadInputTokens: 0, cacheCreationInputTokens: 0 };
  return { bedrock, path, model, worstCase, surcharges: askedSurcharges(parsed), unmetered: unmeteredFeature(parsed) };
}

/** The speed and place the call asks for, and its web searches' max_uses: what its worst case is priced with. */
function askedSurcharges(body: BilledBody): Partial<Surcharges> {
  const tools = Array.isArray(body.tools) ? (body.tools as { type?: unknown; max_uses?: unknown }[]) : [];
  const searches = tools
    .filter((t) => typeof t?.type === 'string' && t.type.startsWith('web_search_'))
    .reduce((sum, t) => sum + (Number.isSafeInteger(t.max_uses) && (t.max_uses as number) > 0 ? (t.max_uses as number) : 0), 0);
  return {
    ...(typeof body.speed === 'string' && { speed: body.speed }),
    ...(typeof body.inference_geo === 'string' && { inferenceGeo: body.inference_geo }),
    webSearchRequests: searches,
  };
}

/** What a call asks for that is billed beyond what the meter can price, named by its field; none for the CLI's own calls. */
function unmeteredFeature(body: BilledBody): string | undefined {
  const tools = Array.isArray(body.tools) ? (body.tools as unknown[]) : [];
  for (const [i, tool] of tools.entries()) {
    const type = (tool as { type?: unknown } | null)?.type;
    if (type === undefined || (typeof type === 'string' && METERED_TOOL_TYPES.test(type))) continue;
    return `the model gateway does not serve tools[${i}].type ${JSON.stringify(type)}: a server tool whose cost it cannot meter (of the server tools it serves web search and web fetch)`;
  }
  const edits = Array.isArray(body.context_management?.edits) ? (body.context_management.edits as unknown[]) : [];
  for (const [i, edit] of edits.entries()) {
    const type = (edit as { type?: unknown } | null)?.type;
    if (typeof type === 'string' && METERED_CONTEXT_EDITS.test(type)) continue;
    return `the model gateway does not serve context_management.edits[${i}].type ${JSON.stringify(type)}: its cost is billed apart from the usage it meters (it serves clear_thinking and clear_tool_uses)`;
  }
  return undefined;
}

function bodyOf(call: BilledCall, headers: IncomingHttpHeaders): MeteredBody {
  if (call.bedrock) return call.path.endsWith('/invoke-with-response-stream') ? 'bedrock-event-stream' : 'json';
  return String(headers['content-type'] ?? '').startsWith('text/event-stream') ? 'sse' : 'json';
}

/** The provider's own host: Bedrock's runtime for invocations, its control plane for inference-profile reads. */
function defaultBaseUrl(endpoint: ClaudeEndpoint, pathAndQuery: string): string {
  if (endpoint.provider !== 'bedrock') return 'https://api.anthropic.com';
  const plane = pathAndQuery.startsWith('/inference-profiles') ? 'bedrock' : 'bedrock-runtime';
  return `https://${plane}.${endpoint.region}.amazonaws.com`;
}

/** Headers passed on: none that is the connection's own, and (on a request) none that carries a credential. */
function forwardable(headers: IncomingHttpHeaders, isRequest = true): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || (isRequest && (CREDENTIAL_HEADERS.test(name) || UNPRICED_HEADERS.test(name) || name === 'accept-encoding'))) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

async function readAll(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
