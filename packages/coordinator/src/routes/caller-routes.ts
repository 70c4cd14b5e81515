import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { WhoAmISchema } from '@fleetpatch/shared';
import { permissionsOf } from '../http/api-auth.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
import { callerOf } from '../http/route-access.js';

/** Who the calling token is: the dashboard's login checks a token with it and learns which buttons to show. */
export const callerRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/whoami',
    {
      config: { access: 'read' },
      schema: {
        ...operation('caller', 'whoAmI', "The calling API token's name, role and permissions"),
        response: { 200: WhoAmISchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      return { name: caller.name, role: caller.role, permissions: permissionsOf(caller.role) };
    },
  );
};
