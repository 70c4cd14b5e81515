/**
 * What the runner keeps of one output stream. Either end can matter: dpkg and apt put their error
 * at the end of a long transcript, a health check's verdict is in its first words.
 */
export type OutputCap =
  /** The last `maxChars` characters, as they came. */
  | { keep: 'tail'; maxChars: number }
  /** The first `maxBytes` bytes, trimmed, with a note of how many more were read and dropped. */
  | { keep: 'head'; maxBytes: number };

export interface CapturedOutput {
  push(chunk: Buffer): void;
  text(): string;
}

/** A chatty program is never stopped for talking (unlike `execFile`'s `maxBuffer`): the rest is read and dropped. */
export function captureOutput(cap: OutputCap): CapturedOutput {
  return cap.keep === 'tail' ? new TailCapture(cap.maxChars) : new HeadCapture(cap.maxBytes);
}

class TailCapture implements CapturedOutput {
  private kept = '';

  constructor(private readonly maxChars: number) {}

  push(chunk: Buffer): void {
    const next = this.kept + chunk.toString('utf8');
    this.kept = next.length > this.maxChars ? next.slice(next.length - this.maxChars) : next;
  }

  text(): string {
    return this.kept;
  }
}

class HeadCapture implements CapturedOutput {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    const room = this.maxBytes - this.kept;
    if (room > 0) {
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.chunks.push(part);
      this.kept += part.length;
    }
    this.dropped += Math.max(0, chunk.length - Math.max(0, room));
  }

  text(): string {
    const body = Buffer.concat(this.chunks).toString('utf8').trim();
    return this.dropped > 0 ? `${body}… (${this.dropped} more bytes)` : body;
  }
}
