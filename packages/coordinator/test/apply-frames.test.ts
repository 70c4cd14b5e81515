/**
 * A batch's `order.apply` messages, their shared part serialized once: each host's frame must be
 * exactly what serializing its message would give, whatever the content holds.
 */
import {
  type CoordinatorMessage,
  CoordinatorMessageSchema,
  type OrderApply,
  OrderApplySchema,
} from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import {
  type ApplyBody,
  applyOrders,
  FRAGMENT_AT_BYTES,
  type FrameSink,
  writeMessage,
} from '../src/engine/apply-frames.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

// Through the schema, as the engine's orders are: every default filled in.
const {
  type: _type,
  orderId: _orderId,
  ...BASE
} = OrderApplySchema.parse({
  type: 'order.apply',
  orderId: 'ord_0',
  rolloutId: 'ro_1',
  patchId: 'pat_1',
  change: SAMPLE_PATCH_SPEC.change,
  health: { checks: [] },
});

const withContent = (content: string): ApplyBody => ({
  ...BASE,
  change: { ...BASE.change, content } as ApplyBody['change'],
});

/** What `writeMessage` wrote: each fragment, and the message they make once put together. */
function written(message: CoordinatorMessage): { fragments: number; text: string } {
  const parts: Buffer[] = [];
  let ended = 0;
  const sink: FrameSink = {
    send(data, options) {
      expect(options.binary).toBe(false);
      parts.push(Buffer.from(data));
      if (options.fin) ended++;
    },
  };
  writeMessage(sink, message);
  expect(ended).toBe(1);
  return { fragments: parts.length, text: Buffer.concat(parts).toString('utf8') };
}

describe('apply frames', () => {
  it.each<[string, ApplyBody]>([
    ['a small file', BASE],
    ['quotes, backslashes, control characters and a line separator', withContent('a "b" \\c\u0001\n\t\u2028 end')],
    ['multi-byte text and an emoji', withContent('größe = 8 🚀 日本\n')],
    ['half a megabyte', withContent('x = 1\n'.repeat(90_000))],
    [
      'a rehearsal and a signed statement',
      { ...BASE, rehearseRevert: true, signed: { statement: { a: 1 }, signatures: [] } } as unknown as ApplyBody,
    ],
    ['optional fields left undefined', { ...BASE, failIfUnhealthyBefore: undefined } as unknown as ApplyBody],
  ])('%s: every host’s frame is byte for byte its message serialized', (_name, body) => {
    const orderFor = applyOrders(body);
    for (const orderId of ['ord_1', 'ord_"quoted"', 'ord_ü']) {
      const message = orderFor(orderId);
      expect(message).toEqual({ type: 'order.apply', orderId, ...body });
      const { fragments, text } = written(message);
      expect(text).toBe(JSON.stringify(message));
      expect(fragments).toBe(text.length > FRAGMENT_AT_BYTES ? 2 : 1);
    }
  });

  it('a frame parses back into the order the agent is meant to get', () => {
    const message = applyOrders(withContent('größe = 8 🚀\n'))('ord_42');
    const parsed = CoordinatorMessageSchema.parse(JSON.parse(written(message).text));
    expect(parsed).toEqual(message);
  });

  it('hosts of a batch differ only by their order id; the messages are frozen, so a frame never goes stale', () => {
    const orderFor = applyOrders(BASE);
    const [a, b] = [orderFor('ord_a'), orderFor('ord_b')];
    expect(written(a).text.replace('ord_a', 'ord_b')).toBe(written(b).text);
    expect(Object.isFrozen(a)).toBe(true);
    expect(() => {
      (a as { orderId: string }).orderId = 'ord_other';
    }).toThrow(TypeError);
  });

  it('serializes any other message, and a copy of a prepared one, as it is', () => {
    const prepared = applyOrders(BASE)('ord_1');
    const copy: OrderApply = { ...prepared, bakeSeconds: 60 };
    expect(written(copy).text).toBe(JSON.stringify(copy));
    expect(written({ type: 'order.ack', orderId: 'ord_1' }).text).toBe('{"type":"order.ack","orderId":"ord_1"}');
  });

  it('over a real WebSocket, a large order in two fragments arrives as one text message, between two others', async () => {
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as { port: number };
    const client = new WebSocket(`ws://127.0.0.1:${port}`);
    try {
      const received: { text: string; isBinary: boolean }[] = [];
      const all = new Promise<void>((resolve) =>
        client.on('message', (data, isBinary) => {
          received.push({ text: String(data), isBinary });
          if (received.length === 3) resolve();
        }),
      );
      const [socket] = await new Promise<WebSocket[]>((resolve) => server.once('connection', (s) => resolve([s])));
      const large = applyOrders(withContent('größe = 8\n'.repeat(40_000)))('ord_large');
      const ack = { type: 'order.ack', orderId: 'ord_0' } as const;
      writeMessage(socket as WebSocket, ack);
      writeMessage(socket as WebSocket, large);
      writeMessage(socket as WebSocket, ack);
      await all;
      expect(received.map((r) => r.isBinary)).toEqual([false, false, false]);
      expect(received.map((r) => r.text)).toEqual([JSON.stringify(ack), JSON.stringify(large), JSON.stringify(ack)]);
    } finally {
      client.terminate();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
