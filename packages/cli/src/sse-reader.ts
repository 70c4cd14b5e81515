/** One Server-Sent Event as the coordinator sends it: `id:` is the event's seq, `data:` its JSON. */
export interface SseMessage {
  /**
   * The message's own `id:` line; null for one without (a host's phase, a `hosts.changed` notice). Not
   * the WHATWG "last event ID", which an id-less message inherits from the one before: a reader must
   * tell an audit event from a notice, and resumes from the seq of the last audit event it read.
   */
  id: string | null;
  event: string;
  data: string;
}

/**
 * Parses a text/event-stream body into messages (the WHATWG framing: fields per line, a blank line
 * ends a message, `:` lines are comments such as keep-alives).
 */
export async function* readServerSentEvents(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for await (const chunk of body) {
    yield* parser.push(decoder.decode(chunk, { stream: true }));
  }
  yield* parser.push(`${decoder.decode()}\n\n`);
}

/** Incremental parser; exported for unit tests that feed it arbitrary chunk boundaries. */
export class SseParser {
  private buffer = '';
  private id: string | null = null;
  private event = '';
  private data: string[] = [];

  push(text: string): SseMessage[] {
    this.buffer += text;
    const messages: SseMessage[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      // A lone trailing \r may be the first half of \r\n: wait for the next chunk.
      if (!match || (match[0] === '\r' && match.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const message = this.line(line);
      if (message) messages.push(message);
    }
    return messages;
  }

  private line(line: string): SseMessage | undefined {
    if (line === '') {
      if (this.data.length === 0 && this.event === '') return undefined;
      const message = { id: this.id, event: this.event || 'message', data: this.data.join('\n') };
      this.id = null;
      this.event = '';
      this.data = [];
      return message;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id') this.id = value;
    return undefined;
  }
}
