import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { EventPageSchema } from '@fleetpatch/shared';
import { z } from 'zod';
import { ERROR_RESPONSES } from '../http/error-handler.js';

/** The whole audit trail — rollouts, patches, agents, tokens — paged oldest first. */
export const auditRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, auth } = app.fleet;

  app.get(
    '/events',
    {
      schema: {
        querystring: z
          .object({
            after: z.coerce.number().int().min(0).default(0),
            limit: z.coerce.number().int().min(1).max(1000).default(100),
          })
          .strict(),
        response: { 200: EventPageSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      auth.require(request, 'read');
      const events = store.allEvents(request.query.after, request.query.limit);
      const last = events.at(-1);
      return { events, next: events.length === request.query.limit && last ? last.seq : null };
    },
  );
};
