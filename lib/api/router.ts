import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import httpRouterHandler from '@middy/http-router';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { HttpError, MAX_BODY_BYTES_GUARD, httpErrors, json } from './http-errors.js';
import { SessionApi, type SessionApiDeps } from './session-api.js';

type Route = {
  method: 'GET' | 'POST';
  path: string;
  handler: (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>;
  /** An action without a body (POST …/close): no Content-Type asked for. */
  noBody?: boolean;
};

/**
 * The HTTP API as one Lambda behind API Gateway's {proxy+}: the same function serves
 * AWS and `claude-sessions serve`, so routing, 404 and 405 behave the same in both.
 */
export function createApiHandler(deps: SessionApiDeps, logger = new Logger({ serviceName: 'claude-sessions-api' })) {
  const api = new SessionApi(deps);
  const routes: Route[] = [
    {
      method: 'POST',
      path: '/sessions',
      handler: async (event) => json(202, await api.startSession(event.body)),
    },
    { method: 'GET', path: '/sessions/{id}', handler: async (e) => json(200, await api.getSession(e.pathParameters?.id)) },
    { method: 'GET', path: '/projects', handler: async () => json(200, await api.listProjects()) },
    {
      method: 'GET',
      path: '/projects/{projectId}/sessions',
      handler: async (e) => json(200, await api.listProjectSessions(e.pathParameters?.projectId, e.queryStringParameters)),
    },
    { method: 'POST', path: '/milestones', handler: async (e) => json(201, await api.openMilestone(e.body)) },
    { method: 'GET', path: '/milestones/{id}', handler: async (e) => json(200, await api.getMilestone(e.pathParameters?.id)) },
    { method: 'POST', path: '/milestones/{id}/close', noBody: true, handler: async (e) => json(200, await api.closeMilestone(e.pathParameters?.id)) },
    {
      method: 'GET',
      path: '/projects/{projectId}/usage',
      handler: async (e) => json(200, await api.projectUsage(e.pathParameters?.projectId)),
    },
  ];
  const patterns = routes.map((r) => ({ method: r.method, regex: new RegExp(`^${r.path.replace(/\{[^/]+\}/g, '[^/]+')}/?$`) }));

  const router = httpRouterHandler({
    routes: routes.map((r) => ({
      method: r.method,
      path: r.path,
      // Body parsing only where there is a body; GETs with a stray content-type still work.
      handler: (r.method === 'POST' && !r.noBody ? middy(r.handler as never).use(httpJsonBodyParser({ disableContentTypeError: false })) : r.handler) as never,
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
