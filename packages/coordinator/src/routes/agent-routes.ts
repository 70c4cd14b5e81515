import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  AgentDetailSchema,
  AgentListSchema,
  AgentViewSchema,
  ErrorCode,
  FleetError,
  HostIdSchema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { reportedChange } from '../engine/host-run-states.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
import { callerOf } from '../http/route-access.js';

const Params = z.object({ id: HostIdSchema });

/** The fleet: list it, one host's history, revoke a host's credential. Agents join by enrollment. */
export const agentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, channel, enrollment } = app.fleet;

  app.get(
    '/agents',
    {
      config: { access: 'read' },
      schema: {
        ...operation('agents', 'listAgents', 'List the enrolled agents, online or not, with their facts and labels'),
        querystring: z
          .object({
            removed: z
              .enum(['true', 'false'])
              .default('false')
              .describe('true: list the agents removed from the fleet too'),
          })
          .strict(),
        response: { 200: AgentListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({
      agents: (await store.agents.list())
        .filter((agent) => request.query.removed === 'true' || agent.removedAt === null)
        .map((agent) => ({ ...agent, online: channel.isOnline(agent.id) })),
    }),
  );

  app.get(
    '/agents/:id',
    {
      config: { access: 'read' },
      schema: {
        ...operation('agents', 'getAgent', 'Get one agent'),

        params: Params,
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        response: { 200: AgentDetailSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const agent = await store.agents.get(request.params.id);
      if (!agent) throw new FleetError(ErrorCode.notFound, `agent ${request.params.id} is not registered`);
      const hostRuns = (await store.hostRuns.recentForHost(agent.id, request.query.limit)).map((run) => ({
        rolloutId: run.rolloutId,
        wave: run.wave,
        state: run.state,
        changed: reportedChange(run),
        orderId: run.orderId,
        errorCode: run.errorCode,
        reason: run.reason,
        ...(run.packages ? { packages: run.packages } : {}),
      }));
      return { agent: { ...agent, online: channel.isOnline(agent.id) }, hostRuns };
    },
  );

  // A host leaving the fleet for good: its credential is revoked, its connection cut, its history kept.
  app.delete(
    '/agents/:id',
    {
      config: { access: 'admin' },
      schema: {
        ...operation(
          'agents',
          'removeAgent',
          'Remove an agent from the fleet: credential revoked, connection cut, history kept',
        ),
        params: Params,
        querystring: z
          .object({
            force: z
              .enum(['true', 'false'])
              .default('false')
              .describe('true: remove it even while it has work in a running, paused or reverting rollout'),
          })
          .strict(),
        response: { 200: AgentViewSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      await enrollment.removeAgent(request.params.id, callerOf(request).name, request.query.force === 'true');
      const agent = await store.agents.get(request.params.id);
      if (!agent) throw new FleetError(ErrorCode.notFound, `agent ${request.params.id} is not known`);
      return { ...agent, online: channel.isOnline(agent.id) };
    },
  );

  // A lost or leaked host key is revoked in one call: the key stops working and the connection closes.
  app.post(
    '/agents/:id/revoke',
    {
      config: { access: 'admin' },
      schema: {
        ...operation('agents', 'revokeAgent', "Revoke an agent's credential and close its connection"),
        params: Params,
        response: { 200: AgentViewSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      await enrollment.revokeAgent(request.params.id, callerOf(request).name);
      const agent = await store.agents.get(request.params.id);
      if (!agent) throw new FleetError(ErrorCode.notFound, `agent ${request.params.id} is not known`);
      return { ...agent, online: channel.isOnline(agent.id) };
    },
  );
};
