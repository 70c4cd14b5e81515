import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import type { EventRecord } from '@fleetpatch/shared';
import { z } from 'zod';

/**
 * Live audit stream of one rollout as Server-Sent Events. Sends the backlog after `Last-Event-ID`
 * (or `?after=`), then every committed event as it happens; `id:` is the event's seq so a client
 * that reconnects resumes exactly where it left off.
 */
export const eventStreamRoutes: FastifyPluginAsyncZod = async (app) => {
  const { store, view } = app.fleet;
  // Open streams, each with the function that ends it. A stream never ends by itself, and the HTTP
  // server cannot finish closing while one is open: one preClose hook (hooks cannot be added once the
  // app is ready, so never per request) ends them all when the app closes.
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...open]) end();
  });

  app.get(
    '/rollouts/:id/events/stream',
    {
      config: { access: 'read' },
      schema: {
        params: z.object({ id: z.string().min(1).max(100) }),
        querystring: z.object({ after: z.coerce.number().int().min(0).optional() }).strict(),
      },
    },
    async (request, reply) => {
      const rolloutId = request.params.id;
      view.assertExists(rolloutId); // 404 before the stream opens
      const lastEventId = Number(request.headers['last-event-id']);
      let after = Number.isInteger(lastEventId) && lastEventId > 0 ? lastEventId : (request.query.after ?? 0);

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      const write = (event: EventRecord) => {
        if (event.seq <= after) return;
        after = event.seq;
        res.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      };
      // Subscribe before reading the backlog so nothing committed in between is lost; `after` dedupes.
      const live: EventRecord[] = [];
      let replaying = true;
      const unsubscribe = store.onEvent((event) => {
        if (event.rolloutId !== rolloutId) return;
        if (replaying) live.push(event);
        else write(event);
      });
      for (;;) {
        const page = store.events(rolloutId, after, 500);
        for (const event of page) write(event);
        if (page.length < 500) break;
      }
      replaying = false;
      for (const event of live) write(event);
      const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      const cleanUp = () => {
        clearInterval(keepAlive);
        unsubscribe();
        open.delete(end);
      };
      const end = () => {
        cleanUp();
        res.end();
      };
      open.add(end);
      // The response's close fires when the client goes away or the stream is ended, either way once.
      res.on('close', cleanUp);
      if (res.destroyed) cleanUp(); // the client left before the listener was attached
    },
  );
};
