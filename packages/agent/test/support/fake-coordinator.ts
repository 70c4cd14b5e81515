import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { generateAgentKeyPair, PROTOCOL_VERSION } from '@fleetpatch/shared';
import { type WebSocket, WebSocketServer } from 'ws';
import { writeCredential } from '../../src/agent-credential.js';

// What the agent tests that stand in for a coordinator (a plain ws WebSocketServer) share.

/**
 * An enrolled agent's data dir: a fresh key pair stored as `hostId`'s credential. Returns the
 * public key, which a coordinator checks the agent's connect proof against.
 */
export async function writeTestCredential(dataDir: string, hostId = 'web-1'): Promise<string> {
  const pair = generateAgentKeyPair();
  await writeCredential(
    dataDir,
    { hostId, publicKey: pair.publicKey, privateKeyPem: pair.privateKeyPem },
    new Date().toISOString(),
  );
  return pair.publicKey;
}

/** The answer to a hello: an agent acts on nothing before a welcome it accepted. */
export function sendWelcome(socket: WebSocket, agentId = 'web-1'): void {
  socket.send(
    JSON.stringify({
      type: 'welcome',
      protocolVersion: PROTOCOL_VERSION,
      agentId,
      heartbeatIntervalMs: 10_000,
    }),
  );
}

/**
 * A coordinator stand-in on 127.0.0.1 that challenges and welcomes every agent (without checking its
 * proof), over ws:// or, given a certificate, wss://. It can drop its agents, stop listening and listen
 * again on the same port: what the failover tests do to a coordinator of a group.
 */
export class WelcomingCoordinator {
  /** Connections that got as far as a hello, in total. */
  hellos = 0;
  private server: HttpServer | HttpsServer | undefined;
  private sockets: WebSocketServer | undefined;
  private readonly welcomeWaiters: (() => void)[] = [];

  private constructor(
    private port: number,
    private readonly tls: { cert: string; key: string } | undefined,
  ) {}

  static async start(tls?: { cert: string; key: string }): Promise<WelcomingCoordinator> {
    const coordinator = new WelcomingCoordinator(0, tls);
    await coordinator.listen();
    return coordinator;
  }

  /** The base URL an agent is configured with. */
  get url(): string {
    return `${this.tls ? 'wss' : 'ws'}://127.0.0.1:${this.port}`;
  }

  /** The agent endpoint the agent dials (and logs) for `url`. */
  get socketUrl(): string {
    return `${this.url}/v1/agents/connect`;
  }

  /** Resolves at the next welcome this coordinator sends: ask before causing it, so none is missed. */
  nextWelcome(): Promise<void> {
    return new Promise((resolve) => this.welcomeWaiters.push(resolve));
  }

  /** Closes every agent's socket at once, as a coordinator that drops its connections (or a cut link). */
  dropAgents(): void {
    for (const client of this.sockets?.clients ?? []) client.terminate();
  }

  /** Drops its agents and stops listening: a dead coordinator. */
  async close(): Promise<void> {
    this.dropAgents();
    const { server, sockets } = this;
    this.server = undefined;
    this.sockets = undefined;
    await new Promise<void>((resolve) => (sockets ? sockets.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  /** Listens again on the port it had: the coordinator restarted. */
  async reopen(): Promise<void> {
    if (this.server) throw new Error('this coordinator is listening already');
    await this.listen();
  }

  private async listen(): Promise<void> {
    const server = this.tls ? createHttpsServer(this.tls) : createHttpServer();
    const sockets = new WebSocketServer({ server });
    sockets.on('connection', (socket) => {
      socket.on('message', (data) => {
        if ((JSON.parse(data.toString()) as { type?: string }).type !== 'hello') return;
        this.hellos++;
        sendWelcome(socket);
        for (const resolve of this.welcomeWaiters.splice(0)) resolve();
      });
      socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    this.sockets = sockets;
  }
}
