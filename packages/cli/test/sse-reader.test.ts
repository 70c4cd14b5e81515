import { describe, expect, it } from 'vitest';
import { readServerSentEvents, SseParser } from '../src/sse-reader.js';

describe('SseParser', () => {
  it('splits messages on blank lines, whatever the chunk boundaries and line endings', () => {
    const text =
      ': keep-alive\n\nid: 1\nevent: rollout.started\ndata: {"seq":1}\n\nid: 2\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const parser = new SseParser();
      const messages = [...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut))];
      expect(messages).toEqual([
        { id: '1', event: 'rollout.started', data: '{"seq":1}' },
        { id: '2', event: 'x', data: 'a\nb' },
      ]);
    }
  });

  it('gives a message without an id: line no id, whatever came before it (a notice is not an audit event)', () => {
    const parser = new SseParser();
    const messages = parser.push(
      'id: 5\nevent: rollout.created\ndata: {"seq":5}\n\nevent: hosts.changed\ndata: {"changes":2}\n\nevent: host.progress\ndata: {}\n\nid: 6\nevent: wave.started\ndata: {"seq":6}\n\n',
    );
    expect(messages.map((m) => [m.id, m.event])).toEqual([
      ['5', 'rollout.created'],
      [null, 'hosts.changed'],
      [null, 'host.progress'],
      ['6', 'wave.started'],
    ]);
  });

  it('reads a byte stream to the end', async () => {
    async function* body() {
      yield new TextEncoder().encode('id: 7\ndata: {"seq":7}\n');
      yield new TextEncoder().encode('\n');
    }
    const messages = [];
    for await (const m of readServerSentEvents(body())) messages.push(m);
    expect(messages).toEqual([{ id: '7', event: 'message', data: '{"seq":7}' }]);
  });
});
