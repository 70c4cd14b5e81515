import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Logger } from 'pino';

export interface PipeliningGuardOptions {
  /** Requests one connection may have waiting for their answers to be written out. */
  maxOutstanding: number;
  log: Logger;
}

/**
 * HTTP/1.1 lets a client pipeline requests and never read the answers. Node parses every request it
 * has received and keeps each answer in memory until the ones before it are written, so a viewer
 * asking 300 times for a 1 MiB patch in one packet made the coordinator hold 300 MiB. A connection
 * with more than `maxOutstanding` requests whose answers are not yet written out is dropped. Clients
 * that wait for each answer (curl, browsers, the CLI, agents) never have more than one.
 */
export const pipeliningGuard = fp<PipeliningGuardOptions>(
  async (app: FastifyInstance, { maxOutstanding, log }) => {
    const outstanding = new WeakMap<Socket, number>();
    app.addHook('onRequest', async (request, reply) => {
      const socket = request.raw.socket as Socket | undefined;
      // An injected request (tests) has no real connection: nothing to guard.
      if (!socket || typeof socket.destroy !== 'function' || !('remoteAddress' in socket)) return;
      const count = (outstanding.get(socket) ?? 0) + 1;
      outstanding.set(socket, count);
      // 'close' also fires for an answer that never finishes (a dropped connection).
      reply.raw.once('close', () => outstanding.set(socket, (outstanding.get(socket) ?? 1) - 1));
      if (count <= maxOutstanding) return;
      if (count === maxOutstanding + 1) {
        log.warn(
          { remote: request.ip, maxOutstanding },
          'client pipelines requests without reading the answers; connection dropped',
        );
      }
      reply.hijack();
      socket.destroy();
    });
  },
  { name: 'pipelining-guard' },
);
