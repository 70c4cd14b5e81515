/**
 * When each agent was last seen: written on heartbeats (at most every 30 s) and when it goes, in
 * batches, against a real SQLite store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentPresence } from '../src/agents/agent-presence.js';
import { Store } from '../src/store/store.js';
import { FakeClock } from './support/fake-clock.js';

let dir: string;
let store: Store;
let clock: FakeClock;
let transactions: number;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetpatch-presence-'));
  store = await Store.open(join(dir, 'fleetpatch.db'));
  clock = new FakeClock(Date.parse('2026-12-05T10:00:00Z'));
  transactions = 0;
  store.observeTransactions(() => transactions++);
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const enroll = async (ids: readonly string[]) => {
  for (const id of ids)
    await store.agents.enroll({ id, publicKey: 'k'.repeat(43), labels: {}, mayReplace: false }, '2026-12-01T00:00:00Z');
};

describe('agent presence', () => {
  it('writes the last_seen of a whole fleet that drops at once in one transaction', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `web-${i}`);
    await enroll(ids);
    const presence = new AgentPresence(store, clock);
    const before = transactions;
    await Promise.all(ids.map((id) => presence.disconnected(id)));
    expect(transactions - before).toBe(1);
    for (const id of ids) expect((await store.agents.get(id))?.lastSeenAt).toBe('2026-12-05T10:00:00.000Z');
  });

  it('keeps the latest time when an agent is seen twice before the write, and resolves only once it is committed', async () => {
    await enroll(['web-1']);
    const presence = new AgentPresence(store, clock);
    const first = presence.disconnected('web-1');
    clock.ms += 5_000;
    const second = presence.disconnected('web-1');
    await Promise.all([first, second]);
    expect((await store.agents.get('web-1'))?.lastSeenAt).toBe('2026-12-05T10:00:05.000Z');
  });

  it('writes a heartbeat at most every 30 s per agent, and at once again after a disconnect', async () => {
    await enroll(['web-1']);
    const presence = new AgentPresence(store, clock, 5);
    await presence.seen('web-1');
    const afterFirst = transactions;
    clock.ms += 10_000;
    await presence.seen('web-1');
    expect(transactions).toBe(afterFirst);
    expect((await store.agents.get('web-1'))?.lastSeenAt).toBe('2026-12-05T10:00:00.000Z');
    clock.ms += 1_000;
    await presence.disconnected('web-1');
    await presence.seen('web-1');
    expect((await store.agents.get('web-1'))?.lastSeenAt).toBe('2026-12-05T10:00:11.000Z');
    expect(transactions).toBe(afterFirst + 2);
  });

  it('holds heartbeats that come turns of the loop apart for one transaction, which flush writes at once', async () => {
    const ids = ['web-1', 'web-2', 'web-3'];
    await enroll(ids);
    const presence = new AgentPresence(store, clock, 60_000);
    const writes: Promise<void>[] = [];
    for (const id of ids) {
      writes.push(presence.seen(id));
      // What a heartbeat's frame is apart from the next: the batch once started here, one commit each.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(transactions).toBe(0);
    await presence.flush();
    await Promise.all(writes);
    expect(transactions).toBe(1);
    for (const id of ids) expect((await store.agents.get(id))?.lastSeenAt).toBe('2026-12-05T10:00:00.000Z');
  });

  it('writes the heartbeats waiting for company with the next disconnect, in its transaction', async () => {
    await enroll(['web-1', 'web-2']);
    const presence = new AgentPresence(store, clock, 60_000);
    const heartbeat = presence.seen('web-1');
    clock.ms += 2_000;
    await Promise.all([heartbeat, presence.disconnected('web-2')]);
    expect(transactions).toBe(1);
    expect((await store.agents.get('web-1'))?.lastSeenAt).toBe('2026-12-05T10:00:00.000Z');
    expect((await store.agents.get('web-2'))?.lastSeenAt).toBe('2026-12-05T10:00:02.000Z');
  });

  it('writes nothing for an agent the store does not know, and flush waits for writes in flight', async () => {
    await enroll(['web-1']);
    const presence = new AgentPresence(store, clock);
    void presence.disconnected('gone-1');
    void presence.disconnected('web-1');
    await presence.flush();
    expect((await store.agents.get('web-1'))?.lastSeenAt).toBe('2026-12-05T10:00:00.000Z');
    expect(await store.agents.get('gone-1')).toBeUndefined();
    await presence.flush();
  });
});
