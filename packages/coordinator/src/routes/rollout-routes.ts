import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  ApproveRequestSchema,
  AttachStatementRequestSchema,
  ErrorCode,
  EventPageSchema,
  FleetError,
  hasControlCharacter,
  PreflightResultSchema,
  RevertSignatureRequestSchema,
  RolloutListSchema,
  RolloutPlanSchema,
  RolloutRequestSchema,
  RolloutStatusSchema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { mayDo } from '../http/api-auth.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { callerOf } from '../http/route-access.js';
import { EventPageQuerySchema, toEventPage } from './event-page.js';

const Params = z.object({ id: z.string().min(1).max(100) });
const HostParams = Params.extend({ hostId: z.string().min(1).max(128) });
// Verbs need no body: `curl -X POST` sends none (or an empty one with a JSON content type, which the
// app's JSON parser reads as none), and a client may send `null`; all three mean "no reason given".
const VerbBody = z
  .object({ reason: z.string().max(2000).optional() })
  .strict()
  .nullish();
const StartBody = z
  .object({
    reason: z.string().max(2000).optional(),
    overridePromotion: z
      .object({
        reason: z
          .string()
          .trim()
          .min(1)
          .max(2000)
          .refine((reason) => !hasControlCharacter(reason), 'must not contain control characters'),
      })
      .strict()
      .optional(),
  })
  .strict()
  .nullish();
const Status = { 200: RolloutStatusSchema, ...ERROR_RESPONSES } as const;

/** Rollouts: create, plan, the lifecycle verbs, status, and the audit trail (paged and live). */
export const rolloutRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, engine, view, dryRun } = app.fleet;

  app.post(
    '/rollouts',
    {
      config: { access: 'write' },
      schema: { body: RolloutRequestSchema, response: { 201: RolloutStatusSchema, ...ERROR_RESPONSES } },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const rollout = engine.create(request.body, caller.name);
      return reply.status(201).send(view.status(rollout.id));
    },
  );

  app.get(
    '/rollouts',
    {
      config: { access: 'read' },
      schema: {
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        response: { 200: RolloutListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ rollouts: view.list(request.query.limit) }),
  );

  app.get(
    '/rollouts/:id',
    { config: { access: 'read' }, schema: { params: Params, response: Status } },
    async (request) => view.status(request.params.id),
  );

  app.get(
    '/rollouts/:id/plan',
    {
      config: { access: 'read' },
      schema: { params: Params, response: { 200: RolloutPlanSchema, ...ERROR_RESPONSES } },
    },
    async (request) => view.plan(request.params.id),
  );

  // Dry run: every target agent checks the preconditions and says what it would do; nothing changes on
  // the hosts. Still `write`: it sends frames to every target agent and writes an audit row.
  app.post(
    '/rollouts/:id/preflight',
    {
      config: { access: 'write' },
      schema: {
        params: Params,
        body: z
          .object({ timeoutSeconds: z.number().min(1).max(600).default(30) })
          .strict()
          .default({ timeoutSeconds: 30 }),
        response: { 200: PreflightResultSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => dryRun.run(request.params.id, request.body.timeoutSeconds * 1000, callerOf(request).name),
  );

  // A signed rollout's approval carries the approver's signature of its statement.
  app.post(
    '/rollouts/:id/approve',
    {
      config: { access: 'approve' },
      schema: { params: Params, body: ApproveRequestSchema.nullish(), response: Status },
    },
    async (request) => {
      const caller = callerOf(request);
      engine.approve(request.params.id, caller.name, request.body ?? undefined);
      return view.status(request.params.id);
    },
  );

  // The author's signed apply statement, for their draft: from then on the rollout is signed.
  app.post(
    '/rollouts/:id/statement',
    {
      config: { access: 'write' },
      schema: { params: Params, body: AttachStatementRequestSchema, response: Status },
    },
    async (request) => {
      engine.attachStatement(request.params.id, request.body, callerOf(request).name);
      return view.status(request.params.id);
    },
  );

  // A signature on a signed rollout's revert statement; the last one needed starts the revert.
  app.post(
    '/rollouts/:id/revert-statement',
    {
      config: { access: 'sign-revert' },
      schema: { params: Params, body: RevertSignatureRequestSchema, response: Status },
    },
    async (request) => {
      engine.signRevert(request.params.id, request.body, callerOf(request).name);
      return view.status(request.params.id);
    },
  );

  // Start; `overridePromotion` starts it although an earlier environment was not passed (admins only,
  // with a reason that goes on the record and in the status).
  app.post(
    '/rollouts/:id/start',
    { config: { access: 'write' }, schema: { params: Params, body: StartBody, response: Status } },
    async (request) => {
      const caller = callerOf(request);
      const override = request.body?.overridePromotion;
      if (override && !mayDo(caller, 'admin')) {
        throw new FleetError(
          ErrorCode.forbidden,
          `${caller.name} (${caller.role}) may not override the promotion order: admins only`,
          { field: 'body.overridePromotion' },
        );
      }
      engine.start(request.params.id, caller.name, override ? { overridePromotion: override } : {});
      return view.status(request.params.id);
    },
  );

  const verbs = {
    submit: (id: string, actor: string) => engine.submit(id, actor),
    pause: (id: string, actor: string) => engine.pause(id, actor),
    resume: (id: string, actor: string) => engine.resume(id, actor),
    retry: (id: string, actor: string) => engine.retry(id, actor),
    promote: (id: string, actor: string) => engine.promote(id, actor),
    revert: (id: string, actor: string) => engine.revert(id, actor),
  } as const;
  for (const [verb, act] of Object.entries(verbs)) {
    app.post(
      `/rollouts/:id/${verb}`,
      { config: { access: 'write' }, schema: { params: Params, body: VerbBody, response: Status } },
      async (request) => {
        const caller = callerOf(request);
        act(request.params.id, caller.name);
        return view.status(request.params.id);
      },
    );
  }

  app.post(
    '/rollouts/:id/abort',
    { config: { access: 'write' }, schema: { params: Params, body: VerbBody, response: Status } },
    async (request) => {
      const caller = callerOf(request);
      engine.abort(request.params.id, caller.name, request.body?.reason ?? null);
      return view.status(request.params.id);
    },
  );

  app.post(
    '/rollouts/:id/hosts/:hostId/revert',
    { config: { access: 'write' }, schema: { params: HostParams, body: VerbBody, response: Status } },
    async (request) => {
      const caller = callerOf(request);
      engine.revertHost(request.params.id, request.params.hostId, caller.name);
      return view.status(request.params.id);
    },
  );

  app.get(
    '/rollouts/:id/events',
    {
      config: { access: 'read' },
      schema: {
        params: Params,
        querystring: EventPageQuerySchema,
        response: { 200: EventPageSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      view.assertExists(request.params.id); // 404 for an unknown rollout
      return toEventPage(
        store.events(request.params.id, request.query.after, request.query.limit),
        request.query.limit,
      );
    },
  );
};
