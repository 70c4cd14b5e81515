/**
 * The coordinator's test crash points (`EngineDeps.checkpoint`) stand where their names say: the
 * end-to-end crash matrix (test/coordinator-crash.test.ts) kills the real coordinator at them, so at
 * each one the database on disk and the wire must be as a crash there would leave them. The disk is
 * read through a second connection: only what is committed is seen.
 */
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { CoordinatorCrashPoint } from '../src/engine/rollout-engine.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

interface Seen {
  point: CoordinatorCrashPoint;
  /** host-1's committed row: state and order id. */
  committed: { state: string; order_id: string | null } | undefined;
  applies: string[];
  acks: string[];
}

describe('coordinator crash points', () => {
  it('order:committed sees the order on disk and not on the wire, order:sent sees it on both, result:committed sees the result on disk before any ack', async () => {
    const seen: Seen[] = [];
    let fleet: SimulatedFleet | undefined;
    const look = (point: CoordinatorCrashPoint) => {
      if (!fleet) return;
      const disk = new Database(fleet.file, { readonly: true });
      try {
        const committed = disk.prepare('SELECT state, order_id FROM host_runs WHERE host_id = ?').get('host-1') as
          | Seen['committed']
          | undefined;
        const applies = fleet.sentOf('order.apply', 'host-1').map((s) => s.message.orderId);
        const acks = fleet.sentOf('order.ack', 'host-1').map((s) => s.message.orderId);
        seen.push({ point, committed, applies, acks });
      } finally {
        disk.close();
      }
    };
    fleet = await SimulatedFleet.open({ checkpoint: look });
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    const orderId = (await fleet.run(id, 'host-1')).orderId;
    await fleet.finish('host-1');

    expect(seen).toEqual([
      { point: 'order:committed', committed: { state: 'dispatched', order_id: orderId }, applies: [], acks: [] },
      { point: 'order:sent', committed: { state: 'dispatched', order_id: orderId }, applies: [orderId], acks: [] },
      { point: 'result:committed', committed: { state: 'healthy', order_id: orderId }, applies: [orderId], acks: [] },
    ]);
    expect(fleet.sentOf('order.ack', 'host-1').map((s) => s.message.orderId)).toEqual([orderId]);
  });
});
