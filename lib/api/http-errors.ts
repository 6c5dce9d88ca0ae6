import type middy from '@middy/core';
import { InvalidInputError, type FieldError } from '../sessions/execution-input.js';
import { InvalidNextTokenError } from '../sessions/session-repository.js';
import { MilestoneUnavailableError } from '../sessions/milestone-repository.js';
import { ProjectAtCapacityError } from '../sessions/project-slots.js';
import { BudgetExceededError } from '../sessions/session-creation.js';

/** Step Functions' input limit is 256 KB; a larger body cannot become an execution. */
export const MAX_BODY_BYTES = 256 * 1024;

/** An error whose status and message may be shown to the caller. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly statusCode: number,
    message: string,
    readonly errors?: FieldError[],
  ) {
    super(message);
  }
}

export interface HttpResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
  return { statusCode, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) };
}

/**
 * Errors as answers: bad input names each field (400), known HTTP errors keep their
 * status, anything else is a 500 with the request id and nothing of the internals.
 */
export function httpErrors(options: { logError?: (error: unknown) => void } = {}): middy.MiddlewareObj {
  return {
    onError: async (request) => {
      const error = request.error as (Error & { statusCode?: number; expose?: boolean }) | null;
      const requestId = (request.context as { awsRequestId?: string }).awsRequestId ?? 'unknown';
      if (error instanceof InvalidInputError) {
        request.response = json(400, { message: 'Invalid request', errors: error.errors });
      } else if (error instanceof HttpError) {
        request.response = json(error.statusCode, { message: error.message, ...(error.errors ? { errors: error.errors } : {}) });
      } else if (error instanceof MilestoneUnavailableError) {
        // Unknown: 404. Closed, broken, busy or another project's: the request conflicts with its state.
        request.response = json(error.reason === 'not-found' ? 404 : 409, { message: error.message, reason: error.reason });
      } else if (error instanceof ProjectAtCapacityError) {
        request.response = json(429, { message: error.message, limit: error.limit, running: error.running }, { 'retry-after': '30' });
      } else if (error instanceof BudgetExceededError) {
        request.response = json(429, { message: error.message, budgetUsd: error.budgetUsd, spentUsd: error.spentUsd });
      } else if (error instanceof InvalidNextTokenError) {
        request.response = json(400, { message: 'Invalid request', errors: [{ field: 'nextToken', message: error.message }] });
      } else if (error?.statusCode && error.statusCode < 500 && error.expose !== false) {
        // middy's body parser answers 415 for both a wrong Content-Type and a body that is not JSON.
        if (/malformed JSON/i.test(error.message)) request.response = json(400, { message: 'Malformed JSON body' });
        else if (error.statusCode === 415) request.response = json(415, { message: 'Content-Type must be application/json' });
        else request.response = json(error.statusCode, { message: error.message });
      } else {
        options.logError?.(error);
        request.response = json(500, { message: 'Internal error', requestId });
      }
    },
  };
}

/** Refuses a body larger than an execution input can be, before parsing it. */
export const MAX_BODY_BYTES_GUARD: middy.MiddlewareObj<{ body?: string | null }> = {
  before: async (request) => {
    const body = request.event.body;
    if (body && Buffer.byteLength(body, 'utf8') > MAX_BODY_BYTES) {
      throw new HttpError(413, `request body is larger than ${MAX_BODY_BYTES} bytes`);
    }
  },
};
