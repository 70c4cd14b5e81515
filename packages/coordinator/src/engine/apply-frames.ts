import type { CoordinatorMessage, OrderApply } from '@fleetpatch/shared';

/** What every host of a batch is sent alike: its `order.apply` but for the order id. */
export type ApplyBody = Omit<OrderApply, 'type' | 'orderId'>;

/** Each prepared message's shared half: `,"rolloutId":…}` as UTF-8, the same buffer for the whole batch. */
const tails = new WeakMap<OrderApply, Buffer>();
const HEAD = Buffer.from('{"type":"order.apply","orderId":');

/**
 * The `order.apply` messages of one batch of hosts, their shared part serialized once. A file
 * change's content (up to 1 MiB), its health checks and a signed statement are the same for every
 * host of a batch; only the order id differs. Serialized per host, a wave of 10,000 turned the same
 * megabyte into JSON and UTF-8 10,000 times; here a host's frame is its order id between two halves
 * made once (`writeMessage`). The messages are ordinary, frozen `OrderApply` objects (a group's outbox and
 * the tests' channels read them as such), and their frame is byte for byte `JSON.stringify` of them.
 */
export function applyOrders(body: ApplyBody): (orderId: string) => OrderApply {
  const json = JSON.stringify(body);
  const tail = Buffer.from(json === '{}' ? '}' : `,${json.slice(1)}`);
  return (orderId) => {
    const message: OrderApply = Object.freeze({ type: 'order.apply', orderId, ...body });
    tails.set(message, tail);
    return message;
  };
}

/**
 * Past this size a prepared frame goes as two WebSocket fragments, its order id and the shared
 * half, so that the shared half is never copied: putting the two together costs a fresh buffer per
 * host, about a millisecond for a megabyte. Below it, one frame: a fragment more costs a write more.
 */
export const FRAGMENT_AT_BYTES = 16 * 1024;

/** Where a message is written: a `ws` WebSocket. */
export interface FrameSink {
  send(data: string | Buffer, options: { binary: boolean; fin: boolean }): void;
}

/**
 * Writes a coordinator message as one text message: a prepared `order.apply` from its halves, any
 * other serialized. Both fragments are written in the same turn, so nothing else comes between them.
 */
export function writeMessage(socket: FrameSink, message: CoordinatorMessage): void {
  const tail = message.type === 'order.apply' ? tails.get(message) : undefined;
  if (message.type !== 'order.apply' || tail === undefined) {
    socket.send(JSON.stringify(message), { binary: false, fin: true });
    return;
  }
  const head = Buffer.concat([HEAD, Buffer.from(JSON.stringify(message.orderId))]);
  if (tail.length < FRAGMENT_AT_BYTES) {
    socket.send(Buffer.concat([head, tail]), { binary: false, fin: true });
    return;
  }
  socket.send(head, { binary: false, fin: false });
  socket.send(tail, { binary: false, fin: true });
}
