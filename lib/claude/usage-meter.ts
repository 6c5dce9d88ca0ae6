import { StringDecoder } from 'node:string_decoder';
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { EventStreamCodec } from '@smithy/core/event-streams';
import { messageCostUsd, type Surcharges } from './model-prices.js';
import { addUsageByModel, addUsages, roundUsd, type Usage, type UsageByModel } from '../sessions/usage.js';

// What a run spent, counted where the session cannot write: the model's own answers, as they
// pass the run's gateway (model-gateway.ts). The CLI's result line can be forged by anything
// the CLI starts (a Bash command writing to /proc/<cli>/fd/1), and a process holding the
// gateway's token can call the model without the CLI; neither changes what the gateway saw.
// Each answered message counts once: message_start carries its input (and cache) tokens,
// message_delta the cumulative output; a JSON answer carries its usage whole. What the CLI
// prices beyond the tokens (1-hour cache writes, web searches, US-only inference, fast mode) is
// read from the same usage and priced as the CLI prices it (model-prices.ts).

/** A response body the meter reads: the Messages API's SSE, Bedrock's event stream, or one JSON message. */
export type MeteredBody = 'sse' | 'bedrock-event-stream' | 'json';

/** The usage of the messages a run's gateway passed, priced as the pinned CLI prices them. */
export interface MeteredUsage {
  usage: Usage;
  /** By the model that answered (the name in its message), each with its cost. */
  modelUsage: UsageByModel;
  totalCostUsd: number;
  /** Messages answered (count_tokens and refused calls are not). */
  messages: number;
  /** Model calls the gateway refused because the run had reached its budget (ModelGateway). */
  refusedOverBudget?: number;
  /** The statuses the model answered billed calls with (ModelGateway): a failure the CLI reports is the model's only if one is here. */
  upstreamStatuses?: number[];
  /** Answers with status 200 in which no message could be read (an encoding the meter cannot undo, a body that is not one): suspect, and charged their worst case. */
  unreadAnswers: number;
}

/** What a billed call asked for: the model, and the most it can cost (its max_tokens, its body as input). */
export interface BilledRequest {
  model: string;
  worstCase: Usage;
  /**
   * The surcharges the request asks for: its `speed` and `inference_geo` price an answer whose
   * usage does not say (the CLI's prices need the answer to say), and with its web searches'
   * `max_uses` they price its worst case.
   */
  surcharges: Partial<Surcharges>;
}

interface MeteredMessage {
  model: string;
  usage: Usage;
  surcharges: Surcharges;
}

/** JSON answers are small (a message of 128k output tokens is well under this); past it nothing more is kept. */
const MAX_JSON_BYTES = 16 * 1024 * 1024;

/** Where an answer's readers put the messages they read. */
interface MessageSink {
  push(message: MeteredMessage): unknown;
}

export class UsageMeter {
  private readonly counted: MeteredMessage[] = [];
  private unread = 0;

  /**
   * A reader for one answer: give it the body's chunks as they pass, then `end()`. The request's
   * model names an answer that names none; a compressed body (the gateway asks for none) is
   * inflated first. An answer in which no message can be read is charged the request's worst
   * case: a billed 200 the meter cannot read must not be free.
   */
  async answer(body: MeteredBody, request: BilledRequest, contentEncoding = ''): Promise<AnswerReader> {
    // Counted per answer: calls run in parallel (subagents, side calls), so another answer's message
    // must not make this one look read.
    let own = 0;
    const sink: MessageSink = { push: (m) => (own += 1, this.counted.push(m)) };
    const onEnd = () => {
      if (own > 0) return;
      this.unread += 1;
      this.counted.push({ model: request.model, usage: { ...request.worstCase }, surcharges: { ...NO_SURCHARGES, ...request.surcharges } });
    };
    let reader: AnswerReader;
    if (body === 'json') reader = new JsonAnswer(sink, request);
    else {
      const events = new MessageEvents(sink, request);
      reader = body === 'sse' ? new SseAnswer(events) : new BedrockStreamAnswer(events, await eventStreamCodec());
    }
    const encoding = contentEncoding.trim().toLowerCase();
    if (!encoding || encoding === 'identity') return endingWith(reader, onEnd);
    const inflate = INFLATE[encoding]?.();
    if (!inflate) return { write: () => {}, end: onEnd };
    return inflated(inflate, endingWith(reader, onEnd));
  }

  /** What the run's messages spent so far. */
  metered(): MeteredUsage {
    const modelUsage = this.counted.reduce<UsageByModel>(
      (sum, m) => addUsageByModel(sum, { [m.model]: { ...m.usage, costUsd: messageCostUsd(m.model, m.usage, m.surcharges) } }),
      {},
    );
    const byModel = Object.values(modelUsage);
    return {
      unreadAnswers: this.unread,
      usage: addUsages(this.counted.map((m) => m.usage)),
      modelUsage: Object.fromEntries(Object.entries(modelUsage).map(([model, u]) => [model, { ...u, costUsd: roundUsd(u.costUsd) }])),
      totalCostUsd: roundUsd(byModel.reduce((sum, u) => sum + u.costUsd, 0)),
      messages: this.counted.length,
    };
  }
}

const INFLATE: Record<string, () => Transform> = { gzip: createGunzip, 'x-gzip': createGunzip, deflate: createInflate, br: createBrotliDecompress };

function endingWith(reader: AnswerReader, onEnd: () => void): AnswerReader {
  return {
    write: (chunk) => reader.write(chunk),
    end: async () => {
      await reader.end();
      onEnd();
    },
  };
}

/** The reader behind a decompressor; a body that does not inflate is an unread answer. */
function inflated(inflate: Transform, reader: AnswerReader): AnswerReader {
  inflate.on('data', (chunk: Buffer) => reader.write(chunk));
  inflate.on('error', () => inflate.destroy());
  const ended = new Promise<void>((resolve) => inflate.once('close', resolve));
  return {
    write: (chunk) => void inflate.write(chunk),
    end: async () => {
      inflate.end();
      await ended;
      await reader.end();
    },
  };
}


export interface AnswerReader {
  write(chunk: Buffer): void;
  /** Settles once what the answer said is counted. */
  end(): void | Promise<void>;
}

/** The Messages stream's events, as both providers send them: one message per message_start. */
class MessageEvents {
  private current: MeteredMessage | undefined;

  constructor(private readonly counted: MessageSink, private readonly request: BilledRequest) {}

  observe(event: unknown): void {
    const e = event as { type?: unknown; message?: { model?: unknown; usage?: unknown }; usage?: unknown };
    if (e?.type === 'message_start') {
      this.current = meteredMessage(e.message?.model, e.message?.usage, this.request);
      this.counted.push(this.current);
    } else if (e?.type === 'message_delta' && this.current) {
      // message_delta's counts are the message's so far: they replace, never add (as the CLI merges them).
      const delta = toUsage(e.usage);
      Object.assign(this.current.usage, nonZero(delta));
      Object.assign(this.current.surcharges, saidSurcharges(e.usage));
    }
  }
}

/** Server-sent events: `data:` lines, an event per blank line. */
class SseAnswer implements AnswerReader {
  private pending = '';
  private readonly text = new StringDecoder('utf8');

  constructor(private readonly events: MessageEvents) {}

  write(chunk: Buffer): void {
    this.pending += this.text.write(chunk);
    let end: number;
    while ((end = this.pending.search(/\r?\n\r?\n/)) >= 0) {
      const block = this.pending.slice(0, end);
      this.pending = this.pending.slice(end).replace(/^\r?\n\r?\n/, '');
      const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (data) this.events.observe(parseJson(data));
    }
  }

  end(): void {
    if (this.pending.trim()) this.write(Buffer.from('\n\n'));
  }
}

const toUtf8 = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');
const fromUtf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));
let codec: Promise<EventStreamCodec> | undefined;

/** Loaded on the first Bedrock stream: its import costs ~100 ms a run on Anthropic would pay for nothing. */
function eventStreamCodec(): Promise<EventStreamCodec> {
  return (codec ??= import('@smithy/core/event-streams').then(({ EventStreamCodec }) => new EventStreamCodec(toUtf8, fromUtf8)));
}

/** Bedrock's event stream: length-prefixed messages whose `chunk` events hold a Messages event, base64 in `bytes`. */
class BedrockStreamAnswer implements AnswerReader {
  private pending = Buffer.alloc(0);
  private broken = false;

  constructor(private readonly events: MessageEvents, private readonly codec: EventStreamCodec) {}

  write(chunk: Buffer): void {
    if (this.broken) return;
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 4) {
      const length = this.pending.readUInt32BE(0);
      if (length < 16) {
        this.broken = true; // not an event stream: nothing after this can be framed
        return;
      }
      if (this.pending.length < length) return;
      const frame = this.pending.subarray(0, length);
      this.pending = this.pending.subarray(length);
      this.frame(frame);
    }
  }

  private frame(frame: Buffer): void {
    try {
      const message = this.codec.decode(frame);
      if (message.headers[':event-type']?.value !== 'chunk') return;
      const { bytes } = JSON.parse(toUtf8(message.body)) as { bytes?: unknown };
      if (typeof bytes === 'string') this.events.observe(parseJson(Buffer.from(bytes, 'base64').toString('utf8')));
    } catch {
      // A frame that does not decode carries no usage the CLI could have read either.
    }
  }

  end(): void {}
}

/** One JSON message (a non-streaming call): its usage, whole. */
class JsonAnswer implements AnswerReader {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly counted: MessageSink, private readonly request: BilledRequest) {}

  write(chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size <= MAX_JSON_BYTES) this.chunks.push(chunk);
  }

  end(): void {
    if (this.size > MAX_JSON_BYTES) return;
    const body = parseJson(Buffer.concat(this.chunks).toString('utf8')) as { type?: unknown; model?: unknown; usage?: unknown } | undefined;
    if (body?.type !== 'message' || !body.usage) return;
    this.counted.push(meteredMessage(body.model, body.usage, this.request));
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const count = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);
const NO_SURCHARGES: Surcharges = { cacheWrite1hTokens: 0, webSearchRequests: 0 };

/** A message as its start (or its JSON body) tells it: the request names a model the answer does not, and a surcharge the usage does not say. */
function meteredMessage(model: unknown, usage: unknown, request: BilledRequest): MeteredMessage {
  const { speed, inferenceGeo } = request.surcharges;
  return {
    model: typeof model === 'string' ? model : request.model,
    usage: toUsage(usage),
    surcharges: { ...NO_SURCHARGES, ...(speed !== undefined && { speed }), ...(inferenceGeo !== undefined && { inferenceGeo }), ...saidSurcharges(usage) },
  };
}

function toUsage(raw: unknown): Usage {
  const u = (raw ?? {}) as Record<string, unknown>;
  return {
    inputTokens: count(u.input_tokens),
    outputTokens: count(u.output_tokens),
    cacheReadInputTokens: count(u.cache_read_input_tokens),
    // A usage that gives only the writes by lifetime has written their sum, as the CLI counts it.
    cacheCreationInputTokens: count(u.cache_creation_input_tokens) || writesByLifetime(u.cache_creation),
  };
}

function writesByLifetime(raw: unknown): number {
  const c = (raw ?? {}) as Record<string, unknown>;
  return count(c.ephemeral_1h_input_tokens) + count(c.ephemeral_5m_input_tokens);
}

/** The surcharges a usage says (a field it leaves out or nulls says nothing, as the CLI merges a delta). */
function saidSurcharges(raw: unknown): Partial<Surcharges> {
  const u = (raw ?? {}) as Record<string, unknown>;
  const cache = (u.cache_creation ?? {}) as Record<string, unknown>;
  const tools = (u.server_tool_use ?? {}) as Record<string, unknown>;
  return {
    ...(writesByLifetime(cache) > 0 && { cacheWrite1hTokens: count(cache.ephemeral_1h_input_tokens) }),
    ...(typeof tools.web_search_requests === 'number' && { webSearchRequests: count(tools.web_search_requests) }),
    ...(typeof u.inference_geo === 'string' && { inferenceGeo: u.inference_geo }),
    ...(typeof u.speed === 'string' && { speed: u.speed }),
  };
}

function nonZero(usage: Usage): Partial<Usage> {
  return Object.fromEntries(Object.entries(usage).filter(([, v]) => v > 0));
}
