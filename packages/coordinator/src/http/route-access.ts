import { ErrorCode, FleetError } from '@fleetpatch/shared';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type ApiAuth, type Caller, mayDo, type Permission } from './api-auth.js';
import type { AuthFailureLimiter } from './auth-failure-limiter.js';

/**
 * Who may call a route, declared by every route as `config: { access }`:
 * - a permission: an API token whose role has it (401 without a known token, 403 without the right);
 * - `public`: anyone, no credential (health, the API's own description);
 * - `self-authenticating`: no API token, because the handler checks a credential of its own (an
 *   agent's join token); such a handler should count its failures with `authFailures`.
 * A route that declares nothing cannot be registered: access is never granted by omission.
 */
export type RouteAccess = Permission | 'public' | 'self-authenticating';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: RouteAccess;
  }
  interface FastifyRequest {
    /** Who called, once the access hook has authenticated them (authorized or not); null on public routes. */
    caller: Caller | null;
  }
}

export interface RouteAccessOptions {
  auth: ApiAuth;
  authFailures: AuthFailureLimiter;
  /**
   * URL prefixes whose routes a third-party plugin registers without a declaration (Swagger UI's
   * pages and assets): they are public. Named here one by one; anything else still must declare.
   */
  publicPrefixes?: readonly string[];
}

/**
 * Authenticates and authorizes in `onRequest`, before the body is read or validated: a caller
 * without the right learns nothing about what a valid body looks like, and costs no parsing.
 * Register before the routes, so every route passes the declaration check.
 */
export const routeAccess = fp<RouteAccessOptions>(
  async (app, { auth, authFailures, publicPrefixes = [] }) => {
    app.decorateRequest('caller', null);

    app.addHook('onRoute', (route) => {
      if (route.config?.access === undefined && publicPrefixes.some((prefix) => route.url.startsWith(prefix))) {
        route.config = { ...route.config, access: 'public' };
      }
      if (route.config?.access === undefined) {
        throw new Error(`route ${String(route.method)} ${route.url} declares no access (config.access)`);
      }
    });

    app.addHook('onRequest', async (request, reply) => {
      if (request.is404) return; // no route: the not-found handler answers, and reveals nothing
      const access = request.routeOptions.config.access;
      if (access === 'public') return;
      const retryAfter = authFailures.retryAfterSeconds(request.ip);
      if (retryAfter > 0) {
        reply.header('retry-after', String(retryAfter));
        throw new FleetError(ErrorCode.tooManyRequests, `too many failed authentications; retry in ${retryAfter} s`);
      }
      if (access === 'self-authenticating') return;
      if (access === undefined) throw refusal(request, 'forbidden', 'route declares no access');

      const caller = auth.authenticate(request.headers.authorization);
      if (typeof caller === 'string') {
        const reachedLimit = authFailures.recordFailure(request.ip);
        throw refusal(request, 'unauthorized', caller, undefined, reachedLimit);
      }
      // Known before it is authorized: a 403 is logged and audited under the token's name.
      request.caller = caller;
      if (!mayDo(caller, access)) {
        // `admin` is a role, not a verb: "may not admin" said nothing.
        const what = access === 'admin' ? 'do this: it is for admins' : access;
        throw refusal(request, 'forbidden', `${caller.name} (${caller.role}) may not ${what}`, caller);
      }
    });
  },
  { name: 'route-access' },
);

/** Logs the refusal once — route pattern and token name, never the token — and returns the error. */
function refusal(
  request: FastifyRequest,
  code: 'unauthorized' | 'forbidden',
  message: string,
  caller?: Caller,
  reachedLimit = false,
): FleetError {
  request.log.warn(
    {
      method: request.method,
      route: request.routeOptions.url,
      remoteAddress: request.ip,
      ...(caller ? { tokenName: caller.name, role: caller.role } : {}),
      ...(reachedLimit ? { blocked: true } : {}),
    },
    code === 'unauthorized' ? `API request refused: ${message}` : 'API request refused: forbidden',
  );
  return new FleetError(code, message);
}

/** The authenticated caller of a route that declared a permission. */
export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new FleetError(ErrorCode.internal, 'route read a caller it did not require');
  return request.caller;
}
