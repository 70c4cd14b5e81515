import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { PatchListSchema, PatchSchema, PatchSpecSchema } from '@fleetpatch/shared';
import { z } from 'zod';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
import { callerOf } from '../http/route-access.js';

/** Patches: one described change. Created once, never edited — a new fix is a new patch. */
export const patchRoutes: FastifyPluginAsyncZod = async (app) => {
  const { patches } = app.fleet;

  app.post(
    '/patches',
    {
      config: { access: 'write' },
      schema: {
        ...operation('patches', 'createPatch', 'Create a patch (immutable once created)'),
        body: PatchSpecSchema,
        response: { 201: PatchSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      return reply.status(201).send(patches.create(request.body, callerOf(request).name));
    },
  );

  app.get(
    '/patches',
    {
      config: { access: 'read' },
      schema: {
        ...operation('patches', 'listPatches', 'List patches'),

        querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        response: { 200: PatchListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ patches: patches.list(request.query.limit) }),
  );

  app.get(
    '/patches/:id',
    {
      config: { access: 'read' },
      schema: {
        ...operation('patches', 'getPatch', 'Get one patch'),
        params: z.object({ id: z.string().max(100) }),
        response: { 200: PatchSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => patches.get(request.params.id),
  );
};
