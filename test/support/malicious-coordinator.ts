/**
 * A stolen coordinator in miniature: a WebSocket server that speaks the real agent protocol — it
 * takes the upgrade naming the agent (`x-fleetpatch-agent`), sends a fresh `challenge`, checks the
 * `hello`'s proof against the key the agent enrolled, and `welcome`s it in the protocol version it
 * chooses — and then sends whatever orders a test hands it, signed or not, honest or not. Every frame
 * the agent sends is read with the shared schemas; results are acknowledged as the real hub does.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AGENT_ID_HEADER,
  AGENT_MESSAGE_SINCE,
  type AgentMessage,
  AgentMessageSchema,
  CloseCode,
  type CoordinatorMessage,
  connectProofPayload,
  type Hello,
  MAX_FRAME_BYTES,
  negotiateProtocolVersion,
  type OrderProgress,
  type OrderResult,
  PROTOCOL_VERSION,
  type ProtocolRange,
  readFrame,
  SUPPORTED_PROTOCOL_VERSIONS,
  verifyPayload,
} from '@fleetpatch/shared';
import { WebSocket, WebSocketServer } from 'ws';

/** One hello the coordinator accepted, with its size on the wire and the version it chose. */
export interface AcceptedHello {
  hello: Hello;
  bytes: number;
  protocolVersion: number;
}

/** How often the coordinator pings the agent: the agent drops a connection that stays silent. */
const PING_INTERVAL_MS = 1000;

export class MaliciousCoordinator {
  /** Every hello accepted, in order: one per connection. */
  readonly hellos: AcceptedHello[] = [];
  readonly results: OrderResult[] = [];
  readonly progress: OrderProgress[] = [];
  /** Frames the shared schemas refused and handshakes that failed: a test of an honest agent expects none. */
  readonly protocolErrors: string[] = [];
  /** The protocol versions offered to the next connection: `{min: 1, max: 1}` talks the agent down to v1. */
  speaks: ProtocolRange = SUPPORTED_PROTOCOL_VERSIONS;
  /** Added to a wait's timeout error: the agent's last log lines, say. */
  explain: () => string = () => '';
  private readonly enrolled = new Map<string, string>();
  private socket: WebSocket | undefined;
  private readonly changed = new Set<() => void>();
  private readonly pinger: NodeJS.Timeout;

  private constructor(private readonly server: WebSocketServer) {
    server.on('connection', (socket, request) => this.handshake(socket, request));
    this.pinger = setInterval(() => this.socket?.ping(), PING_INTERVAL_MS);
    this.pinger.unref();
  }

  static async start(): Promise<MaliciousCoordinator> {
    const server = new WebSocketServer({
      host: '127.0.0.1',
      port: 0,
      path: '/v1/agents/connect',
      maxPayload: MAX_FRAME_BYTES,
    });
    await once(server, 'listening');
    return new MaliciousCoordinator(server);
  }

  /** What an agent is given as its coordinator URL (it dials `<url>/v1/agents/connect`). */
  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The coordinator's copy of an enrolled agent: its id and public key, which its proofs must verify against. */
  enroll(hostId: string, publicKey: string): void {
    this.enrolled.set(hostId, publicKey);
  }

  get connected(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Sends any coordinator frame to the welcomed agent: the point of being the coordinator. */
  send(message: CoordinatorMessage): void {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) throw new Error('no agent is connected');
    this.socket.send(JSON.stringify(message));
  }

  /** Sends an order and resolves with the next result the agent reports for its id. */
  async order(message: CoordinatorMessage & { orderId: string }, timeoutMs = 20_000): Promise<OrderResult> {
    const seen = this.resultsOf(message.orderId).length;
    this.send(message);
    return this.until(`a result for order ${message.orderId}`, () => this.resultsOf(message.orderId)[seen], timeoutMs);
  }

  resultsOf(orderId: string): OrderResult[] {
    return this.results.filter((r) => r.orderId === orderId);
  }

  progressOf(orderId: string): OrderProgress[] {
    return this.progress.filter((p) => p.orderId === orderId);
  }

  /** Resolves once `count` hellos have been accepted in all; returns the last of them. */
  helloNumber(count: number, timeoutMs = 20_000): Promise<AcceptedHello> {
    return this.until(
      `hello number ${count}`,
      () => (this.hellos.length >= count ? this.hellos.at(-1) : undefined),
      timeoutMs,
    );
  }

  /** Cuts the agent's connection without a close handshake, as a network failure would. */
  dropAgent(): void {
    this.socket?.terminate();
    this.socket = undefined;
  }

  /** Resolves once `probe` answers something, re-asked whenever the agent sends a frame. */
  until<T>(what: string, probe: () => T | undefined, timeoutMs: number): Promise<T> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const value = probe();
        if (value === undefined) return;
        clearTimeout(timer);
        this.changed.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => {
        this.changed.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.explain()}`));
      }, timeoutMs);
      this.changed.add(check);
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.pinger);
    for (const client of this.server.clients) client.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** The hub's handshake: name, challenge, proof, version; anything else is refused as the hub refuses it. */
  private handshake(socket: WebSocket, request: IncomingMessage): void {
    socket.on('error', (err) => this.protocolErrors.push(`socket error: ${err.message}`));
    const hostId = request.headers[AGENT_ID_HEADER];
    const publicKey = typeof hostId === 'string' ? this.enrolled.get(hostId) : undefined;
    if (typeof hostId !== 'string' || publicKey === undefined) {
      this.protocolErrors.push(`upgrade for an agent not enrolled here: ${String(hostId)}`);
      socket.close(CloseCode.unauthorized, 'agent not enrolled or proof invalid');
      return;
    }
    const nonce = randomBytes(32).toString('base64url');
    let agreed: number | undefined;
    socket.on('message', (data, isBinary) => {
      const raw = data.toString();
      const frame = isBinary
        ? ({ kind: 'invalid', error: 'binary frame' } as const)
        : readFrame(AgentMessageSchema, AGENT_MESSAGE_SINCE, agreed ?? PROTOCOL_VERSION, raw);
      if (frame.kind !== 'message') {
        this.protocolErrors.push(
          `agent frame not in the protocol: ${frame.kind === 'invalid' ? frame.error : frame.type}`,
        );
        return;
      }
      if (agreed === undefined)
        agreed = this.greet(socket, frame.message, hostId, publicKey, nonce, Buffer.byteLength(raw));
      else this.receive(socket, frame.message);
      for (const check of [...this.changed]) check();
    });
    socket.send(JSON.stringify({ type: 'challenge', nonce } satisfies CoordinatorMessage));
  }

  /** The first frame must be a hello proving the key; answers the version agreed, or undefined (refused). */
  private greet(
    socket: WebSocket,
    message: AgentMessage,
    hostId: string,
    publicKey: string,
    nonce: string,
    bytes: number,
  ): number | undefined {
    if (message.type !== 'hello') {
      this.protocolErrors.push(`first frame was ${message.type}, not hello`);
      socket.close(CloseCode.badFrame, 'the first message must be a valid hello');
      return undefined;
    }
    if (!verifyPayload(publicKey, connectProofPayload(hostId, nonce), message.proof)) {
      this.protocolErrors.push(`hello proof of ${hostId} does not verify`);
      socket.close(CloseCode.unauthorized, 'agent not enrolled or proof invalid');
      return undefined;
    }
    const theirs = message.protocolVersions ?? { min: message.protocolVersion ?? 1, max: message.protocolVersion ?? 1 };
    const version = negotiateProtocolVersion(this.speaks, theirs);
    if (version === undefined) {
      socket.close(CloseCode.protocolMismatch, 'no common protocol version');
      return undefined;
    }
    this.socket?.terminate();
    this.socket = socket;
    this.hellos.push({ hello: message, bytes, protocolVersion: version });
    socket.send(
      JSON.stringify({
        type: 'welcome',
        protocolVersion: version,
        agentId: hostId,
        heartbeatIntervalMs: 10_000,
      } satisfies CoordinatorMessage),
    );
    return version;
  }

  private receive(socket: WebSocket, message: AgentMessage): void {
    switch (message.type) {
      case 'order.result':
        this.results.push(message);
        socket.send(
          JSON.stringify({
            type: 'order.ack',
            orderId: message.orderId,
            finishedAt: message.finishedAt,
          } satisfies CoordinatorMessage),
        );
        return;
      case 'order.progress':
        this.progress.push(message);
        return;
      case 'hello':
        this.protocolErrors.push('a second hello on one connection');
        return;
      case 'heartbeat':
      case 'facts':
      case 'unsupported':
      // A protocol 3 agent reports its packages; this coordinator never asks for them (no inventory.request).
      case 'inventory.summary':
      case 'inventory.full':
      case 'inventory.diff':
      case 'inventory.unavailable':
        return;
      default: {
        const unreachable: never = message;
        this.protocolErrors.push(`unhandled agent message ${JSON.stringify(unreachable)}`);
      }
    }
  }
}
