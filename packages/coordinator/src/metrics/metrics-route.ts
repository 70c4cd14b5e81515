import { timingSafeEqual } from 'node:crypto';
import { ErrorCode, FleetError } from '@fleetpatch/shared';
import fp from 'fastify-plugin';
import { sha256Hex } from '../http/api-auth.js';
import type { AuthFailureLimiter } from '../http/auth-failure-limiter.js';
import type { CoordinatorMetrics } from './coordinator-metrics.js';

export const METRICS_PATH = '/metrics';

export interface MetricsRouteOptions {
  metrics: CoordinatorMetrics;
  /** sha256 (hex) of the bearer token a scraper must present; undefined: the endpoint is public. */
  tokenSha256: string | undefined;
  authFailures: AuthFailureLimiter;
}

/**
 * `GET /metrics` in Prometheus' text format. With a token configured it is self-authenticating: the
 * scraper's token is not an API token (it grants nothing else), compared by hash in constant time,
 * and failures count against the address like any other (429 after too many).
 */
export const metricsRoute = fp<MetricsRouteOptions>(
  async (app, { metrics, tokenSha256, authFailures }) => {
    const expected = tokenSha256 === undefined ? undefined : Buffer.from(tokenSha256, 'hex');
    app.get(
      METRICS_PATH,
      { config: { access: expected ? 'self-authenticating' : 'public' }, schema: { hide: true } },
      async (request, reply) => {
        if (expected) {
          const header = request.headers.authorization ?? '';
          const given = header.startsWith('Bearer ') ? header.slice('Bearer '.length).trim() : '';
          if (!timingSafeEqual(Buffer.from(sha256Hex(given), 'hex'), expected)) {
            authFailures.recordFailure(request.ip);
            throw new FleetError(ErrorCode.unauthorized, 'the metrics endpoint needs its bearer token');
          }
        }
        reply.header('content-type', metrics.registry.contentType);
        return metrics.registry.metrics();
      },
    );
  },
  { name: 'metrics-route' },
);
