import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  AgentListSchema,
  AgentRegistrationRequestSchema,
  AgentRegistrationSchema,
  ErrorCode,
  FleetError,
} from '@fleetpatch/shared';
import { sha256Hex } from '../http/api-auth.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';

/** Agent registry: register an agent (returns its token once) and list the fleet. */
export const agentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, hub, auth } = app.fleet;

  app.get('/agents', { schema: { response: { 200: AgentListSchema, ...ERROR_RESPONSES } } }, async (request) => {
    auth.require(request, 'read');
    return {
      agents: store.agents.list().map((agent) => ({ ...agent, online: hub.isOnline(agent.id) })),
    };
  });

  app.post(
    '/agents',
    {
      schema: {
        body: AgentRegistrationRequestSchema,
        response: { 201: AgentRegistrationSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const caller = auth.require(request, 'admin');
      if (store.agents.get(request.body.id)) {
        throw new FleetError(ErrorCode.conflict, `agent ${request.body.id} is already registered`);
      }
      const token = `fpa_${randomBytes(24).toString('base64url')}`;
      const at = new Date().toISOString();
      store.transaction(() => {
        store.agents.insert({
          id: request.body.id,
          tokenSha256: sha256Hex(token),
          labels: request.body.labels,
          createdAt: at,
        });
        store.appendEvent({ hostId: request.body.id, actor: caller.name, type: 'agent.registered' }, at);
      });
      // The token is shown once; only its hash is kept.
      return reply.status(201).send({ id: request.body.id, token });
    },
  );
};
