import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  ChangeRecordViewSchema,
  NewPatchSchema,
  PatchHistorySchema,
  PatchListSchema,
  PatchSchema,
  PatchSummarySchema,
  renderChangeRecord,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
import { callerOf } from '../http/route-access.js';

const Params = z.object({ id: z.string().max(100) });

/** Patches: one described change. Created once, never edited — a new fix is a new patch. */
export const patchRoutes: FastifyPluginAsyncZod = async (app) => {
  const { patches } = app.fleet;

  app.post(
    '/patches',
    {
      config: { access: 'write' },
      schema: {
        ...operation('patches', 'createPatch', 'Create a patch (immutable once created)'),
        body: NewPatchSchema,
        response: { 201: PatchSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      return reply.status(201).send(await patches.create(request.body, callerOf(request).name));
    },
  );

  // Summaries, never content: a patch's file content (up to 1 MiB) is answered one patch at a time,
  // by GET /patches/:id, so no page of the list can build a response of hundreds of MB.
  app.get(
    '/patches',
    {
      config: { access: 'read' },
      schema: {
        ...operation('patches', 'listPatches', 'List patches, newest first, as summaries without their content'),
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }).strict(),
        response: { 200: PatchListSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ patches: await patches.list(request.query.limit) }),
  );

  app.get(
    '/patches/:id',
    {
      config: { access: 'read' },
      schema: {
        ...operation('patches', 'getPatch', 'Get one patch'),
        params: Params,
        response: { 200: PatchSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await patches.get(request.params.id),
  );

  // One patch as the list shows it: what a page that only names the patch (the dashboard's rollouts)
  // asks for, instead of the whole patch and its content.
  app.get(
    '/patches/:id/summary',
    {
      config: { access: 'read' },
      schema: {
        ...operation('patches', 'getPatchSummary', 'Get one patch as a summary without its content'),
        params: Params,
        response: { 200: PatchSummarySchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await patches.summary(request.params.id),
  );

  // The path of the patch's content (any patch with its digest) through the promotion order.
  app.get(
    '/patches/:id/history',
    {
      config: { access: 'read' },
      schema: {
        ...operation('patches', 'getPatchHistory', "The patch content's path through the promotion order"),
        params: Params,
        response: { 200: PatchHistorySchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await patches.history(request.params.id),
  );

  // The change request for a change-management system: JSON, or Markdown with `Accept: text/markdown`
  // or `?format=md` (the query wins over the header).
  app.get(
    '/patches/:id/record',
    {
      config: { access: 'read' },
      schema: {
        ...operation('patches', 'getChangeRecord', 'The change record, as JSON or Markdown'),
        params: Params,
        querystring: z.object({ format: z.enum(['json', 'md']).optional() }).strict(),
        response: { 200: z.union([ChangeRecordViewSchema, z.string()]), ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const view = await patches.record(request.params.id);
      const format = request.query.format ?? (wantsMarkdown(request.headers.accept) ? 'md' : 'json');
      if (format === 'json') return view;
      return reply
        .type('text/markdown; charset=utf-8')
        .serializer((payload) => payload as string)
        .send(renderChangeRecord(view, 'markdown'));
    },
  );
};

/** Markdown when the client asks for it before (or instead of) JSON. */
function wantsMarkdown(accept: string | undefined): boolean {
  if (!accept) return false;
  const types = accept.split(',').map((part) => part.split(';')[0]?.trim().toLowerCase());
  const markdown = types.indexOf('text/markdown');
  const json = types.indexOf('application/json');
  return markdown !== -1 && (json === -1 || markdown < json);
}
