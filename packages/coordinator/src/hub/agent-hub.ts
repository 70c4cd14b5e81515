import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  AGENT_ID_HEADER,
  type AgentMessage,
  AgentMessageSchema,
  CloseCode,
  type CoordinatorMessage,
  connectProofPayload,
  type Hello,
  HostIdSchema,
  MAX_FRAME_BYTES,
  type OrderProgress,
  type OrderResultBody,
  PROTOCOL_VERSION,
  parseFrame,
  verifyPayload,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import type { AgentChannel } from '../engine/rollout-engine.js';

/** Where agents dial in, on the same port as the HTTP API. */
export const AGENT_SOCKET_PATH = '/v1/agents/connect';

export interface AgentHubHandlers {
  onHello(agentId: string, hello: Hello): void;
  onProgress(agentId: string, progress: OrderProgress): void;
  onResult(agentId: string, result: OrderResultBody): void;
  onSeen(agentId: string): void;
  onDisconnect(agentId: string): void;
}

export interface AgentHubOptions {
  /** The enrolled public key of an agent, or undefined when it is unknown or revoked. */
  publicKeyOf(agentId: string): string | undefined;
  log: Logger;
  heartbeatIntervalMs: number;
}

interface Connection {
  /** Who the upgrade request claims to be; believed only once `greeted` (the proof checked out). */
  agentId: string;
  /** The challenge this connection must sign in its hello. */
  nonce: string;
  socket: WebSocket;
  log: Logger;
  greeted: boolean;
  alive: boolean;
}

/**
 * The WebSocket side of the coordinator: authenticates agents on upgrade, parses every frame with
 * the protocol schema, and hands typed messages to the handlers. A thin adapter — it decides
 * nothing about rollouts.
 */
export class AgentHub implements AgentChannel {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  /** Authenticated connections, one per agent. */
  private readonly connections = new Map<string, Connection>();
  /** Upgraded but not yet authenticated: they hold no agent's place and receive nothing but the challenge. */
  private readonly pending = new Set<Connection>();
  private readonly heartbeat: NodeJS.Timeout;
  private handlers: AgentHubHandlers | null = null;
  private closed = false;

  constructor(private readonly options: AgentHubOptions) {
    this.heartbeat = setInterval(() => this.pingAll(), options.heartbeatIntervalMs);
    this.heartbeat.unref();
  }

  /** Set once the engine exists (the engine needs the hub as its channel, the hub needs the engine). */
  setHandlers(handlers: AgentHubHandlers): void {
    this.handlers = handlers;
  }

  /** For the HTTP server's `upgrade` event. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== AGENT_SOCKET_PATH || this.closed) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    const claimed = request.headers[AGENT_ID_HEADER];
    const agentId = typeof claimed === 'string' && HostIdSchema.safeParse(claimed).success ? claimed : undefined;
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      if (agentId === undefined) {
        // Complete the handshake so the agent sees a documented close code, not a bare TCP reset.
        ws.on('error', () => {});
        this.options.log.warn({ remote: request.socket.remoteAddress }, 'agent connection refused: no agent id');
        ws.close(CloseCode.unauthorized, `name the agent in the ${AGENT_ID_HEADER} header`);
        return;
      }
      this.challenge(agentId, ws, request.socket.remoteAddress);
    });
  }

  send(agentId: string, message: CoordinatorMessage): boolean {
    const connection = this.connections.get(agentId);
    if (!connection?.greeted || connection.socket.readyState !== WebSocket.OPEN) return false;
    connection.socket.send(JSON.stringify(message));
    return true;
  }

  isOnline(agentId: string): boolean {
    return this.connections.get(agentId)?.greeted === true;
  }

  /** Closes this agent's connection, e.g. because its token was replaced. */
  disconnect(agentId: string, code: CloseCode, reason: string): void {
    this.connections.get(agentId)?.socket.close(code, reason);
  }

  onlineCount(): number {
    return this.connections.size;
  }

  /** Closes every agent socket with "going away"; agents reconnect to the next coordinator. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    for (const connection of this.pending) connection.socket.terminate();
    const closing = [...this.connections.values()].map(
      (c) =>
        new Promise<void>((resolve) => {
          c.socket.once('close', () => resolve());
          c.socket.close(CloseCode.goingAway, 'coordinator shutting down');
          setTimeout(() => {
            c.socket.terminate();
            resolve();
          }, 2000).unref();
        }),
    );
    await Promise.all(closing);
    this.wss.close();
  }

  /** Every connection starts unauthenticated: it must answer this challenge in its first frame. */
  private challenge(agentId: string, socket: WebSocket, remote: string | undefined): void {
    const connection: Connection = {
      agentId,
      nonce: randomBytes(32).toString('base64url'),
      socket,
      log: this.options.log.child({ agentId, remote }),
      greeted: false,
      alive: true,
    };
    socket.on('pong', () => {
      connection.alive = true;
    });
    socket.on('message', (data, isBinary) => this.onFrame(connection, data, isBinary));
    socket.on('error', (err) => connection.log.warn({ err }, 'agent socket error'));
    this.pending.add(connection);
    socket.on('close', () => {
      this.pending.delete(connection);
      if (this.connections.get(agentId) !== connection) return;
      this.connections.delete(agentId);
      connection.log.info('agent disconnected');
      this.handlers?.onDisconnect(agentId);
    });
    socket.send(JSON.stringify({ type: 'challenge', nonce: connection.nonce } satisfies CoordinatorMessage));
  }

  /** The hello's proof decides: a signature of this connection's nonce by the agent's enrolled key. */
  private authenticate(connection: Connection, hello: Hello): boolean {
    const publicKey = this.options.publicKeyOf(connection.agentId);
    return (
      publicKey !== undefined &&
      verifyPayload(publicKey, connectProofPayload(connection.agentId, connection.nonce), hello.proof)
    );
  }

  private accept(connection: Connection): void {
    this.pending.delete(connection);
    const previous = this.connections.get(connection.agentId);
    if (previous) {
      // The newest connection wins: an agent that restarted must not wait for its old socket to time out.
      this.connections.delete(connection.agentId);
      previous.socket.close(CloseCode.alreadyConnected, 'replaced by a newer connection');
    }
    this.connections.set(connection.agentId, connection);
  }

  private onFrame(connection: Connection, data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.reject(connection, 'binary frames are not part of the protocol');
      return;
    }
    const parsed = parseFrame(AgentMessageSchema, data.toString());
    if (!parsed.ok) {
      this.reject(connection, parsed.error);
      return;
    }
    const message = parsed.message;
    connection.alive = true;
    if (!connection.greeted && message.type !== 'hello') {
      this.reject(connection, 'the first message must be hello');
      return;
    }
    try {
      this.dispatch(connection, message);
    } catch (err) {
      connection.log.error({ err, type: message.type }, 'handling agent message failed');
    }
  }

  /** Exhaustive: a new agent message type fails to compile until it is handled here. */
  private dispatch(connection: Connection, message: AgentMessage): void {
    const handlers = this.handlers;
    if (!handlers) return;
    switch (message.type) {
      case 'hello':
        if (connection.greeted) {
          this.reject(connection, 'hello was already sent on this connection');
          return;
        }
        if (!this.authenticate(connection, message)) {
          connection.log.warn('agent connection refused: not enrolled, revoked, or a wrong proof');
          connection.socket.close(CloseCode.unauthorized, 'agent not enrolled or proof invalid');
          return;
        }
        if (message.protocolVersion !== PROTOCOL_VERSION) {
          connection.socket.close(CloseCode.protocolMismatch, `protocol ${PROTOCOL_VERSION} required`);
          return;
        }
        this.accept(connection);
        connection.greeted = true;
        connection.log.info({ agentVersion: message.agentVersion, orders: message.orders.length }, 'agent connected');
        this.send(connection.agentId, {
          type: 'welcome',
          protocolVersion: PROTOCOL_VERSION,
          agentId: connection.agentId,
          heartbeatIntervalMs: this.options.heartbeatIntervalMs,
        });
        handlers.onHello(connection.agentId, message);
        return;
      case 'heartbeat':
        handlers.onSeen(connection.agentId);
        return;
      case 'facts':
        handlers.onSeen(connection.agentId);
        return;
      case 'order.progress':
        handlers.onProgress(connection.agentId, message);
        return;
      case 'order.result': {
        const { type: _type, ...body } = message;
        handlers.onResult(connection.agentId, body);
        return;
      }
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled agent message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private reject(connection: Connection, error: string): void {
    connection.log.warn({ error }, 'bad frame from agent; closing');
    // Close reasons are capped at 123 bytes by the WebSocket protocol.
    connection.socket.close(CloseCode.badFrame, Buffer.from(error).subarray(0, 120).toString());
  }

  private pingAll(): void {
    for (const connection of this.connections.values()) {
      if (!connection.alive) {
        connection.log.warn('agent missed its heartbeat; terminating the connection');
        connection.socket.terminate();
        continue;
      }
      connection.alive = false;
      connection.socket.ping();
    }
  }
}
