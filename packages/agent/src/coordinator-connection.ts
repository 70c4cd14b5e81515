import {
  AGENT_ID_HEADER,
  AGENT_MESSAGE_SINCE,
  type AgentMessage,
  CloseCode,
  COORDINATOR_MESSAGE_SINCE,
  type CoordinatorMessage,
  CoordinatorMessageSchema,
  formatProtocolRange,
  HEARTBEAT_PING_PROTOCOL,
  type Hello,
  heartbeatPingData,
  inProtocolRange,
  MAX_FRAME_BYTES,
  type ProtocolRange,
  readFrame,
  SUPPORTED_PROTOCOL_VERSIONS,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { CoordinatorRotation } from './coordinator-rotation.js';
import { type CoordinatorTlsOptions, TlsRefusalLog } from './coordinator-tls.js';

/** A hello without its versions: the connection adds the range it accepts. */
export type HelloContent = Omit<Hello, 'protocolVersion' | 'protocolVersions'>;

export interface ConnectionOptions {
  /**
   * ws:// or wss:// URLs of the agent endpoint of each coordinator of one group, in the order they are
   * tried (coordinator-rotation.ts). One is the single coordinator, or the address in front of a group.
   */
  urls: readonly string[];
  /** The host id this agent speaks for (sent on the upgrade; proven by the signature in hello). */
  agentId(): string;
  /** How the coordinator's certificate is checked on wss:// (CA, pin), the same for every URL; see coordinator-tls.ts. */
  tls?: CoordinatorTlsOptions;
  log: Logger;
  /**
   * Builds the `hello` sent in answer to the coordinator's challenge on every (re)connect: it signs
   * the nonce and carries the journal's pending reports.
   */
  hello(nonce: string): HelloContent;
  /**
   * The protocol versions this agent speaks (default: all this build knows). A coordinator that
   * welcomes it with a version outside them is refused: raising `min` means no coordinator can talk
   * the agent down to an older protocol that lacks what a newer one enforces.
   */
  protocolVersions?: ProtocolRange;
  /** Called before redialling after the coordinator refused this agent (4401): re-read the credential. */
  onRefused?(): Promise<void>;
  onMessage(message: CoordinatorMessage): void;
  /**
   * Called at each heartbeat while welcomed (every `heartbeatIntervalMs` the coordinator set): a tick
   * for work that only makes sense on a live connection, without a timer of each agent's own.
   */
  onHeartbeat?(): void;
  /** Reconnect backoff: base and cap, in ms; it grows per round of the URLs, not per URL (coordinator-rotation.ts). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /**
   * How long to wait for `welcome` after the socket opens before giving up on this connection and
   * dialling again (default 30 s): a coordinator that accepted but never answers must not hold the
   * agent for ever, unable to report.
   */
  welcomeTimeoutMs?: number;
}

/** Heartbeat intervals without a ping, a pong or a message before the connection counts as dead. */
const SILENT_INTERVALS_TO_DROP = 2;

/**
 * One outbound WebSocket to a coordinator of the group, kept up for the life of the agent: on a failed
 * or dropped connection it dials the next coordinator, with exponential backoff and full jitter per round
 * (so a restarted coordinator is not stampeded by the fleet), sends an application heartbeat, and drops
 * a connection that stops answering pings.
 */
export class CoordinatorConnection {
  private socket: WebSocket | null = null;
  private readonly rotation: CoordinatorRotation;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private welcomed = false;
  /** The version agreed in the current connection's welcome; undefined until then. */
  private protocolVersion: number | undefined;
  private journalPosition: () => number = () => 0;
  /** Whether this agent sent the coordinator a frame since its last heartbeat: see `startHeartbeat`. */
  private spokeSinceBeat = false;
  private readonly refusals: TlsRefusalLog;

  constructor(private readonly options: ConnectionOptions) {
    this.refusals = new TlsRefusalLog(options.log);
    this.rotation = new CoordinatorRotation({
      urls: options.urls,
      backoffBaseMs: options.backoffBaseMs ?? 500,
      backoffMaxMs: options.backoffMaxMs ?? 30_000,
    });
  }

  /** The URL of the coordinator this agent is connected to (welcomed); undefined while it is not. */
  get coordinatorUrl(): string | undefined {
    return this.connected ? this.rotation.current : undefined;
  }

  /** The protocol version agreed on this connection; undefined until welcome. */
  get agreedProtocol(): number | undefined {
    return this.protocolVersion;
  }

  get connected(): boolean {
    return this.welcomed && this.socket?.readyState === WebSocket.OPEN;
  }

  start(journalPosition: () => number): void {
    this.journalPosition = journalPosition;
    this.connect();
  }

  /**
   * Sends when connected; returns false otherwise (the journal re-reports on the next hello), and for
   * a message the agreed protocol lacks (before welcome: the oldest version this agent speaks).
   */
  send(message: AgentMessage): boolean {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    if (AGENT_MESSAGE_SINCE[message.type] > (this.protocolVersion ?? this.versions.min)) return false;
    this.socket.send(JSON.stringify(message));
    this.spokeSinceBeat = true;
    return true;
  }

  private get versions(): ProtocolRange {
    return this.options.protocolVersions ?? SUPPORTED_PROTOCOL_VERSIONS;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    const socket = this.socket;
    if (!socket || socket.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.close(CloseCode.normal, 'agent stopping');
      setTimeout(() => {
        socket.terminate();
        resolve();
      }, 1000).unref();
    });
  }

  private connect(): void {
    if (this.stopped) return;
    const { log } = this.options;
    const url = this.rotation.current;
    const socket = new WebSocket(url, {
      headers: { [AGENT_ID_HEADER]: this.options.agentId() },
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: 10_000,
      ...this.options.tls,
    });
    this.socket = socket;
    this.welcomed = false;
    this.protocolVersion = undefined;
    /** Message types already logged as unknown on this connection: one line each, not one per frame. */
    const unknownTypes = new Set<string>();
    let heard = true;
    let silentIntervals = 0;
    let welcomeTimer: NodeJS.Timeout | undefined;
    let refused = false;
    socket.on('open', () => {
      log.debug({ coordinator: url }, 'connected; waiting for the challenge');
      welcomeTimer = setTimeout(() => {
        log.warn('coordinator did not challenge or welcome this agent in time; reconnecting');
        socket.terminate();
      }, this.options.welcomeTimeoutMs ?? 30_000);
      welcomeTimer.unref();
    });
    socket.on('ping', () => {
      heard = true;
    });
    // The answer to this agent's heartbeat ping (protocol 7).
    socket.on('pong', () => {
      heard = true;
    });
    socket.on('message', (data, isBinary) => {
      heard = true;
      // Once this agent has refused the connection, nothing more the coordinator says is acted on.
      if (isBinary || socket.readyState !== WebSocket.OPEN) return;
      const version = this.protocolVersion ?? this.versions.max;
      const parsed = readFrame(CoordinatorMessageSchema, COORDINATOR_MESSAGE_SINCE, version, data.toString());
      if (parsed.kind === 'invalid') {
        log.warn({ error: parsed.error }, 'bad frame from coordinator; reconnecting');
        socket.close(CloseCode.badFrame, 'bad frame');
        return;
      }
      if (parsed.kind === 'unknown') {
        if (!unknownTypes.has(parsed.type) && unknownTypes.size < 100) {
          unknownTypes.add(parsed.type);
          log.warn(
            { type: parsed.type, protocolVersion: version },
            'ignored a coordinator message this agent does not know',
          );
        }
        this.send({ type: 'unsupported', inReplyTo: parsed.type, reason: `not in protocol ${version}` });
        return;
      }
      if (parsed.message.type === 'challenge') {
        const hello: Hello = { ...this.options.hello(parsed.message.nonce), protocolVersions: this.versions };
        socket.send(JSON.stringify(hello));
        return;
      }
      if (parsed.message.type === 'welcome') {
        const agreed = parsed.message.protocolVersion;
        if (!inProtocolRange(agreed, this.versions)) {
          log.error(
            { protocolVersion: agreed, accepted: formatProtocolRange(this.versions) },
            'coordinator chose a protocol version this agent does not accept (below minProtocolVersion?); disconnecting',
          );
          socket.close(CloseCode.protocolMismatch, `protocol ${agreed} not accepted`);
          return;
        }
        this.protocolVersion = agreed;
        clearTimeout(welcomeTimer);
        this.welcomed = true;
        this.rotation.welcomed();
        this.refusals.reset();
        log.info(
          { coordinator: url, agentId: parsed.message.agentId, protocolVersion: agreed },
          'connected to coordinator',
        );
        // One silent interval is tolerated (a busy coordinator, a slow link); two in a row drop the socket.
        this.startHeartbeat(socket, agreed, parsed.message.heartbeatIntervalMs, () => {
          const wasHeard = heard;
          silentIntervals = heard ? 0 : silentIntervals + 1;
          heard = false;
          if (silentIntervals >= SILENT_INTERVALS_TO_DROP) {
            log.warn('coordinator stopped answering; reconnecting');
            socket.terminate();
          }
          return wasHeard;
        });
      } else if (!this.welcomed) {
        // Orders count only after a welcome this agent accepted: skipping it cannot skip the version check.
        log.warn({ type: parsed.message.type }, 'coordinator sent a message before welcoming this agent; reconnecting');
        socket.close(CloseCode.badFrame, 'welcome first');
        return;
      }
      this.options.onMessage(parsed.message);
    });
    socket.on('error', (err) => {
      refused = this.refusals.report(err);
      if (!refused) log.debug({ err }, 'coordinator socket error');
    });
    socket.on('close', (code, reason) => {
      clearTimeout(welcomeTimer);
      this.stopHeartbeat();
      if (this.socket === socket) this.socket = null;
      this.welcomed = false;
      if (this.stopped) return;
      const needsHuman = code === CloseCode.unauthorized || code === CloseCode.protocolMismatch;
      const next = this.rotation.next({ needsHuman });
      // A refused certificate was just logged (or deliberately not, as a repeat): no second line per dial.
      const logFn = needsHuman ? log.error.bind(log) : refused ? log.debug.bind(log) : log.warn.bind(log);
      logFn(
        { coordinator: url, code, reason: reason.toString(), next: next.url, retryInMs: next.delayMs },
        closeExplanation(code),
      );
      this.reconnectTimer = setTimeout(() => {
        if (code !== CloseCode.unauthorized || !this.options.onRefused) {
          this.connect();
          return;
        }
        // A re-enrolled host has a new credential on disk: dial with it, not the refused one.
        this.options.onRefused().then(
          () => this.connect(),
          (err: unknown) => {
            log.error({ err }, 'reading the agent credential failed');
            this.connect();
          },
        );
      }, next.delayMs);
    });
  }

  /**
   * Beats once an interval: a ping carrying the journal position (protocol 7, which the coordinator's
   * pong answers), or the `heartbeat` message older coordinators expect (they ping, and ws pongs).
   * `check` judges the interval just ended and says whether the coordinator was heard in it.
   *
   * A ping of protocol 7 is left out when a frame went each way in the interval (a result and its
   * ack, say): the coordinator counts any frame of ours as a sign of life (it pings us only after an
   * interval without one), and we heard it, so the ping and its pong would prove nothing new. While
   * orders flow that spares a frame each way per agent and interval (a rollout of 10,000: the agents'
   * pings 0.55–1.04 per host before, 0.18–0.71 after; the revert after it ~0). A frame one way only
   * still beats.
   */
  private startHeartbeat(socket: WebSocket, protocolVersion: number, intervalMs: number, check: () => boolean): void {
    this.stopHeartbeat();
    this.spokeSinceBeat = false;
    this.heartbeatTimer = setInterval(() => {
      const heard = check();
      const exchanged = heard && this.spokeSinceBeat;
      this.spokeSinceBeat = false;
      if (protocolVersion >= HEARTBEAT_PING_PROTOCOL) {
        if (!exchanged && socket.readyState === WebSocket.OPEN) socket.ping(heartbeatPingData(this.journalPosition()));
      } else {
        this.send({ type: 'heartbeat', journalSeq: this.journalPosition(), sentAt: new Date().toISOString() });
      }
      this.options.onHeartbeat?.();
    }, intervalMs);
    this.heartbeatTimer.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }
}

/**
 * What a close code means for the person reading the agent's log. The coordinator's own refusals
 * (already connected, rate limited, overloaded, handshake timeout) are retried with backoff like any
 * disconnect; only an unknown credential or protocol needs a human.
 */
function closeExplanation(code: number): string {
  switch (code) {
    case CloseCode.unauthorized:
    case CloseCode.protocolMismatch:
      return 'coordinator refused this agent (not enrolled, revoked, a wrong key, or a protocol it does not speak); retrying at the slowest pace';
    case CloseCode.alreadyConnected:
      return 'coordinator refused: another connection with this agent credential is live (a second copy of this agent, or a stolen credential?); retrying';
    case CloseCode.rateLimited:
      return 'coordinator closed the connection: this agent sent too many messages; retrying';
    case CloseCode.overloaded:
      return 'coordinator is overloaded; retrying';
    case CloseCode.handshakeTimeout:
      return 'coordinator closed the connection: authentication took too long; retrying';
    default:
      return 'disconnected from coordinator';
  }
}
