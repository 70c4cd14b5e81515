import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import { ErrorCode, type EventRecord, FleetError } from '@fleetpatch/shared';
import { z } from 'zod';
import type { CoordinatorConfig } from '../config.js';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';
import type { ProgressNotice } from '../store/store.js';
import { HOST_CHANGE_INTERVAL_MS, HostChangeNotices } from './host-change-notices.js';

/**
 * Live audit stream of one rollout as Server-Sent Events. Sends the backlog after `Last-Event-ID`
 * (or `?after=`), then every committed event as it happens; `id:` is the event's seq so a client
 * that reconnects resumes exactly where it left off.
 */
/** What the stream sends, for the API document: the answer itself is never serialized (it is streamed). */
const EventStreamSchema = z
  .string()
  .describe(
    "Server-Sent Events: each event is `id: <seq>`, `event: <type>` and `data: <the event as JSON>` (the rollout events of GET /v1/rollouts/{id}/events); a host's live phase comes as `event: host.progress` with no `id:` and `data: {type, rolloutId, hostId, state, at, message?}` (not an audit event: read the phase from the status after a resume); with `hostEvents=coalesced`, neither a host's events nor its phases are sent: an `event: hosts.changed` with no `id:` and `data: {type, rolloutId, changes}` says that hosts moved, at most once every 250 ms; comment lines keep the connection alive. Reconnect with `Last-Event-ID` to resume after the last event seen.",
  );

/** New events held for a stream still sending its backlog; beyond, the stream is cut (it resumes). */
const LIVE_BACKLOG_CAP = 10_000;

/**
 * Each event's frame, serialized once for every stream that sends it: a rollout of 5,000 hosts puts
 * ~10,000 events on each stream watching it (the same objects, from the store's broadcast).
 */
const frames = new WeakMap<EventRecord | ProgressNotice, string>();

function frameOf(item: EventRecord | ProgressNotice): string {
  let frame = frames.get(item);
  if (frame === undefined) {
    // A host's live phase has no `id:`: it is not an audit event, so a resume neither replays it nor
    // skips past one.
    const id = 'seq' in item ? `id: ${item.seq}\n` : '';
    frame = `${id}event: ${item.type}\ndata: ${JSON.stringify(item)}\n\n`;
    frames.set(item, frame);
  }
  return frame;
}

export const eventStreamRoutes: FastifyPluginAsyncZod<{ limits: CoordinatorConfig['eventStreams'] }> = async (
  app,
  { limits },
) => {
  const { store, view } = app.fleet;
  const perAddress = new Map<string, number>();
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
        ...operation('events', 'streamRolloutEvents', "One rollout's events, live, as Server-Sent Events"),

        params: z.object({ id: z.string().min(1).max(100) }),
        querystring: z
          .object({
            after: z.coerce.number().int().min(0).optional(),
            hostEvents: z
              .enum(['all', 'coalesced'])
              .default('all')
              .describe(
                `all: every host's audit events and live phases; coalesced: none of them, but a \`hosts.changed\` notice at most every ${HOST_CHANGE_INTERVAL_MS} ms while hosts move (for a reader that reads the status after each change: a rollout of 10,000 hosts puts ~20,000 host events on a stream)`,
              ),
          })
          .strict(),
        headers: z.looseObject({ 'last-event-id': z.string().optional().describe('Resume after this event seq') }),
        produces: ['text/event-stream'],
        response: { 200: EventStreamSchema, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const rolloutId = request.params.id;
      await view.assertExists(rolloutId); // 404 before the stream opens
      const address = request.ip;
      const fromAddress = perAddress.get(address) ?? 0;
      if (open.size >= limits.maxOpen || fromAddress >= limits.maxPerAddress) {
        throw new FleetError(ErrorCode.tooManyRequests, 'too many open event streams; close one or try later', {
          open: open.size,
          fromThisAddress: fromAddress,
        });
      }
      const lastEventId = Number(request.headers['last-event-id']);
      let after = Number.isInteger(lastEventId) && lastEventId > 0 ? lastEventId : (request.query.after ?? 0);

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
      });
      // Headers out now: a reader resuming with nothing new to read would otherwise see no answer at
      // all until the first event or keep-alive, up to 15 s later.
      res.flushHeaders();
      let keepAlive: NodeJS.Timeout | undefined;
      let unsubscribe = () => {};
      let cleaned = false;
      const cleanUp = () => {
        if (cleaned) return;
        cleaned = true;
        clearInterval(keepAlive);
        hostChanges?.stop();
        unsubscribe();
        open.delete(end);
        const left = (perAddress.get(address) ?? 1) - 1;
        if (left > 0) perAddress.set(address, left);
        else perAddress.delete(address);
      };
      const end = () => {
        cleanUp();
        res.end();
      };
      /** Whether live output may go out: a reader this far behind is cut rather than buffered for; it resumes from Last-Event-ID. */
      const keepsUp = (): boolean => {
        if (cleaned) return false;
        if (res.writableLength > limits.maxUnreadBytes) {
          // Destroyed, not ended: ending would wait for the unread bytes to drain, which they never do.
          request.log.warn({ rolloutId, remote: address }, 'event stream reader too slow; stream ended');
          cleanUp();
          res.destroy();
          return false;
        }
        return true;
      };
      // A reader that reads the status after each change needs to know that hosts moved, not each move.
      const hostChanges =
        request.query.hostEvents === 'coalesced'
          ? new HostChangeNotices(rolloutId, (notice) => {
              // Each notice is this stream's own: nothing to share with others.
              if (keepsUp()) res.write(`event: ${notice.type}\ndata: ${JSON.stringify(notice)}\n\n`);
            })
          : undefined;
      /** Writes one event once; false when the socket's buffer is full (the backlog then waits). */
      const send = (event: EventRecord): boolean => {
        if (event.seq <= after || cleaned) return true;
        after = event.seq;
        if (hostChanges && event.hostId !== null) {
          hostChanges.note();
          return true;
        }
        return res.write(frameOf(event));
      };
      const write = (event: EventRecord) => {
        if (keepsUp()) send(event);
      };
      /** A host's live phase: a reader that resumes reads it from the status; only live ones get it. */
      const writeProgress = (notice: ProgressNotice) => {
        if (hostChanges) hostChanges.note();
        else if (keepsUp()) res.write(frameOf(notice));
      };
      const drained = () =>
        new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done).off('close', done);
            resolve();
          };
          res.on('drain', done).on('close', done);
        });
      open.add(end);
      perAddress.set(address, fromAddress + 1);
      // The response's close fires when the client goes away or the stream is ended, either way once.
      res.on('close', cleanUp);
      // Subscribe before reading the backlog so nothing committed in between is lost; `after` dedupes.
      const live: EventRecord[] = [];
      let replaying = true;
      unsubscribe = store.onStreamEvent((event) => {
        if (event.rolloutId !== rolloutId) return;
        if (!replaying) write(event);
        else if (live.push(event) > LIVE_BACKLOG_CAP) {
          // The reader has not taken its backlog while this many new events came: cut it, it resumes.
          cleanUp();
          res.destroy();
        }
      });
      const unsubscribeProgress = store.onProgress((notice) => {
        // A phase while the backlog replays: counted on a coalesced stream (no write), else not sent (the status has it).
        if (notice.rolloutId === rolloutId && (hostChanges !== undefined || !replaying)) writeProgress(notice);
      });
      const unsubscribeEvents = unsubscribe;
      unsubscribe = () => {
        unsubscribeEvents();
        unsubscribeProgress();
      };
      // The backlog goes out at the reader's pace: one page after the other, waiting for the socket.
      for (;;) {
        const page = await store.events(rolloutId, after, 500);
        for (const event of page) if (!send(event)) await drained();
        if (page.length < 500 || cleaned || res.destroyed) break;
      }
      replaying = false;
      for (const event of live) write(event);
      if (res.destroyed) cleanUp(); // the client left before the close listener could see it
      if (!cleaned) keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    },
  );
};
