/**
 * Listeners on 127.0.0.1 that count every TCP connection made to them, for tests that must prove a
 * health check did *not* run: a check that ran connects, so a count that stayed at zero is the proof
 * (a log line that is absent proves nothing).
 */
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Server } from 'node:net';

export class CountingListener {
  /** TCP connections accepted so far, whether or not anything was sent on them. */
  connections = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {
    server.on('connection', () => {
      this.connections++;
    });
  }

  /** An HTTP server answering every request 200 with `body`, as a service's health endpoint would. */
  static http(body = 'ok'): Promise<CountingListener> {
    return CountingListener.listen(createHttpServer((_req, res) => res.writeHead(200).end(body)));
  }

  /** A bare TCP listener that closes whatever connects: the port a scan would find open. */
  static tcp(): Promise<CountingListener> {
    return CountingListener.listen(createTcpServer((socket) => socket.destroy()));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  async close(): Promise<void> {
    if ('closeAllConnections' in this.server)
      (this.server as ReturnType<typeof createHttpServer>).closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private static async listen(server: Server): Promise<CountingListener> {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return new CountingListener(server, (server.address() as AddressInfo).port);
  }
}
