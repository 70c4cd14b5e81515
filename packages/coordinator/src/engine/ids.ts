import { randomFillSync } from 'node:crypto';

/** Sortable, unguessable ids: `<prefix>_<time base36><12 random hex>`. */
export function newId(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}${randomHex()}`;
}

/**
 * 6 random bytes as hex, drawn from a pool filled 256 ids at a time: a call into the system's random
 * source per id (an order id for every host dispatched) cost more than building the rest of the order.
 * The bytes are as unpredictable as before; only the calls are fewer.
 */
function randomHex(): string {
  if (poolAt >= POOL.byteLength) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  poolAt += ID_BYTES;
  return POOL.toString('hex', poolAt - ID_BYTES, poolAt);
}
const ID_BYTES = 6;
const POOL = Buffer.alloc(ID_BYTES * 256);
let poolAt = POOL.byteLength;
