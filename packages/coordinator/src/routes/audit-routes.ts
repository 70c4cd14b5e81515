import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { EventPageSchema } from '@fleetpatch/shared';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
import { EventPageQuerySchema, toEventPage } from './event-page.js';

/** The whole audit trail — rollouts, patches, agents, tokens — paged oldest first. */
export const auditRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store } = app.fleet;

  app.get(
    '/events',
    {
      config: { access: 'read' },
      schema: {
        ...operation('events', 'listEvents', 'Page through the whole audit trail'),

        querystring: EventPageQuerySchema,
        response: { 200: EventPageSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) =>
      toEventPage(await store.allEvents(request.query.after, request.query.limit), request.query.limit),
  );
};
