import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import httpRouterHandler from '@middy/http-router';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { HttpError, MAX_BODY_BYTES_GUARD, httpErrors, json } from './http-errors.js';
import { ApiOperations, type ApiOperationsDeps } from './api-operations.js';
import type { GitHubWebhook } from './github-webhook.js';

/** What a route's handler works with: the operations, the webhook (where this deployment has one), the logger. */
interface RouteContext {
  api: ApiOperations;
  github?: GitHubWebhook;
  logger: Logger;
}

type Route = {
  method: 'GET' | 'POST';
  path: string;
  handler: (event: APIGatewayProxyEvent, context: RouteContext) => Promise<APIGatewayProxyResult>;
  /** The body: JSON (the default), none (POST …/close: no Content-Type asked for), or JSON when one is sent. */
  body?: 'json' | 'none' | 'optional';
};

const project = (e: APIGatewayProxyEvent) => e.pathParameters?.projectId;

/** Every route the API serves; the deployed-functions test calls each one (test/deployed-functions.test.ts). */
export const ROUTES: readonly Route[] = [
  { method: 'GET', path: '/projects', handler: async (_e, { api }) => json(200, await api.listProjects()) },
  { method: 'POST', path: '/projects/{projectId}/sessions', handler: async (e, { api }) => json(202, await api.startSession(project(e), e.body)) },
  {
    method: 'GET',
    path: '/projects/{projectId}/sessions',
    handler: async (e, { api }) => json(200, await api.listProjectSessions(project(e), e.queryStringParameters)),
  },
  { method: 'GET', path: '/projects/{projectId}/sessions/{id}', handler: async (e, { api }) => json(200, await api.getSession(project(e), e.pathParameters?.id)) },
  { method: 'GET', path: '/projects/{projectId}/usage', handler: async (e, { api }) => json(200, await api.projectUsage(project(e))) },
  {
    method: 'POST', path: '/projects/{projectId}/milestones', body: 'optional',
    handler: async (e, { api }) => json(201, await api.openMilestone(project(e), e.body)),
  },
  {
    method: 'GET', path: '/projects/{projectId}/milestones/{id}',
    handler: async (e, { api }) => json(200, await api.getMilestone(project(e), e.pathParameters?.id, e.queryStringParameters)),
  },
  {
    method: 'POST', path: '/projects/{projectId}/milestones/{id}/close', body: 'none',
    handler: async (e, { api }) => json(200, await api.closeMilestone(project(e), e.pathParameters?.id)),
  },
  // On AWS its own resource and function answer it (cdk/github-webhook.ts); here, the engine with a secret set.
  { method: 'POST', path: '/webhooks/github', body: 'none', handler: async (e, { github, logger }) => answerGitHub(github, e, logger) },
];

/**
 * The HTTP API as one Lambda behind API Gateway's {proxy+}: the same function serves
 * AWS and `claude-sessions serve`, so routing, 404 and 405 behave the same in both. Every route
 * that touches a project's data has the project in its path, so an IAM policy on
 * `execute-api:Invoke` for `…/projects/demo/*` decides who may use project demo (docs/SECURITY.md).
 */
export function createApiHandler(
  deps: ApiOperationsDeps & { github?: GitHubWebhook },
  logger = new Logger({ serviceName: 'claude-sessions-api' }),
) {
  const context: RouteContext = { api: new ApiOperations(deps), github: deps.github, logger };
  const patterns = ROUTES.map((r) => ({ method: r.method, regex: new RegExp(`^${r.path.replace(/\{[^/]+\}/g, '[^/]+')}/?$`) }));

  const router = httpRouterHandler({
    routes: ROUTES.map((r) => ({
      method: r.method,
      path: r.path,
      handler: withBody(r, context) as never,
    })),
    notFoundResponse: ({ method, path }: { method: string; path: string }) => {
      const allowed = patterns.filter((p) => p.regex.test(path)).map((p) => p.method);
      if (allowed.length) throw new HttpError(405, `${method} is not allowed on ${path}; use ${allowed.join(', ')}`);
      throw new HttpError(404, `no route ${method} ${path}`);
    },
  });

  return middy<APIGatewayProxyEvent, APIGatewayProxyResult>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(httpHeaderNormalizer())
    .use(MAX_BODY_BYTES_GUARD)
    .use(httpErrors({ logError: (error) => logger.error('request failed', error as Error) }))
    .handler(router as never);
}

/**
 * The webhook's own function on AWS: no IAM in front of it (GitHub cannot sign SigV4), so the
 * HMAC of its body is the whole of its authorisation, checked before anything else is read.
 */
export function createGitHubWebhookHandler(webhook: () => GitHubWebhook, logger = new Logger({ serviceName: 'claude-sessions-github' })) {
  return middy<APIGatewayProxyEvent, APIGatewayProxyResult>()
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(httpHeaderNormalizer())
    .use(MAX_BODY_BYTES_GUARD)
    .use(httpErrors({ logError: (error) => logger.error('delivery failed', error as Error) }))
    .handler(async (event) => answerGitHub(webhook(), event, logger));
}

/** One delivery: what it was and what came of it are logged, never its text. */
async function answerGitHub(webhook: GitHubWebhook | undefined, event: APIGatewayProxyEvent, logger: Logger): Promise<APIGatewayProxyResult> {
  if (!webhook) throw new HttpError(404, 'no GitHub webhook here: this deployment has no webhook secret (docs/GITHUB.md)');
  const body = event.body && event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  const delivery = { delivery: event.headers['x-github-delivery'], event: event.headers['x-github-event'] };
  try {
    const answer = await webhook.receive(event.headers, body);
    logger.info('github delivery', { ...delivery, ...answer.body });
    return json(answer.statusCode, answer.body);
  } catch (err) {
    if (err instanceof HttpError) logger.warn('github delivery refused', { ...delivery, status: err.statusCode, reason: err.message });
    throw err;
  }
}

/** Body parsing only where there is a body; GETs with a stray content-type still work. */
function withBody(route: Route, routeContext: RouteContext): (event: APIGatewayProxyEvent, context: unknown) => Promise<APIGatewayProxyResult> {
  const handler = (event: APIGatewayProxyEvent) => route.handler(event, routeContext);
  if (route.method !== 'POST' || route.body === 'none') return handler;
  const parsed = middy(handler as never).use(httpJsonBodyParser({ disableContentTypeError: false })) as never as (
    event: APIGatewayProxyEvent, context: unknown,
  ) => Promise<APIGatewayProxyResult>;
  if (route.body !== 'optional') return parsed;
  return (event, context) => (event.body ? parsed(event, context) : handler({ ...event, body: null }));
}
