import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { ErrorCode, FleetError, PatchListSchema, PatchSchema, PatchSpecSchema } from '@fleetpatch/shared';
import { z } from 'zod';
import { newId } from '../engine/ids.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { callerOf } from '../http/route-access.js';

/** Patches: one described change. Created once, never edited — a new fix is a new patch. */
export const patchRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store } = app.fleet;

  app.post(
    '/patches',
    {
      config: { access: 'write' },
      schema: { body: PatchSpecSchema, response: { 201: PatchSchema, ...ERROR_RESPONSES } },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const patch = { ...request.body, id: newId('pat'), createdBy: caller.name, createdAt: new Date().toISOString() };
      store.transaction(() => {
        store.patches.insert(patch);
        store.appendEvent(
          { actor: caller.name, type: 'patch.created', data: { patchId: patch.id, title: patch.title } },
          patch.createdAt,
        );
      });
      return reply.status(201).send(patch);
    },
  );

  app.get(
    '/patches',
    {
      config: { access: 'read' },
      schema: {
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        response: { 200: PatchListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ patches: store.patches.list(request.query.limit) }),
  );

  app.get(
    '/patches/:id',
    {
      config: { access: 'read' },
      schema: { params: z.object({ id: z.string().max(100) }), response: { 200: PatchSchema, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const patch = store.patches.get(request.params.id);
      if (!patch) throw new FleetError(ErrorCode.notFound, `patch ${request.params.id} does not exist`);
      return patch;
    },
  );
};
