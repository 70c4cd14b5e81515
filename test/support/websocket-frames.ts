/**
 * The WebSocket messages a traced process sent and received, rebuilt from the bytes of its socket
 * reads and writes in an strace log (see strace-log.ts): each direction of each connection is one
 * byte stream, an HTTP upgrade head then frames. Frames from a client are masked; the mask key is
 * in the frame, so they read as plainly as the server's. Connections that never upgrade (the HTTP
 * API, enrollment) are recognised and left alone.
 */
import { isSocket, type StraceEvent } from './strace-log.js';

export interface SocketMessage {
  /** The connection as the traced process's fd names it: `TCP:[local->remote]`. */
  connection: string;
  direction: 'sent' | 'received';
  text: string;
  /** The message parsed as a JSON object; undefined when it is not one. */
  json: Record<string, unknown> | undefined;
  /** Line where the call that moved the message's first byte entered. */
  startLine: number;
  /** Line where the call that moved its last byte returned. */
  endLine: number;
}

export interface SocketTraffic {
  messages: SocketMessage[];
  /** Streams that could not be read (bytes cut by `-s`, compressed frames): a rule must not pass over them. */
  problems: string[];
}

export function webSocketMessages(events: readonly StraceEvent[]): SocketTraffic {
  const streams = new Map<string, WebSocketStream>();
  const messages: SocketMessage[] = [];
  const problems: string[] = [];
  const streamOf = (connection: string, direction: SocketMessage['direction']) => {
    const key = `${direction} ${connection}`;
    let stream = streams.get(key);
    if (!stream) {
      stream = new WebSocketStream(connection, direction);
      streams.set(key, stream);
    }
    return stream;
  };
  const retire = (key: string) => {
    const stream = streams.get(key);
    if (!stream) return;
    if (stream.problem) problems.push(stream.problem);
    streams.delete(key);
  };
  for (const event of events) {
    if (event.kind === 'close' && isSocket(event.fd)) {
      // The fd (and perhaps, later, its port pair) may name another connection from now on.
      retire(`sent ${event.fd.target}`);
      retire(`received ${event.fd.target}`);
      continue;
    }
    if ((event.kind !== 'write' && event.kind !== 'read') || !event.ok || !isSocket(event.fd)) continue;
    const connection = event.fd.target as string;
    const stream = streamOf(connection, event.kind === 'write' ? 'sent' : 'received');
    messages.push(...stream.push(event.data, event.complete, event.startLine, event.endLine));
  }
  for (const key of [...streams.keys()]) retire(key);
  return { messages, problems };
}

/** Where the bytes of one call sit in a stream, and when they moved. */
interface Chunk {
  /** Offset in the stream just past this chunk's last byte. */
  end: number;
  startLine: number;
  endLine: number;
}

const HEAD_END = Buffer.from('\r\n\r\n');
/** Longer than any upgrade head: a stream that has not ended its head by then is not HTTP. */
const MAX_HEAD_BYTES = 16 * 1024;

/** One direction of one connection. */
export class WebSocketStream {
  private state: 'head' | 'frames' | 'other' | 'broken' = 'head';
  private buffered = Buffer.alloc(0);
  /** Stream offset of `buffered[0]`. */
  private offset = 0;
  private chunks: Chunk[] = [];
  private fragments: { parts: Buffer[]; startLine: number } | undefined;
  problem: string | undefined;

  constructor(
    private readonly connection: string,
    private readonly direction: SocketMessage['direction'],
  ) {}

  /** Adds the bytes one call moved; returns the messages they completed. */
  push(bytes: Buffer, complete: boolean, startLine: number, endLine: number): SocketMessage[] {
    if (this.state === 'other' || this.state === 'broken') return [];
    if (!complete) {
      this.fail(`line ${endLine}: strace cut the bytes of ${this.describe()} (raise -s)`);
      return [];
    }
    if (bytes.length === 0) return [];
    this.chunks.push({ end: this.offset + this.buffered.length + bytes.length, startLine, endLine });
    this.buffered = Buffer.concat([this.buffered, bytes]);
    const out: SocketMessage[] = [];
    for (;;) {
      const progressed = this.state === 'head' ? this.readHead() : this.state === 'frames' && this.readFrame(out);
      if (!progressed) return out;
    }
  }

  private readHead(): boolean {
    const end = this.buffered.indexOf(HEAD_END);
    if (end < 0) {
      if (this.buffered.length > MAX_HEAD_BYTES) this.state = 'other';
      return false;
    }
    const head = this.buffered.subarray(0, end).toString('latin1');
    // A client's upgrade request, or a server's 101 answer to one; any other head is plain HTTP.
    const upgrade =
      (/^GET \S+ HTTP\/1\.1\r\n/.test(head) && /\r\nupgrade:\s*websocket\s*(?:\r\n|$)/i.test(head)) ||
      /^HTTP\/1\.1 101 /.test(head);
    this.consume(end + HEAD_END.length);
    this.state = upgrade ? 'frames' : 'other';
    return upgrade;
  }

  private readFrame(out: SocketMessage[]): boolean {
    const b = this.buffered;
    if (b.length < 2) return false;
    const first = b[0] as number;
    const second = b[1] as number;
    if ((first & 0x70) !== 0) {
      this.fail(`${this.describe()}: a frame with RSV bits set (permessage-deflate?) cannot be read`);
      return false;
    }
    const fin = (first & 0x80) !== 0;
    const opcode = first & 0x0f;
    const masked = (second & 0x80) !== 0;
    let length = second & 0x7f;
    let at = 2;
    if (length === 126) {
      if (b.length < 4) return false;
      length = b.readUInt16BE(2);
      at = 4;
    } else if (length === 127) {
      if (b.length < 10) return false;
      length = Number(b.readBigUInt64BE(2));
      at = 10;
    }
    const maskAt = at;
    if (masked) at += 4;
    if (b.length < at + length) return false;
    const payload = Buffer.from(b.subarray(at, at + length));
    if (masked)
      for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (b[maskAt + (i % 4)] as number);
    const startLine = this.lineAt(0, 'start');
    const endLine = this.lineAt(at + length - 1, 'end');
    this.consume(at + length);

    if (opcode >= 0x8) return true; // close, ping, pong: no application message
    if (opcode !== 0) this.fragments = { parts: [], startLine };
    if (!this.fragments) {
      this.fail(`${this.describe()}: a continuation frame with no message begun`);
      return false;
    }
    this.fragments.parts.push(payload);
    if (!fin) return true;
    const text = Buffer.concat(this.fragments.parts).toString('utf8');
    out.push({
      connection: this.connection,
      direction: this.direction,
      text,
      json: parseObject(text),
      startLine: this.fragments.startLine,
      endLine,
    });
    this.fragments = undefined;
    return true;
  }

  /** The line at which the byte at `index` of the buffer moved: its call's entry or its return. */
  private lineAt(index: number, which: 'start' | 'end'): number {
    const absolute = this.offset + index;
    const chunk = this.chunks.find((c) => c.end > absolute) as Chunk;
    return which === 'start' ? chunk.startLine : chunk.endLine;
  }

  private consume(count: number): void {
    this.buffered = this.buffered.subarray(count);
    this.offset += count;
    this.chunks = this.chunks.filter((c) => c.end > this.offset);
  }

  private fail(problem: string): void {
    this.state = 'broken';
    this.problem = problem;
  }

  private describe(): string {
    return `the ${this.direction} stream of ${this.connection}`;
  }
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
