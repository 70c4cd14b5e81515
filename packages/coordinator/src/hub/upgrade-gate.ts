import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { PeerThrottle } from './peer-throttle.js';

export interface UpgradeGateOptions {
  maxPendingSockets: number;
  /** Of those, at most this many from one remote address: one peer cannot fill the gate for all. */
  maxPendingSocketsPerAddress: number;
  /**
   * Bytes the unauthenticated sockets may send in all, and from one address: what `ws` holds of an
   * unfinished frame (up to 4 MiB each) is bounded by these, not by the socket caps times 4 MiB.
   */
  maxPendingBytes: number;
  maxPendingBytesPerAddress: number;
  handshakeTimeoutMs: number;
  log: Logger;
  /** Throttles the gate's log lines, per remote address. */
  throttle: PeerThrottle;
  /** Told of every upgrade refused at a cap (the log line is throttled; this is not): for the metrics. */
  onRefused?(cap: UpgradeCap): void;
}

/**
 * Which cap refused an upgrade (the sockets per remote address, or the coordinator's whole count),
 * or cut a pending socket (the bytes from its address, or from all of them).
 */
export type UpgradeCap = 'per_address' | 'pending' | 'bytes_per_address' | 'bytes';

/**
 * A socket the gate let through: counted as pending until `settle()` (it authenticated) or until the
 * socket is gone. If neither happens by the deadline, `onExpire` runs (the hub closes with 4408), and
 * a moment later the socket is destroyed whatever it is doing.
 */
export interface PendingTicket {
  readonly remote: string;
  /**
   * Counts what the socket sends against the byte budgets from now on. Called once `ws` has taken
   * the socket: a listener of our own before its own would start the socket flowing, and bytes that
   * came with the upgrade request (which `ws` puts back with `unshift`) would then go to ours alone.
   */
  countBytes(): void;
  settle(): void;
  onExpire: () => void;
}

/** Grace for a peer to read a close frame or an HTTP refusal before its socket is destroyed. */
const CLOSE_GRACE_MS = 1000;

/**
 * Everything the coordinator does with an upgrade socket before it knows who is on the other end:
 * an error listener before the first write (an unhandled socket error ends the process), the cap on
 * unauthenticated sockets, and the handshake deadline. Cheap by design: a refusal is a few bytes of
 * HTTP and a destroy, with no WebSocket state.
 */
export class UpgradeGate {
  private pendingCount = 0;
  /** Pending sockets per remote address; an entry exists only while its count is above zero. */
  private readonly byAddress = new Map<string, number>();
  /** What the pending sockets have sent since their upgrade, in all and per address (as `byAddress`). */
  private pendingBytes = 0;
  private readonly bytesByAddress = new Map<string, number>();

  constructor(private readonly options: UpgradeGateOptions) {}

  get pending(): number {
    return this.pendingCount;
  }

  /** What the pending sockets have sent since their upgrade, held by `ws` in part. */
  get bytes(): number {
    return this.pendingBytes;
  }

  /** Must be the first thing done with an upgrade socket. */
  guard(socket: Duplex, remote: string): void {
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const suppressed = this.options.throttle.pass(`socket-error:${remote}`);
      if (suppressed !== undefined)
        this.options.log.warn({ remote, code: err.code, suppressed }, 'socket error before authentication; dropped');
    });
  }

  /** Answers a plain HTTP status and drops the socket, whatever the peer does. */
  refuse(socket: Duplex, status: '404 Not Found' | '503 Service Unavailable'): void {
    if (!socket.destroyed) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    destroyAfterGrace(socket);
  }

  /** Counts the socket as pending, or refuses it with 503 (and returns undefined) at the cap. */
  admit(socket: Duplex, remote: string): PendingTicket | undefined {
    const { maxPendingSockets, maxPendingSocketsPerAddress, handshakeTimeoutMs, log, throttle } = this.options;
    const fromAddress = this.byAddress.get(remote) ?? 0;
    if (fromAddress >= maxPendingSocketsPerAddress) {
      const suppressed = throttle.pass(`overloaded:${remote}`);
      if (suppressed !== undefined)
        log.warn(
          { remote, maxPendingSocketsPerAddress, suppressed },
          'too many unauthenticated agent sockets from one address; refusing with 503',
        );
      this.options.onRefused?.('per_address');
      this.refuse(socket, '503 Service Unavailable');
      return undefined;
    }
    if (this.pendingCount >= maxPendingSockets) {
      const suppressed = throttle.pass('overloaded');
      if (suppressed !== undefined)
        log.warn(
          { remote, maxPendingSockets, suppressed },
          'too many unauthenticated agent sockets; refusing with 503',
        );
      this.options.onRefused?.('pending');
      this.refuse(socket, '503 Service Unavailable');
      return undefined;
    }
    this.pendingCount++;
    this.byAddress.set(remote, fromAddress + 1);
    let settled = false;
    let sent = 0;
    const count = (chunk: Buffer) => {
      sent += chunk.length;
      this.pendingBytes += chunk.length;
      const fromThere = (this.bytesByAddress.get(remote) ?? 0) + chunk.length;
      this.bytesByAddress.set(remote, fromThere);
      const over: UpgradeCap | undefined =
        fromThere > this.options.maxPendingBytesPerAddress
          ? 'bytes_per_address'
          : this.pendingBytes > this.options.maxPendingBytes
            ? 'bytes'
            : undefined;
      if (over !== undefined) this.cut(socket, remote, over);
    };
    const settle = () => {
      if (settled) return;
      settled = true;
      this.pendingCount--;
      const left = (this.byAddress.get(remote) ?? 1) - 1;
      if (left > 0) this.byAddress.set(remote, left);
      else this.byAddress.delete(remote);
      socket.off('data', count);
      this.pendingBytes -= sent;
      const bytesLeft = (this.bytesByAddress.get(remote) ?? sent) - sent;
      if (left > 0) this.bytesByAddress.set(remote, bytesLeft);
      else this.bytesByAddress.delete(remote);
      clearTimeout(deadline);
    };
    const countBytes = () => {
      if (!settled) socket.on('data', count);
    };
    const ticket: PendingTicket = { remote, countBytes, settle, onExpire: () => socket.destroy() };
    const deadline = setTimeout(() => {
      if (settled) return;
      ticket.onExpire();
      destroyAfterGrace(socket);
    }, handshakeTimeoutMs);
    deadline.unref();
    socket.once('close', settle);
    return ticket;
  }

  /**
   * A pending socket that took its address (or the coordinator) over the bytes the unauthenticated
   * may send: destroyed at once, its bytes given back when it closes. An agent's hello is a few
   * kilobytes; one that has results of 10,000 orders to report, 4 MiB, still fits in a budget alone.
   */
  private cut(socket: Duplex, remote: string, cap: UpgradeCap): void {
    if (socket.destroyed) return;
    const { log, throttle, maxPendingBytes, maxPendingBytesPerAddress } = this.options;
    const suppressed = throttle.pass(`bytes:${remote}`);
    if (suppressed !== undefined)
      log.warn(
        { remote, cap, maxPendingBytes, maxPendingBytesPerAddress, suppressed },
        'unauthenticated agent sockets sent more than their budget of bytes; socket destroyed',
      );
    this.options.onRefused?.(cap);
    socket.destroy();
  }
}

function destroyAfterGrace(socket: Duplex): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
