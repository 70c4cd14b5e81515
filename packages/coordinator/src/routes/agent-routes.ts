import { randomBytes } from 'node:crypto';
import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  AgentDetailSchema,
  AgentListSchema,
  AgentRegistrationRequestSchema,
  AgentRegistrationSchema,
  CloseCode,
  ErrorCode,
  FleetError,
  HostIdSchema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { sha256Hex } from '../http/api-auth.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { callerOf } from '../http/route-access.js';

const Params = z.object({ id: HostIdSchema });

function newAgentToken(): string {
  return `fpa_${randomBytes(24).toString('base64url')}`;
}

/** Agent registry: register an agent (its token is shown once), list the fleet, one host's history, rotate a token. */
export const agentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, hub } = app.fleet;

  app.get(
    '/agents',
    { config: { access: 'read' }, schema: { response: { 200: AgentListSchema, ...ERROR_RESPONSES } } },
    async () => ({
      agents: store.agents.list().map((agent) => ({ ...agent, online: hub.isOnline(agent.id) })),
    }),
  );

  app.post(
    '/agents',
    {
      config: { access: 'admin' },
      schema: {
        body: AgentRegistrationRequestSchema,
        response: { 201: AgentRegistrationSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      if (store.agents.get(request.body.id)) {
        throw new FleetError(ErrorCode.conflict, `agent ${request.body.id} is already registered`);
      }
      const token = newAgentToken();
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

  app.get(
    '/agents/:id',
    {
      config: { access: 'read' },
      schema: {
        params: Params,
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        response: { 200: AgentDetailSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const agent = store.agents.get(request.params.id);
      if (!agent) throw new FleetError(ErrorCode.notFound, `agent ${request.params.id} is not registered`);
      const hostRuns = store.hostRuns.recentForHost(agent.id, request.query.limit).map((run) => ({
        rolloutId: run.rolloutId,
        wave: run.wave,
        state: run.state,
        changed: run.changed,
        orderId: run.orderId,
        errorCode: run.errorCode,
        reason: run.reason,
      }));
      return { agent: { ...agent, online: hub.isOnline(agent.id) }, hostRuns };
    },
  );

  // A leaked agent token is replaced in one call: the old one stops working and its connection closes.
  app.post(
    '/agents/:id/token',
    {
      config: { access: 'admin' },
      schema: { params: Params, response: { 200: AgentRegistrationSchema, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const caller = callerOf(request);
      const id = request.params.id;
      if (!store.agents.get(id)) throw new FleetError(ErrorCode.notFound, `agent ${id} is not registered`);
      const token = newAgentToken();
      const at = new Date().toISOString();
      store.transaction(() => {
        store.agents.replaceToken(id, sha256Hex(token));
        store.appendEvent({ hostId: id, actor: caller.name, type: 'agent.token_replaced' }, at);
      });
      hub.disconnect(id, CloseCode.unauthorized, 'agent token replaced');
      return { id, token };
    },
  );
};
