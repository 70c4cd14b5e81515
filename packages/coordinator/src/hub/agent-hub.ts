import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  AGENT_ID_HEADER,
  AGENT_MESSAGE_SINCE,
  type AgentMessage,
  AgentMessageSchema,
  CloseCode,
  COORDINATOR_MESSAGE_SINCE,
  type CoordinatorMessage,
  connectProofPayload,
  formatProtocolRange,
  HEARTBEAT_PING_PROTOCOL,
  type Hello,
  HostIdSchema,
  type IncomingFrame,
  type InventoryReport,
  MAX_FRAME_BYTES,
  negotiateProtocolVersion,
  type OrderProgress,
  type OrderResultBody,
  PROTOCOL_VERSION,
  type ProtocolRange,
  protocolNeededFor,
  readFrame,
  SUPPORTED_PROTOCOL_VERSIONS,
  verifyPayloadOffThread,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import type { AgentLimits } from '../config.js';
import { writeMessage } from '../engine/apply-frames.js';
import type { AgentChannel } from '../engine/rollout-engine.js';
import { AwaitedResults } from './awaited-results.js';
import { withoutNulEscapes } from './nul-escapes.js';
import { PeerThrottle } from './peer-throttle.js';
import { TokenBucket } from './token-bucket.js';
import { type PendingTicket, type UpgradeCap, UpgradeGate } from './upgrade-gate.js';

/** Where agents dial in, on the same port as the HTTP API. */
export const AGENT_SOCKET_PATH = '/v1/agents/connect';

export interface AgentHubHandlers {
  onHello(agentId: string, hello: Hello): void;
  onProgress(agentId: string, progress: OrderProgress): void;
  onResult(agentId: string, result: OrderResultBody): void;
  /** Protocol 3: the agent's package inventory (a summary, a full one in parts, a diff, or none). */
  onInventory(agentId: string, report: InventoryReport): void;
  onSeen(agentId: string): void;
  onDisconnect(agentId: string): void;
  /** A second connection with a live agent's credential was refused; already throttled per agent. */
  onDuplicateRefused(agentId: string, detail: { remote: string; refusedSinceLast: number }): void;
}

export interface AgentHubOptions {
  /** The enrolled public key of an agent, or undefined when it is unknown or revoked. */
  publicKeyOf(agentId: string): Promise<string | undefined>;
  log: Logger;
  heartbeatIntervalMs: number;
  limits: AgentLimits;
  /** Told of every frame, socket error and close, for the metrics; it decides nothing. */
  observer?: HubObserver;
}

/** What the hub reports as it goes. Message types are the protocol's, or `invalid` / `unknown`. */
export interface HubObserver {
  messageReceived(type: string): void;
  messageSent(type: string): void;
  socketError(code: string | undefined): void;
  socketClosed(code: number): void;
  /** An upgrade answered 503 at a cap on unauthenticated sockets. */
  upgradeRefused(cap: UpgradeCap): void;
}

/**
 * `pending`: the WebSocket handshake is done but nobody is authenticated yet; it counts against the
 * gate's cap and deadline. `live`: authenticated, in `connections`. `closed`: final, whatever the
 * socket is still doing (its remaining frames are ignored).
 */
type ConnectionState = 'pending' | 'live' | 'closed';

const TRANSITIONS: Record<ConnectionState, readonly ConnectionState[]> = {
  pending: ['live', 'closed'],
  live: ['closed'],
  closed: [],
};

interface Connection {
  state: ConnectionState;
  socket: WebSocket;
  ticket: PendingTicket;
  /** Set when live. */
  agentId: string;
  /** The key the agent proved it holds; set when live. */
  publicKey: string;
  /** Remote address until live, then the agent id: the key of its throttled log lines. */
  peer: string;
  log: Logger;
  greeted: boolean;
  /** Agreed in hello; until then the newest we speak, for parsing that hello. */
  protocolVersion: number;
  /** Heard from since the last heartbeat tick: a frame, a pong, or (protocol 7) the agent's heartbeat ping. */
  alive: boolean;
  /** A ping of ours went out at the last tick and awaits its answer. */
  pinged: boolean;
  /** Which of the heartbeat interval's PING_SLICES pings this connection (see pingSlice). */
  pingSlice: number;
  bucket: TokenBucket;
  /** Frames that arrive while pending, handed on once live (the hello, typically). */
  early: { data: RawData; isBinary: boolean }[];
  /** The first early frame as authentication parsed it: handed on without parsing it again. */
  firstParsed?: ParsedAgentFrame | undefined;
  /** Called when the first early frame arrives: authentication waits for it. */
  onFirstFrame?: () => void;
  /** The apply and revert orders sent here that owe their result (see AwaitedResults); made at the first. */
  awaiting?: Set<string> | undefined;
}

type ParsedAgentFrame = IncomingFrame<AgentMessage>;

/** A refusal's `reason` goes in the close frame (at most 123 bytes); `detail`, for the log only, says more. */
type Authentication =
  | { ok: true; agentId: string; publicKey: string }
  | { ok: false; code: CloseCode; reason: string; detail?: string };

/** Frames a pending connection may send before it is live; more is not an agent. */
const MAX_EARLY_FRAMES = 4;
/** How long a closed peer has to answer our close frame before its socket is destroyed. */
const CLOSE_GRACE_MS = 1000;
/**
 * The heartbeat interval is cut into this many ticks, and each tick pings one slice of the live
 * connections: each is still pinged once an interval, but pinging 10,000 at once held the event loop
 * for 50–100 ms every interval (and brought 10,000 pongs back together), which a rollout's messages
 * waited behind.
 */
const PING_SLICES = 10;

/**
 * The WebSocket side of the coordinator: admits sockets through the upgrade gate, authenticates them
 * in one step, holds one live connection per agent, parses every frame with the protocol schema and
 * hands typed messages to the handlers. A thin adapter — it decides nothing about rollouts.
 */
export class AgentHub implements AgentChannel {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly gate: UpgradeGate;
  private readonly all = new Set<Connection>();
  private readonly connections = new Map<string, Connection>();
  /** Agents whose live connection is being pinged because a second one presented their credential. */
  private readonly checking = new Set<string>();
  private readonly logThrottle: PeerThrottle;
  private readonly auditThrottle: PeerThrottle;
  private readonly heartbeat: NodeJS.Timeout;
  /** The slice the next tick pings, and the one the next live connection joins (in turn: even slices). */
  private pingTick = 0;
  private nextPingSlice = 0;
  private handlers: AgentHubHandlers | null = null;
  private closed = false;
  private readonly awaited = new AwaitedResults();

  constructor(private readonly options: AgentHubOptions) {
    const { limits } = options;
    this.logThrottle = new PeerThrottle(limits.peerLogIntervalMs);
    this.auditThrottle = new PeerThrottle(limits.auditWindowMs);
    this.gate = new UpgradeGate({
      maxPendingSockets: limits.maxPendingSockets,
      maxPendingSocketsPerAddress: limits.maxPendingSocketsPerAddress,
      maxPendingBytes: limits.maxPendingBytes,
      maxPendingBytesPerAddress: limits.maxPendingBytesPerAddress,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      log: options.log,
      throttle: this.logThrottle,
      onRefused: (cap) => options.observer?.upgradeRefused(cap),
    });
    this.heartbeat = setInterval(() => this.pingSlice(), options.heartbeatIntervalMs / PING_SLICES);
    this.heartbeat.unref();
  }

  /** Set once the engine exists (the engine needs the hub as its channel, the hub needs the engine). */
  setHandlers(handlers: AgentHubHandlers): void {
    this.handlers = handlers;
  }

  /** For the HTTP server's `upgrade` event. */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const remote = request.socket.remoteAddress ?? 'unknown';
    this.gate.guard(socket, remote);
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== AGENT_SOCKET_PATH || this.closed) {
      this.gate.refuse(socket, '404 Not Found');
      return;
    }
    const ticket = this.gate.admit(socket, remote);
    if (!ticket) return;
    // The 101 answer and the challenge leave in one write: ws writes its answer and calls back at
    // once, and `open` sends the challenge in that call. Two writes would cost both ends a system call
    // and a wake-up more per connection, which a reconnect storm of 10,000 agents pays 10,000 times.
    socket.cork();
    try {
      this.wss.handleUpgrade(request, socket, head, (ws) => this.open(ws, request, ticket));
    } finally {
      socket.uncork();
    }
  }

  send(agentId: string, message: CoordinatorMessage): boolean {
    const connection = this.connections.get(agentId);
    if (!connection?.greeted || connection.socket.readyState !== WebSocket.OPEN) return false;
    return this.sendIn(connection, message);
  }

  /** Sends in the connection's agreed version: a message that version lacks is never put on the wire. */
  private sendIn(connection: Connection, message: CoordinatorMessage): boolean {
    if (COORDINATOR_MESSAGE_SINCE[message.type] > connection.protocolVersion) {
      connection.log.error(
        { type: message.type, protocolVersion: connection.protocolVersion },
        'not sent: the agent speaks a protocol without this message',
      );
      return false;
    }
    // The engine never sends an agent a change it cannot read (see change-protocol.ts); this holds the line.
    if (
      (message.type === 'order.apply' || message.type === 'order.preflight') &&
      protocolNeededFor(message) > connection.protocolVersion
    ) {
      connection.log.error(
        { type: message.type, protocolVersion: connection.protocolVersion },
        'not sent: the agent speaks a protocol too old for this change',
      );
      return false;
    }
    writeMessage(connection.socket, inProtocol1(message, connection.protocolVersion));
    this.options.observer?.messageSent(message.type);
    if (message.type === 'order.apply' || message.type === 'order.revert') {
      connection.awaiting ??= new Set();
      this.awaited.sent(connection.awaiting, message.orderId);
    }
    return true;
  }

  /**
   * Whether an apply or revert order sent on one of this coordinator's sockets still owes its result:
   * the engine holds a burst of reports open for company only while one does.
   */
  awaitsResults(): boolean {
    return this.awaited.any();
  }

  isOnline(agentId: string): boolean {
    return this.connections.get(agentId)?.greeted === true;
  }

  /** The protocol version agreed with this agent's live connection; undefined while it has none. */
  protocolVersionOf(agentId: string): number | undefined {
    const connection = this.connections.get(agentId);
    return connection?.greeted ? connection.protocolVersion : undefined;
  }

  /** Closes this agent's connection, e.g. because its token was replaced. */
  disconnect(agentId: string, code: CloseCode, reason: string): void {
    const connection = this.connections.get(agentId);
    if (connection) this.closeSoon(connection, code, reason);
  }

  /**
   * Cuts this agent's live connection here unless it proved `currentKey`, the key the store holds
   * now: undefined when the key was revoked. In a group the change may have been made at another
   * coordinator (see group/credential-watch.ts).
   */
  dropUnlessKey(agentId: string, currentKey: string | undefined, reason: string): void {
    const connection = this.connections.get(agentId);
    if (connection && connection.publicKey !== currentKey) this.closeSoon(connection, CloseCode.unauthorized, reason);
  }

  /** The agents with a live connection here. */
  onlineIds(): string[] {
    return [...this.connections.values()].filter((c) => c.greeted).map((c) => c.agentId);
  }

  onlineCount(): number {
    return this.connections.size;
  }

  /** Unauthenticated sockets held now (upgrading, pending or being refused). */
  pendingCount(): number {
    return this.gate.pending;
  }

  /** Bytes the unauthenticated sockets have sent (see `agentLimits.maxPendingBytes`). */
  pendingBytes(): number {
    return this.gate.bytes;
  }

  /** Closes every agent socket with "going away"; agents reconnect to the next coordinator. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    const closing = [...this.all].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.socket.readyState === WebSocket.CLOSED) return resolve();
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

  private open(socket: WebSocket, request: IncomingMessage, ticket: PendingTicket): void {
    ticket.countBytes();
    const connection: Connection = {
      state: 'pending',
      socket,
      ticket,
      agentId: '',
      publicKey: '',
      peer: ticket.remote,
      log: this.options.log.child({ remote: ticket.remote }),
      greeted: false,
      protocolVersion: PROTOCOL_VERSION,
      alive: true,
      pinged: false,
      pingSlice: 0,
      bucket: new TokenBucket(this.options.limits.messagesPerSecond, this.options.limits.messageBurst),
      early: [],
    };
    // First: ws reports framing errors (reserved bits, bad opcode, a frame over maxPayload) here and
    // then closes with 1002/1007/1009 itself. Without a listener the error would end the process.
    socket.on('error', (err: Error & { code?: string }) => {
      this.options.observer?.socketError(err.code);
      this.warnPeer(connection, { code: err.code, error: err.message }, 'agent socket error; connection closed');
      this.retire(connection);
    });
    this.all.add(connection);
    ticket.onExpire = () => {
      if (connection.state === 'pending')
        this.closeSoon(connection, CloseCode.handshakeTimeout, 'authenticate in time');
    };
    socket.on('pong', () => {
      connection.alive = true;
    });
    socket.on('ping', () => this.onPing(connection));
    socket.on('message', (data, isBinary) => this.onFrame(connection, data, isBinary));
    socket.on('close', (code) => {
      this.options.observer?.socketClosed(code);
      this.all.delete(connection);
      this.retire(connection);
    });
    void this.authenticate(connection, request).then(
      (auth) => this.admit(connection, auth),
      (err: unknown) => {
        connection.log.error({ err }, 'authenticating an agent failed');
        this.closeSoon(connection, CloseCode.unauthorized, 'authentication failed');
      },
    );
  }

  /**
   * The one step that decides who is on the other end. The upgrade names the agent; we send a fresh
   * random challenge; the first frame must be a hello whose proof is the challenge signed with that
   * agent's enrolled key. The hello stays in `early`, to be handled once live. A peer that never
   * answers is cut by the gate's handshake deadline; one that floods is cut at MAX_EARLY_FRAMES.
   */
  private async authenticate(connection: Connection, request: IncomingMessage): Promise<Authentication> {
    const claimed = request.headers[AGENT_ID_HEADER];
    if (typeof claimed !== 'string' || !HostIdSchema.safeParse(claimed).success) {
      return { ok: false, code: CloseCode.unauthorized, reason: `name the agent in the ${AGENT_ID_HEADER} header` };
    }
    const nonce = randomBytes(32).toString('base64url');
    const first = new Promise<void>((resolve) => {
      connection.onFirstFrame = resolve;
    });
    connection.socket.send(JSON.stringify({ type: 'challenge', nonce } satisfies CoordinatorMessage));
    await first;
    const frame = connection.early[0];
    if (connection.state !== 'pending' || !frame) return { ok: false, code: CloseCode.unauthorized, reason: 'gone' };
    // Parsed as onFrame will (a connection speaks PROTOCOL_VERSION until its hello agrees on one).
    const parsed = frame.isBinary ? undefined : readAgentFrame(connection.protocolVersion, frame.data.toString());
    if (parsed?.kind !== 'message' || parsed.message.type !== 'hello') {
      const detail =
        parsed === undefined
          ? 'a binary frame'
          : parsed.kind === 'invalid'
            ? parsed.error
            : `a ${parsed.kind === 'unknown' ? parsed.type : parsed.message.type} message`;
      return { ok: false, code: CloseCode.badFrame, reason: 'the first message must be a valid hello', detail };
    }
    const publicKey = await this.options.publicKeyOf(claimed);
    const proven =
      publicKey !== undefined &&
      (await verifyPayloadOffThread(publicKey, connectProofPayload(claimed, nonce), parsed.message.proof)) &&
      // The key may have been revoked or replaced since it was read (an API call, while the proof was
      // checked on the thread pool or the store answered), which cuts only live connections: read again.
      (await this.options.publicKeyOf(claimed)) === publicKey;
    // One answer for an unknown host, a revoked one and a wrong key: nothing to learn by probing.
    if (!proven) return { ok: false, code: CloseCode.unauthorized, reason: 'agent not enrolled or proof invalid' };
    connection.firstParsed = parsed;
    return { ok: true, agentId: claimed, publicKey };
  }

  /** Makes an authenticated connection live, unless another live one for the agent answers a ping. */
  private async admit(connection: Connection, auth: Authentication): Promise<void> {
    if (connection.state !== 'pending') return;
    if (!auth.ok) {
      // The handshake is completed first so the agent sees a documented close code, not a bare reset.
      const detail = auth.detail === undefined ? {} : { detail: auth.detail.slice(0, 500) };
      this.warnPeer(connection, { code: auth.code, ...detail }, `agent connection refused: ${auth.reason}`);
      this.closeSoon(connection, auth.code, auth.reason);
      return;
    }
    const { agentId } = auth;
    const live = this.connections.get(agentId);
    if (live) {
      if (this.checking.has(agentId)) return this.refuseDuplicate(connection, agentId);
      this.checking.add(agentId);
      const answered = await this.answersPing(live, this.options.limits.staleCheckMs);
      this.checking.delete(agentId);
      if (connection.state !== 'pending') return;
      if (answered) return this.refuseDuplicate(connection, agentId);
      if (this.connections.get(agentId) === live) {
        // A restarted or partitioned agent's old socket: the newcomer is the agent, let it in at once.
        live.log.warn({ remote: connection.peer }, 'live connection did not answer a ping; replaced by a new one');
        this.retire(live);
        live.socket.terminate();
      }
      if (this.connections.has(agentId)) return this.refuseDuplicate(connection, agentId);
    }
    this.transition(connection, 'live');
    connection.ticket.settle();
    connection.agentId = agentId;
    connection.publicKey = auth.publicKey;
    connection.peer = agentId;
    connection.log = this.options.log.child({ agentId });
    connection.pingSlice = this.nextPingSlice;
    this.nextPingSlice = (this.nextPingSlice + 1) % PING_SLICES;
    this.connections.set(agentId, connection);
    const [hello, ...more] = connection.early.splice(0);
    if (hello) this.onFrame(connection, hello.data, hello.isBinary, connection.firstParsed);
    connection.firstParsed = undefined;
    for (const frame of more) this.onFrame(connection, frame.data, frame.isBinary);
  }

  private refuseDuplicate(connection: Connection, agentId: string): void {
    const refusedSinceLast = this.auditThrottle.pass(`duplicate:${agentId}`);
    if (refusedSinceLast !== undefined) {
      this.options.log.warn(
        { agentId, remote: connection.peer, refusedSinceLast },
        'refused a second connection with the credential of a live agent',
      );
      this.handlers?.onDuplicateRefused(agentId, { remote: connection.peer, refusedSinceLast });
    }
    this.closeSoon(connection, CloseCode.alreadyConnected, 'this agent is already connected');
  }

  /** True if the connection answers a ping (or sends anything) within `timeoutMs`. */
  private answersPing(connection: Connection, timeoutMs: number): Promise<boolean> {
    const { socket } = connection;
    return new Promise((resolve) => {
      const done = (answered: boolean) => {
        clearTimeout(timer);
        socket.off('pong', yes).off('message', yes).off('close', no);
        resolve(answered);
      };
      const yes = () => done(true);
      const no = () => done(false);
      const timer = setTimeout(no, timeoutMs);
      socket.on('pong', yes).on('message', yes).once('close', no);
      socket.ping();
    });
  }

  /** `parsed`: the frame as already parsed (the hello, by authentication); parsed here otherwise. */
  private onFrame(connection: Connection, data: RawData, isBinary: boolean, parsed?: ParsedAgentFrame): void {
    if (connection.state === 'closed') return;
    if (connection.state === 'pending') {
      if (connection.early.length >= MAX_EARLY_FRAMES) {
        this.reject(connection, 'too many frames before authentication');
        return;
      }
      connection.early.push({ data, isBinary });
      if (connection.early.length === 1) connection.onFirstFrame?.();
      return;
    }
    if (!this.heardWithinRate(connection)) return;
    if (isBinary) {
      this.reject(connection, 'binary frames are not part of the protocol');
      return;
    }
    const frame = parsed ?? readAgentFrame(connection.protocolVersion, data.toString());
    this.options.observer?.messageReceived(frame.kind === 'message' ? frame.message.type : frame.kind);
    if (frame.kind === 'invalid') {
      this.reject(connection, frame.error);
      return;
    }
    if (frame.kind === 'unknown') {
      if (!connection.greeted) this.reject(connection, 'the first message must be hello');
      else this.answerUnsupported(connection, frame.type);
      return;
    }
    const message = frame.message;
    if (!connection.greeted && message.type !== 'hello') {
      this.reject(connection, 'the first message must be hello');
      return;
    }
    if (connection.greeted && message.type === 'hello') {
      this.reject(connection, 'hello is sent once per connection');
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
      case 'hello': {
        const theirs = agentProtocolRange(message);
        const version = negotiateProtocolVersion(SUPPORTED_PROTOCOL_VERSIONS, theirs);
        if (version === undefined) {
          const reason = `no common protocol version: coordinator speaks ${formatProtocolRange(SUPPORTED_PROTOCOL_VERSIONS)}, agent ${formatProtocolRange(theirs)}`;
          this.warnPeer(connection, { agentVersion: message.agentVersion }, `agent refused: ${reason}`);
          this.closeSoon(connection, CloseCode.protocolMismatch, reason);
          return;
        }
        connection.greeted = true;
        connection.protocolVersion = version;
        connection.log.info(
          { agentVersion: message.agentVersion, protocolVersion: version, orders: message.orders.length },
          'agent connected',
        );
        this.sendIn(connection, {
          type: 'welcome',
          protocolVersion: version,
          agentId: connection.agentId,
          heartbeatIntervalMs: this.options.heartbeatIntervalMs,
        });
        handlers.onHello(connection.agentId, message);
        return;
      }
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
        if (connection.awaiting) {
          this.awaited.answered(connection.awaiting, body.orderId);
          // Most agents hold one order at a time: an empty set is not kept for each of thousands.
          if (connection.awaiting.size === 0) connection.awaiting = undefined;
        }
        handlers.onResult(connection.agentId, body);
        return;
      }
      case 'inventory.summary':
      case 'inventory.full':
      case 'inventory.diff':
      case 'inventory.unavailable':
        handlers.onInventory(connection.agentId, message);
        return;
      case 'unsupported':
        // We only send what the agreed version has: this is a bug on one side, worth a line, not a disconnect.
        this.warnPeer(
          connection,
          { inReplyTo: message.inReplyTo, reason: message.reason },
          'agent did not understand a message',
        );
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled agent message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /**
   * A message type the agreed version lacks (from a newer agent, say): answered with `unsupported`
   * where the protocol has it (2+), ignored on protocol 1, which has no way to say it. Either way the
   * connection stays; the frame has already counted against the agent's message rate.
   */
  private answerUnsupported(connection: Connection, type: string): void {
    this.warnPeer(connection, { inReplyTo: type }, 'agent sent a message type this protocol version lacks; ignored');
    if (COORDINATOR_MESSAGE_SINCE.unsupported > connection.protocolVersion) return;
    this.sendIn(connection, {
      type: 'unsupported',
      inReplyTo: type,
      reason: `protocol ${connection.protocolVersion} has no message ${JSON.stringify(type)}`.slice(0, 200),
    });
  }

  private reject(connection: Connection, error: string): void {
    this.warnPeer(connection, { error }, 'bad frame from agent; closing');
    // Close reasons are capped at 123 bytes by the WebSocket protocol.
    this.closeSoon(connection, CloseCode.badFrame, Buffer.from(error).subarray(0, 120).toString());
  }

  /**
   * Sends a close frame and ends the connection now: its state is final at once (nothing more it
   * sends is read), and a peer that does not answer the close is destroyed after a short grace
   * rather than ws's 30 s.
   */
  private closeSoon(connection: Connection, code: CloseCode, reason: string): void {
    this.retire(connection);
    const { socket } = connection;
    if (socket.readyState === WebSocket.OPEN) socket.close(code, reason);
    const timer = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  /** Moves a connection to `closed` (once) and, if it was the agent's live one, reports the disconnect. */
  private retire(connection: Connection): void {
    if (connection.state === 'closed') return;
    const wasLive = connection.state === 'live';
    this.transition(connection, 'closed');
    connection.early = [];
    connection.firstParsed = undefined;
    connection.onFirstFrame?.(); // an authentication still waiting for a frame ends now
    if (connection.awaiting) this.awaited.closed(connection.awaiting);
    if (!wasLive || this.connections.get(connection.agentId) !== connection) return;
    this.connections.delete(connection.agentId);
    connection.log.info('agent disconnected');
    this.handlers?.onDisconnect(connection.agentId);
  }

  private transition(connection: Connection, to: ConnectionState): void {
    if (!TRANSITIONS[connection.state].includes(to))
      throw new Error(`agent connection cannot go from ${connection.state} to ${to}`);
    connection.state = to;
  }

  /** One line per peer per interval however often it misbehaves, with the count it stands for. */
  private warnPeer(connection: Connection, fields: Record<string, unknown>, message: string): void {
    const suppressed = this.logThrottle.pass(`${message}:${connection.peer}`);
    if (suppressed !== undefined) connection.log.warn({ ...fields, suppressed }, message);
  }

  /** A live agent was heard from (a frame or a ping): false, and the connection closing, once it is over its message rate. */
  private heardWithinRate(connection: Connection): boolean {
    connection.alive = true;
    if (connection.bucket.take()) return true;
    this.warnPeer(
      connection,
      { messagesPerSecond: this.options.limits.messagesPerSecond },
      'agent over its message rate; closing',
    );
    this.closeSoon(connection, CloseCode.rateLimited, 'message rate exceeded');
    return false;
  }

  /**
   * An agent's ping, which ws has already answered with a pong: from an agent of protocol 7, its
   * heartbeat (its data, the journal position, is not read here, as the `heartbeat` message's was not),
   * counted as one in the message metrics. Before the agent is live it counts for nothing; after, it
   * counts against the message rate.
   */
  private onPing(connection: Connection): void {
    if (connection.state !== 'live' || !connection.greeted) return;
    if (!this.heardWithinRate(connection)) return;
    this.options.observer?.messageReceived('heartbeat');
    this.handlers?.onSeen(connection.agentId);
  }

  /**
   * One tick of the heartbeat, for the connections of this tick's slice. One heard from since the
   * last tick is pinged, unless it speaks protocol 7: such an agent pings us each interval, and a ping
   * of ours would only add a frame each way. One silent since a ping of ours is cut; an agent of
   * protocol 7 silent for an interval (its ping late) is pinged first, and cut at the next tick if it
   * still says nothing.
   */
  private pingSlice(): void {
    const slice = this.pingTick;
    this.pingTick = (this.pingTick + 1) % PING_SLICES;
    for (const connection of this.connections.values()) {
      if (connection.pingSlice !== slice) continue;
      const beatsItself = connection.greeted && connection.protocolVersion >= HEARTBEAT_PING_PROTOCOL;
      if (connection.alive) {
        connection.alive = false;
        connection.pinged = !beatsItself;
      } else if (connection.pinged || !beatsItself) {
        connection.log.warn('agent missed its heartbeat; terminating the connection');
        this.retire(connection);
        connection.socket.terminate();
        continue;
      } else {
        connection.pinged = true;
      }
      if (connection.pinged) {
        connection.socket.ping();
        // Counted as the agents' pings are (`onPing`): the heartbeats each way, in the message metrics.
        this.options.observer?.messageSent('heartbeat');
      }
    }
  }
}

/** The versions a hello says its agent speaks: a range from protocol 2 on, one exact version in 1. */
function agentProtocolRange(hello: Hello): ProtocolRange {
  if (hello.protocolVersions) return hello.protocolVersions;
  if (hello.protocolVersion === undefined) throw new Error('HelloSchema requires protocolVersion or protocolVersions');
  return { min: hello.protocolVersion, max: hello.protocolVersion };
}

/** One frame from an agent, read as protocol `version` speaks, with no NUL character in it (see `withoutNulEscapes`). */
function readAgentFrame(version: number, text: string): IncomingFrame<AgentMessage> {
  return readFrame(AgentMessageSchema, AGENT_MESSAGE_SINCE, version, withoutNulEscapes(text));
}

/**
 * A protocol 1 agent reads `order.preflight` strictly (test/support/protocol-v1.ts): the optional
 * fields added since (the answer's deadline, whether the rollout is signed, the health checks) would
 * make it refuse the order and drop the connection, so it is sent the order as protocol 1 wrote it.
 */
function inProtocol1(message: CoordinatorMessage, protocolVersion: number): CoordinatorMessage {
  if (message.type !== 'order.preflight' || protocolVersion > 1) return message;
  return { type: message.type, orderId: message.orderId, change: message.change };
}
