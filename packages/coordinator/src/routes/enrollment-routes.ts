import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  EnrollRequestSchema,
  EnrollResultSchema,
  ErrorCode,
  FleetError,
  isFleetError,
  JoinTokenCreatedSchema,
  JoinTokenListSchema,
  JoinTokenRequestSchema,
  JoinTokenViewSchema,
} from '@fleetpatch/shared';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
import { callerOf } from '../http/route-access.js';

function bearer(request: FastifyRequest): string {
  const header = request.headers.authorization ?? '';
  if (!header.startsWith('Bearer ')) throw new FleetError(ErrorCode.unauthorized, 'missing bearer join token');
  return header.slice('Bearer '.length).trim();
}

/** Join tokens (admin) and enrollment (an agent with a join token). */
export const enrollmentRoutes: FastifyPluginAsyncZod = async (app) => {
  const { enrollment, authFailures } = app.fleet;

  app.post(
    '/join-tokens',
    {
      config: { access: 'admin' },
      schema: {
        ...operation('enrollment', 'createJoinToken', 'Create a join token for enrolling agents'),
        body: JoinTokenRequestSchema,
        response: { 201: JoinTokenCreatedSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      return reply.status(201).send(await enrollment.createJoinToken(request.body, callerOf(request).name));
    },
  );

  app.get(
    '/join-tokens',
    {
      config: { access: 'admin' },
      schema: {
        ...operation('enrollment', 'listJoinTokens', 'List join tokens (never their secrets)'),

        querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }).strict(),
        response: { 200: JoinTokenListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      return { joinTokens: await enrollment.listJoinTokens(request.query.limit) };
    },
  );

  app.post(
    '/join-tokens/:id/revoke',
    {
      config: { access: 'admin' },
      schema: {
        ...operation('enrollment', 'revokeJoinToken', 'Revoke a join token'),

        params: z.object({ id: z.string().max(100) }),
        response: { 200: JoinTokenViewSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      return await enrollment.revokeJoinToken(request.params.id, callerOf(request).name);
    },
  );

  // Authenticated by the join token, not an API token; the token is checked before the body is read,
  // and a wrong one counts against the caller's address like a wrong API token.
  app.post(
    '/enroll',
    {
      config: { access: 'self-authenticating' },
      onRequest: async (request) => {
        try {
          await enrollment.knownJoinToken(bearer(request));
        } catch (err) {
          authFailures.recordFailure(request.ip);
          request.log.warn(
            { route: request.routeOptions.url, remote: request.ip },
            `enrollment refused: ${(err as Error).message}`,
          );
          throw err;
        }
      },
      schema: {
        ...operation('enrollment', 'enrollAgent', "Enroll an agent's public key with a join token"),
        body: EnrollRequestSchema,
        response: { 201: EnrollResultSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      let result: Awaited<ReturnType<typeof enrollment.enroll>>;
      try {
        result = await enrollment.enroll(bearer(request), request.body);
      } catch (err) {
        // A join token holder retrying a refused enrollment (a host already enrolled, another host,
        // a bad proof) is throttled like a wrong token: each refusal is an audit row, so it must not
        // be free to repeat. The coordinator's own failure (its store) is no refusal: enrollments share
        // a commit, and one that fails must not count against every address in it.
        if (isFleetError(err)) authFailures.recordFailure(request.ip);
        throw err;
      }
      request.log.info(
        { hostId: result.hostId, replaced: result.replaced },
        result.repeated ? 'agent enrollment repeated (its first answer was lost): answered again' : 'agent enrolled',
      );
      const { repeated: _, ...answer } = result;
      return reply.status(201).send(answer);
    },
  );
};
