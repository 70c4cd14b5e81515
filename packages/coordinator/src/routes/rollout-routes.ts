import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  ApproveRequestSchema,
  AttachStatementRequestSchema,
  ErrorCode,
  EventPageSchema,
  FleetError,
  HostRunStateSchema,
  hasControlCharacter,
  PreflightResultSchema,
  RevertSignatureRequestSchema,
  RolloutHostPageSchema,
  RolloutListSchema,
  RolloutPlanSchema,
  RolloutRequestSchema,
  RolloutStatusSchema,
  RolloutSummarySchema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { HOST_CURSOR_PATTERN } from '../engine/rollout-view.js';
import { mayDo } from '../http/api-auth.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
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
/**
 * What an action on a rollout answers with: its full status (the default), or with `?view=summary`
 * its summary. The full status of 10,000 hosts is ~2 MB and ~100 ms of the coordinator's time, which
 * a client that only wants to know how the action went (the CLI, the dashboard) need not cost it.
 */
const ViewQuery = z
  .object({
    view: z
      .enum(['full', 'summary'])
      .default('full')
      .describe('what to answer with: the full status, every host (the default), or the summary, ~1 KB at any size'),
  })
  .strict();
const StatusOrSummary = { 200: z.union([RolloutStatusSchema, RolloutSummarySchema]), ...ERROR_RESPONSES } as const;

/** Rollouts: create, plan, the lifecycle verbs, status, and the audit trail (paged and live). */
export const rolloutRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, engine, view, dryRun } = app.fleet;
  /** An action's answer: the rollout as it is now, in the view the client asked for. */
  const answer = async (id: string, asked: 'full' | 'summary') =>
    asked === 'summary' ? await view.summary(id) : await view.status(id);

  app.post(
    '/rollouts',
    {
      config: { access: 'write' },
      schema: {
        ...operation('rollouts', 'createRollout', 'Create a rollout of a patch'),
        body: RolloutRequestSchema,
        response: { 201: RolloutStatusSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const rollout = await engine.create(request.body, caller.name);
      return reply.status(201).send(await view.status(rollout.id));
    },
  );

  app.get(
    '/rollouts',
    {
      config: { access: 'read' },
      schema: {
        ...operation('rollouts', 'listRollouts', 'List rollouts, newest first'),

        querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        response: { 200: RolloutListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ rollouts: await view.list(request.query.limit) }),
  );

  app.get(
    '/rollouts/:id',
    {
      config: { access: 'read' },
      schema: {
        ...operation('rollouts', 'getRollout', "A rollout's status: waves, hosts, failure budget"),
        params: Params,
        response: Status,
      },
    },
    async (request) => await view.status(request.params.id),
  );

  // At fleet scale: counts per wave and state (a few hundred bytes whatever the size), and the hosts paged.
  app.get(
    '/rollouts/:id/summary',
    {
      config: { access: 'read' },
      schema: {
        ...operation('rollouts', 'getRolloutSummary', "A rollout's counts per wave and state, and its first failures"),
        params: Params,
        response: { 200: RolloutSummarySchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await view.summary(request.params.id),
  );

  app.get(
    '/rollouts/:id/hosts',
    {
      config: { access: 'read' },
      schema: {
        ...operation('rollouts', 'listRolloutHosts', "Page through a rollout's hosts, by state or wave"),
        params: Params,
        querystring: z
          .object({
            state: HostRunStateSchema.optional(),
            wave: z.coerce.number().int().min(0).max(10_000).optional(),
            limit: z.coerce.number().int().min(1).max(1000).default(100),
            cursor: z.string().regex(HOST_CURSOR_PATTERN, 'a cursor is the `next` of the previous page').optional(),
          })
          .strict(),
        response: { 200: RolloutHostPageSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await view.hostPage(request.params.id, request.query),
  );

  app.get(
    '/rollouts/:id/plan',
    {
      config: { access: 'read' },
      schema: {
        ...operation('rollouts', 'getRolloutPlan', 'The resolved wave plan, before anything runs'),
        params: Params,
        response: { 200: RolloutPlanSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await view.plan(request.params.id),
  );

  // Dry run: every target agent checks the preconditions and says what it would do; nothing changes on
  // the hosts. Still `write`: it sends frames to every target agent and writes an audit row.
  app.post(
    '/rollouts/:id/preflight',
    {
      config: { access: 'write' },
      schema: {
        ...operation('rollouts', 'preflightRollout', 'Dry run: every target agent checks the preconditions'),

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
      schema: {
        ...operation('rollouts', 'approveRollout', 'Approve a rollout (four eyes)'),
        params: Params,
        querystring: ViewQuery,
        body: ApproveRequestSchema.nullish(),
        response: StatusOrSummary,
      },
    },
    async (request) => {
      const caller = callerOf(request);
      await engine.approve(request.params.id, caller.name, request.body ?? undefined);
      return await answer(request.params.id, request.query.view);
    },
  );

  // The author's signed apply statement, for their draft: from then on the rollout is signed.
  app.post(
    '/rollouts/:id/statement',
    {
      config: { access: 'write' },
      schema: {
        ...operation('rollouts', 'attachRolloutStatement', "Attach the author's signed apply statement"),
        params: Params,
        querystring: ViewQuery,
        body: AttachStatementRequestSchema,
        response: StatusOrSummary,
      },
    },
    async (request) => {
      await engine.attachStatement(request.params.id, request.body, callerOf(request).name);
      return await answer(request.params.id, request.query.view);
    },
  );

  // A signature on a signed rollout's revert statement; the last one needed starts the revert.
  app.post(
    '/rollouts/:id/revert-statement',
    {
      config: { access: 'sign-revert' },
      schema: {
        ...operation('rollouts', 'signRolloutRevert', "Add a signature to a signed rollout's revert statement"),
        params: Params,
        querystring: ViewQuery,
        body: RevertSignatureRequestSchema,
        response: StatusOrSummary,
      },
    },
    async (request) => {
      await engine.signRevert(request.params.id, request.body, callerOf(request).name);
      return await answer(request.params.id, request.query.view);
    },
  );

  // Start; `overridePromotion` starts it although an earlier environment was not passed (admins only,
  // with a reason that goes on the record and in the status).
  app.post(
    '/rollouts/:id/start',
    {
      config: { access: 'write' },
      schema: {
        ...operation('rollouts', 'startRollout', 'Start an approved rollout'),
        params: Params,
        querystring: ViewQuery,
        body: StartBody,
        response: StatusOrSummary,
      },
    },
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
      await engine.start(request.params.id, caller.name, override ? { overridePromotion: override } : {});
      return await answer(request.params.id, request.query.view);
    },
  );

  // Each verb: what it does to the rollout, and how the API document names and sums it up.
  const verbs = {
    submit: {
      act: async (id: string, actor: string) => await engine.submit(id, actor),
      operationId: 'submitRollout',
      summary: 'Submit a draft for approval',
    },
    pause: {
      act: async (id: string, actor: string) => await engine.pause(id, actor),
      operationId: 'pauseRollout',
      summary: 'Pause: in-flight hosts finish, no new ones',
    },
    resume: {
      act: async (id: string, actor: string) => await engine.resume(id, actor),
      operationId: 'resumeRollout',
      summary: 'Resume a paused rollout',
    },
    retry: {
      act: async (id: string, actor: string) => await engine.retry(id, actor),
      operationId: 'retryRollout',
      summary: 'Retry a halted rollout from its failed wave',
    },
    promote: {
      act: async (id: string, actor: string) => await engine.promote(id, actor),
      operationId: 'promoteRollout',
      summary: 'End the current bake now',
    },
    revert: {
      act: async (id: string, actor: string) => await engine.revert(id, actor),
      operationId: 'revertRollout',
      summary: 'Revert every changed host of the rollout',
    },
  } as const;
  for (const [verb, { act, operationId, summary }] of Object.entries(verbs)) {
    app.post(
      `/rollouts/:id/${verb}`,
      {
        config: { access: 'write' },
        schema: {
          ...operation('rollouts', operationId, summary),
          params: Params,
          querystring: ViewQuery,
          body: VerbBody,
          response: StatusOrSummary,
        },
      },
      async (request) => {
        const caller = callerOf(request);
        await act(request.params.id, caller.name);
        return await answer(request.params.id, request.query.view);
      },
    );
  }

  app.post(
    '/rollouts/:id/abort',
    {
      config: { access: 'write' },
      schema: {
        ...operation('rollouts', 'abortRollout', 'Abort: cancel in-flight work, send nothing more'),
        params: Params,
        querystring: ViewQuery,
        body: VerbBody,
        response: StatusOrSummary,
      },
    },
    async (request) => {
      const caller = callerOf(request);
      await engine.abort(request.params.id, caller.name, request.body?.reason ?? null);
      return await answer(request.params.id, request.query.view);
    },
  );

  app.post(
    '/rollouts/:id/hosts/:hostId/revert',
    {
      config: { access: 'write' },
      schema: {
        ...operation('rollouts', 'revertRolloutHost', 'Revert one host of a rollout'),
        params: HostParams,
        querystring: ViewQuery,
        body: VerbBody,
        response: StatusOrSummary,
      },
    },
    async (request) => {
      const caller = callerOf(request);
      await engine.revertHost(request.params.id, request.params.hostId, caller.name);
      return await answer(request.params.id, request.query.view);
    },
  );

  app.get(
    '/rollouts/:id/events',
    {
      config: { access: 'read' },
      schema: {
        ...operation('events', 'listRolloutEvents', "Page through one rollout's events"),

        params: Params,
        querystring: EventPageQuerySchema,
        response: { 200: EventPageSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      await view.assertExists(request.params.id); // 404 for an unknown rollout
      return toEventPage(
        await store.events(request.params.id, request.query.after, request.query.limit),
        request.query.limit,
      );
    },
  );
};
