import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  EnrollRequestSchema,
  EnrollResultSchema,
  ErrorCode,
  FleetError,
  JoinTokenCreatedSchema,
  JoinTokenListSchema,
  JoinTokenRequestSchema,
  JoinTokenViewSchema,
} from '@fleetpatch/shared';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ERROR_RESPONSES } from '../http/error-handler.js';

function bearer(request: FastifyRequest): string {
  const header = request.headers.authorization ?? '';
  if (!header.startsWith('Bearer ')) throw new FleetError(ErrorCode.unauthorized, 'missing bearer join token');
  return header.slice('Bearer '.length).trim();
}

/** Join tokens (admin) and enrollment (an agent with a join token). */
export const enrollmentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { auth, enrollment } = app.fleet;

  app.post(
    '/join-tokens',
    { schema: { body: JoinTokenRequestSchema, response: { 201: JoinTokenCreatedSchema, ...ERROR_RESPONSES } } },
    async (request, reply) => {
      const caller = auth.require(request, 'admin');
      return reply.status(201).send(enrollment.createJoinToken(request.body, caller.name));
    },
  );

  app.get(
    '/join-tokens',
    {
      schema: {
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict(),
        response: { 200: JoinTokenListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      auth.require(request, 'admin');
      return { joinTokens: enrollment.listJoinTokens(request.query.limit) };
    },
  );

  app.post(
    '/join-tokens/:id/revoke',
    {
      schema: {
        params: z.object({ id: z.string().max(100) }),
        response: { 200: JoinTokenViewSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const caller = auth.require(request, 'admin');
      return enrollment.revokeJoinToken(request.params.id, caller.name);
    },
  );

  // Authenticated by the join token, not an API token; the token is checked before the body is read.
  app.post(
    '/enroll',
    {
      onRequest: async (request) => {
        enrollment.usableJoinToken(bearer(request));
      },
      schema: { body: EnrollRequestSchema, response: { 201: EnrollResultSchema, ...ERROR_RESPONSES } },
    },
    async (request, reply) => {
      const result = enrollment.enroll(bearer(request), request.body);
      request.log.info({ hostId: result.hostId, replaced: result.replaced }, 'agent enrolled');
      return reply.status(201).send(result);
    },
  );
};
