import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { CoordinatorMetrics } from '../metrics/coordinator-metrics.js';
import type { RefusalAudit } from './refusal-audit.js';

export interface AccessLogOptions {
  metrics: CoordinatorMetrics;
  refusals: RefusalAudit;
}

/** Polled by machines every few seconds: logged at debug while they succeed, so the log stays readable. */
const POLLED_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/metrics']);

/**
 * One place sees every answered request: it writes the access log line (method, route pattern,
 * status, duration, the token's name — never the token, never the raw URL with its ids and query),
 * counts the request in the metrics, and hands 401 and 403 to the audit trail as security events.
 */
export const accessLog = fp<AccessLogOptions>(
  async (app, { metrics, refusals }) => {
    app.addHook('onResponse', async (request, reply) => {
      const route = request.is404 ? undefined : request.routeOptions.url;
      const status = reply.statusCode;
      const seconds = reply.elapsedTime / 1000;
      const fields = {
        method: request.method,
        route: route ?? null,
        status,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
        tokenName: request.caller?.name ?? null,
        remoteAddress: request.ip,
      };
      if (status < 400 && route !== undefined && POLLED_ROUTES.has(route)) request.log.debug(fields, 'request');
      else request.log.info(fields, 'request');
      metrics.requestAnswered(request.method, route, status, seconds);
      if (status === 401 || status === 403) await recordRefusal(refusals, request, status, route);
    });
  },
  { name: 'access-log', dependencies: ['route-access'] },
);

async function recordRefusal(
  refusals: RefusalAudit,
  request: FastifyRequest,
  status: 401 | 403,
  route: string | undefined,
) {
  try {
    await refusals.record({
      status,
      method: request.method,
      route: route ?? 'unmatched',
      remoteAddress: request.ip,
      tokenName: request.caller?.name ?? null,
    });
  } catch (err) {
    // The refusal was answered; an audit row that cannot be written is logged, never a second error.
    request.log.error({ err }, 'could not write the security event of a refused request');
  }
}
