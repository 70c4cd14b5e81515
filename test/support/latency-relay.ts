import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP relay that holds every chunk `delayMs` in each direction before passing it on, in order: 300 ms
 * of latency on a link where the kernel has no sch_netem to add it (see link-faults.ts). Agents dial
 * the relay; it dials the coordinator's port on 127.0.0.1, anew for every connection, so a coordinator
 * restarted on the same port is reached again.
 */
export class LatencyRelay {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
    readonly port: number,
  ) {}

  static async start(targetPort: number, delayMs: number): Promise<LatencyRelay> {
    const sockets = new Set<Socket>();
    const server = createServer((inbound) => {
      const outbound = createConnection({ host: '127.0.0.1', port: targetPort });
      sockets.add(inbound).add(outbound);
      const pipeDelayed = (from: Socket, to: Socket) => {
        // Timers of one delay fire in the order they were set: the stream stays in order.
        from.on('data', (chunk) => setTimeout(() => to.writable && to.write(chunk), delayMs));
        from.on('end', () => setTimeout(() => to.end(), delayMs));
      };
      pipeDelayed(inbound, outbound);
      pipeDelayed(outbound, inbound);
      const close = () => {
        inbound.destroy();
        outbound.destroy();
        sockets.delete(inbound);
        sockets.delete(outbound);
      };
      // A reset on either side (a killed coordinator, a cut link) ends the pair.
      inbound.on('error', close).on('close', close);
      outbound.on('error', close).on('close', close);
    });
    server.listen(0, '0.0.0.0');
    await once(server, 'listening');
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('relay has no TCP address');
    return new LatencyRelay(server, sockets, address.port);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    const closed = once(this.server, 'close');
    this.server.close();
    await closed;
  }
}
