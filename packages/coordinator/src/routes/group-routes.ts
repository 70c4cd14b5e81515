import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { type GroupView, GroupViewSchema } from '@fleetpatch/shared';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';

/** The coordinator group as this coordinator sees it: members, their agents, and who drives what. */
export const groupRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/group',
    {
      config: { access: 'read' },
      schema: {
        ...operation('group', 'getGroup', 'The coordinators sharing this store, and which drives which rollout'),
        response: { 200: GroupViewSchema, ...ERROR_RESPONSES },
      },
    },
    async (): Promise<GroupView> => {
      const { group } = app.fleet;
      if (!group) return { store: 'sqlite', coordinatorId: null, members: [], leases: [] };
      return {
        store: 'postgres',
        coordinatorId: group.leases.coordinatorId,
        members: await group.presence.members(),
        leases: await group.leases.all(),
      };
    },
  );
};
