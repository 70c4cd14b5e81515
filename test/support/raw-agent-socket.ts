/**
 * A WebSocket peer written by hand over `node:net`, for tests that must send what the `ws` client
 * never would: broken frames, partial upgrades, resets, a client that ignores pings. It reads the
 * server's HTTP status and frames; it writes raw bytes or correctly masked client frames.
 */
import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { AGENT_ID_HEADER, connectProofPayload, signPayload } from '@fleetpatch/shared';

export const OPCODE = { text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

export interface ServerFrame {
  opcode: number;
  payload: Buffer;
  /** When it was read (Date.now()): for tests of when the server sends, e.g. its pings. */
  at: number;
}

/** A client frame: masked as RFC 6455 requires of a client, unless `masked: false`. */
export function clientFrame(
  opcode: number,
  payload: Buffer,
  flags: { fin?: boolean; rsv?: number; masked?: boolean } = {},
): Buffer {
  const { fin = true, rsv = 0, masked = true } = flags;
  const length = payload.length;
  const lengthBytes =
    length < 126
      ? Buffer.from([length])
      : length < 65536
        ? Buffer.from([126, length >> 8, length & 0xff])
        : bigLength(length);
  const header = Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | ((rsv & 0x7) << 4) | (opcode & 0xf)]), lengthBytes]);
  header[1] = (header[1] ?? 0) | (masked ? 0x80 : 0);
  if (!masked) return Buffer.concat([header, payload]);
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = (body[i] ?? 0) ^ (mask[i % 4] ?? 0);
  return Buffer.concat([header, mask, body]);
}

function bigLength(length: number): Buffer {
  const bytes = Buffer.alloc(9);
  bytes[0] = 127;
  bytes.writeBigUInt64BE(BigInt(length), 1);
  return bytes;
}

/** The bytes of an upgrade request; `headers` adds to (or overrides) the standard ones. */
export function upgradeRequest(path: string, headers: Record<string, string> = {}): string {
  const all: Record<string, string> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  return `GET ${path} HTTP/1.1\r\n${Object.entries(all)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

export class RawPeer {
  status: number | undefined;
  readonly frames: ServerFrame[] = [];
  ended = false;
  /** Answer the server's pings, as every real client does; off to play a partitioned agent. */
  answerPings = true;
  private buffer = Buffer.alloc(0);
  private headersDone = false;
  private readonly listeners = new Set<() => void>();

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk) => this.onData(chunk));
    // A reset by the server is an expected outcome here, not a test failure.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.ended = true;
      this.notify();
    });
  }

  /** `localAddress` (any of 127.0.0.0/8) plays a peer at another address. */
  static async open(port: number, request?: string, localAddress?: string): Promise<RawPeer> {
    const socket = connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
    const peer = new RawPeer(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    if (request !== undefined) socket.write(request);
    return peer;
  }

  write(bytes: Buffer | string): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  sendJson(message: unknown): void {
    this.write(clientFrame(OPCODE.text, Buffer.from(JSON.stringify(message))));
  }

  /** Resolves when `probe` returns a value; rejects after `timeoutMs`. Checked on every byte and on close. */
  until<T>(what: string, probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const value = probe();
        if (value === undefined) return;
        done();
        resolve(value);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`raw peer: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  waitStatus(timeoutMs?: number): Promise<number> {
    return this.until('an HTTP status', () => this.status ?? (this.ended ? -1 : undefined), timeoutMs);
  }

  /** The close code the server sent, or -1 if the socket ended without a close frame. */
  waitClose(timeoutMs?: number): Promise<number> {
    return this.until(
      'the connection to close',
      () => {
        const close = this.frames.find((f) => f.opcode === OPCODE.close);
        if (close) return close.payload.length >= 2 ? close.payload.readUInt16BE(0) : 1005;
        return this.ended ? -1 : undefined;
      },
      timeoutMs,
    );
  }

  /** The next text message of the given `type` the server sent (searching all received so far). */
  waitMessage(type: string, timeoutMs?: number): Promise<Record<string, unknown>> {
    return this.until(
      `a ${type} message`,
      () =>
        this.frames
          .filter((f) => f.opcode === OPCODE.text)
          .map((f) => JSON.parse(f.payload.toString()) as Record<string, unknown>)
          .find((m) => m.type === type),
      timeoutMs,
    );
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    if (!this.headersDone) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end === -1) return;
      const statusLine = this.buffer.subarray(0, this.buffer.indexOf('\r\n')).toString();
      this.status = Number(statusLine.split(' ')[1]);
      this.headersDone = true;
      this.buffer = this.buffer.subarray(end + 4);
    }
    this.parseFrames();
    this.notify();
  }

  private parseFrames(): void {
    for (;;) {
      const b = this.buffer;
      if (b.length < 2) return;
      const opcode = (b[0] ?? 0) & 0xf;
      let length = (b[1] ?? 0) & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (b.length < 4) return;
        length = b.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (b.length < 10) return;
        length = Number(b.readBigUInt64BE(2));
        offset = 10;
      }
      if (b.length < offset + length) return;
      const payload = b.subarray(offset, offset + length);
      this.frames.push({ opcode, payload, at: Date.now() });
      this.buffer = b.subarray(offset + length);
      if (opcode === OPCODE.ping && this.answerPings) this.write(clientFrame(OPCODE.pong, payload));
    }
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** A valid hello for a fresh agent. */
export function sampleHello(agentVersion = 'raw-test'): Record<string, unknown> {
  return {
    type: 'hello',
    protocolVersion: 1,
    proof: 'A'.repeat(86),
    agentVersion,
    labels: {},
    facts: {
      hostname: 'raw',
      os: 'linux',
      distro: 'd',
      release: 'r',
      kernel: 'k',
      arch: 'x64',
      cpus: 1,
      memoryBytes: 1,
    },
    orders: [],
  };
}

/**
 * Connects as agent `agentId` holding the private key `credential` and says hello; resolves once the
 * coordinator answered `welcome` (the agent is live), or with the refusal's close code. The one place
 * that knows how an agent authenticates: the id header, then the hello signed over the challenge nonce.
 */
export async function connectAsAgent(
  port: number,
  agentId: string,
  credential: KeyObject,
  options: { hello?: Record<string, unknown>; answerPings?: boolean } = {},
): Promise<{ peer: RawPeer; welcomed: boolean; closeCode?: number }> {
  const peer = await RawPeer.open(port, upgradeRequest('/v1/agents/connect', { [AGENT_ID_HEADER]: agentId }));
  peer.answerPings = options.answerPings ?? true;
  const status = await peer.waitStatus();
  if (status !== 101) return { peer, welcomed: false, closeCode: -1 };
  const nonce = await peer.until('a challenge or the close', () => {
    const challenge = peer.frames
      .filter((f) => f.opcode === OPCODE.text)
      .map((f) => JSON.parse(f.payload.toString()) as { type?: string; nonce?: string })
      .find((m) => m.type === 'challenge');
    if (challenge?.nonce) return challenge.nonce;
    return peer.frames.some((f) => f.opcode === OPCODE.close) || peer.ended ? null : undefined;
  });
  if (nonce === null) return { peer, welcomed: false, closeCode: await peer.waitClose() };
  const proof = signPayload(credential, connectProofPayload(agentId, nonce));
  peer.sendJson({ ...(options.hello ?? sampleHello()), proof });
  const outcome = await peer.until('welcome or close', () => {
    if (peer.frames.some((f) => f.opcode === OPCODE.text && f.payload.includes('"welcome"'))) return 'welcome';
    if (peer.frames.some((f) => f.opcode === OPCODE.close) || peer.ended) return 'closed';
    return undefined;
  });
  if (outcome === 'welcome') return { peer, welcomed: true };
  return { peer, welcomed: false, closeCode: await peer.waitClose() };
}
