import type { EventRecord } from '@fleetpatch/shared';
import { expect } from 'vitest';
import { ADMIN_TOKEN } from './fleet-harness.js';

export interface SseFrame {
  id: number;
  event: string;
  data: EventRecord;
}

/** A frame with no `id:`: a host's live phase (`host.progress`), not an audit event. */
export interface SseNotice {
  event: string;
  data: { type: string; rolloutId: string; hostId: string; state: string; at: string; message?: string };
}

/** A minimal EventSource over fetch: frames are parsed as they arrive; `close()` ends the request. */
export class SseClient {
  private readonly decoder = new TextDecoder();
  private buffer = '';
  private readonly frames: SseFrame[] = [];
  /** Every id-less frame seen so far, in order; kept apart so `next()` yields audit events only. */
  readonly notices: SseNotice[] = [];
  private readonly deadline: NodeJS.Timeout;

  private constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly controller: AbortController,
  ) {
    // A stream that stops delivering fails the test instead of hanging it.
    this.deadline = setTimeout(() => controller.abort(), 60_000);
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const controller = new AbortController();
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    if (!res.body) throw new Error('event stream has no body');
    return new SseClient(res.body.getReader(), controller);
  }

  async next(): Promise<SseFrame> {
    for (;;) {
      const frame = this.frames.shift();
      if (frame) return frame;
      const { value, done } = await this.reader.read();
      if (done) throw new Error('event stream ended');
      this.buffer += this.decoder.decode(value, { stream: true });
      this.parse();
    }
  }

  /** Reads frames up to and including the first one `last` accepts. */
  async until(last: (frame: SseFrame) => boolean): Promise<SseFrame[]> {
    const read: SseFrame[] = [];
    for (;;) {
      const frame = await this.next();
      read.push(frame);
      if (last(frame)) return read;
    }
  }

  close(): void {
    clearTimeout(this.deadline);
    this.controller.abort();
  }

  private parse(): void {
    for (let end = this.buffer.indexOf('\n\n'); end >= 0; end = this.buffer.indexOf('\n\n')) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const fields = new Map<string, string>();
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue; // keep-alive comment
        const colon = line.indexOf(':');
        if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
      }
      const data = fields.get('data');
      if (data === undefined) continue;
      const id = fields.get('id');
      if (id === undefined) {
        this.notices.push({ event: fields.get('event') ?? 'message', data: JSON.parse(data) as SseNotice['data'] });
        continue;
      }
      this.frames.push({
        id: Number(id),
        event: fields.get('event') ?? 'message',
        data: JSON.parse(data) as EventRecord,
      });
    }
  }
}
