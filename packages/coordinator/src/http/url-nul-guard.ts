import { ErrorCode, FleetError } from '@fleetpatch/shared';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * A URL whose path or query holds a NUL (`%00`, decoded into a path parameter or a query value) is
 * refused with a 400 before anything reads it: PostgreSQL's text cannot hold the character, so a
 * lookup by such an id failed there with a 500, where SQLite answered 404. Bodies are refused the
 * same way (see json-body.ts).
 */
export const urlNulGuard = fp(async (app: FastifyInstance) => {
  app.addHook('onRequest', async (request) => {
    if (!request.url.includes('%00')) return;
    const message = 'holds a NUL character (%00), which the store cannot keep';
    throw new FleetError(ErrorCode.validationFailed, `invalid request: url: ${message}`, {
      issues: [{ path: 'url', message }],
    });
  });
});
