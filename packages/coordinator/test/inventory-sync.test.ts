/**
 * The coordinator's copy of each host's inventory, against a real SQLite store: the repository's
 * normalized writes and reads, and the sync that applies an agent's reports only when they add up
 * (summary digests, diffs in sequence leading to the agent's digest, full inventories in order) and
 * otherwise asks for everything again — a few agents at a time.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CoordinatorMessage,
  type InstalledPackage,
  type InventoryFull,
  type InventoryReport,
  inventoryDigest,
  WIRE_LIMITS,
} from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InventorySync, UNASKED_FULL_INTERVAL_MS } from '../src/inventory/inventory-sync.js';
import { Store } from '../src/store/store.js';
import { FakeClock } from './support/fake-clock.js';
import { binary, FIXED, opensslHost, VULNERABLE } from './support/sample-inventory.js';

let dir: string;
let store: Store;
const clock = new FakeClock(Date.parse('2030-01-07T12:00:00Z'));
const at = () => new Date(clock.now()).toISOString();

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetpatch-inventory-'));
  store = await Store.open(join(dir, 'fleetpatch.db'));
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function enroll(...ids: string[]): Promise<void> {
  for (const id of ids)
    await store.agents.enroll({ id, publicKey: 'A'.repeat(43), labels: {}, mayReplace: false }, at());
}

describe('InventoryRepository', () => {
  it('stores each distinct package version once, however many hosts have it', async () => {
    await enroll('h1', 'h2');
    await store.transaction(async () => {
      await store.inventory.replace('h1', opensslHost(VULNERABLE), inventoryDigest(opensslHost(VULNERABLE)), at());
      await store.inventory.replace('h2', opensslHost(FIXED), inventoryDigest(opensslHost(FIXED)), at());
    });
    expect(store.db.prepare('SELECT COUNT(*) FROM package_versions').pluck().get()).toBe(6);
    expect(store.db.prepare('SELECT COUNT(*) FROM host_packages').pluck().get()).toBe(8);
    expect(
      (await store.inventory.versions({ source: 'openssl' })).map((v) => `${v.name} ${v.version} ${v.hosts}`).sort(),
    ).toEqual([`libssl3 ${VULNERABLE} 1`, `libssl3 ${FIXED} 1`, `openssl ${VULNERABLE} 1`, `openssl ${FIXED} 1`]);
    expect(await store.inventory.versions({ name: 'bash' })).toEqual([
      { ...binary('bash', '5.2.15-2+b7', { sourceVersion: '5.2.15-2' }), hosts: 2 },
    ]);
    expect((await store.inventory.binariesOfSource('openssl')).get('h1')).toHaveLength(2);
  });

  it('a diff replaces a package of the same name and architecture and returns the digest it leads to', async () => {
    await enroll('h1');
    const before = opensslHost(VULNERABLE);
    await store.transaction(async () => await store.inventory.replace('h1', before, inventoryDigest(before), at()));
    const after = [...opensslHost(FIXED).slice(0, 2), before[2] as InstalledPackage];
    const reached = await store.transaction(
      async () =>
        await store.inventory.applyDiff(
          'h1',
          {
            changed: opensslHost(FIXED).slice(0, 2),
            removed: [{ name: 'tzdata', architecture: 'all' }],
            count: 3,
            digest: inventoryDigest(after),
          },
          at(),
        ),
    );
    expect(reached).toBe(inventoryDigest(after));
    expect(await store.inventory.packagesOf('h1')).toHaveLength(3);
    expect(await store.inventory.get('h1')).toMatchObject({ state: 'reported', packageCount: 3 });
  });

  it('undoes a diff that does not lead to the agent’s digest, the versions it added to the dictionary too', async () => {
    await enroll('h1');
    const before = opensslHost(VULNERABLE);
    await store.transaction(async () => await store.inventory.replace('h1', before, inventoryDigest(before), at()));
    const stored = await store.inventory.get('h1');
    const versions = () => store.db.prepare('SELECT COUNT(*) FROM package_versions').pluck().get() as number;
    const known = versions();
    const curl = binary('curl', '7.88.1-10+deb12u5');
    const after = [...before, curl];
    // The agent says it adds curl and ends at `after`, but names another digest (its copy was not this one).
    const reached = await store.transaction(
      async () =>
        await store.inventory.applyDiff(
          'h1',
          { changed: [curl], removed: [], count: after.length, digest: inventoryDigest(opensslHost(FIXED)) },
          at(),
        ),
    );
    expect(reached).toBe(inventoryDigest(after));
    expect(await store.inventory.get('h1')).toEqual(stored);
    expect(inventoryDigest(await store.inventory.packagesOf('h1'))).toBe(inventoryDigest(before));
    expect(versions()).toBe(known);
    // The same change with the right digest lands: curl's version is written again, not looked up from before.
    const landed = await store.transaction(
      async () =>
        await store.inventory.applyDiff(
          'h1',
          { changed: [curl], removed: [], count: after.length, digest: inventoryDigest(after) },
          at(),
        ),
    );
    expect(landed).toBe(inventoryDigest(after));
    expect(inventoryDigest(await store.inventory.packagesOf('h1'))).toBe(inventoryDigest(after));
    expect(versions()).toBe(known + 1);
  });

  it('unavailable drops the packages and keeps the reason', async () => {
    await enroll('h1');
    await store.transaction(
      async () => await store.inventory.replace('h1', opensslHost(VULNERABLE), 'd'.repeat(64), at()),
    );
    await store.transaction(
      async () => await store.inventory.markUnavailable('h1', 'no dpkg database at /var/lib/dpkg', at()),
    );
    expect(await store.inventory.get('h1')).toMatchObject({
      state: 'unavailable',
      reason: 'no dpkg database at /var/lib/dpkg',
    });
    expect(await store.inventory.packagesOf('h1')).toEqual([]);
  });
});

/** A sync over the test's store whose `inventory.request`s are recorded (and "delivered" unless `offline`). */
function syncUnderTest(options: { maxFullRequests?: number; offline?: Set<string> } = {}) {
  const requests: { agentId: string; message: CoordinatorMessage }[] = [];
  const sync = new InventorySync({
    store,
    channel: {
      send: (agentId, message) => {
        if (options.offline?.has(agentId)) return false;
        requests.push({ agentId, message });
        return true;
      },
    },
    clock,
    log: pino({ level: 'silent' }),
    ...(options.maxFullRequests ? { maxFullRequests: options.maxFullRequests } : {}),
  });
  /**
   * A new connection whose summary matches nothing stored, so the sync asks it for its full inventory
   * (it takes one only when asked); that request is not kept in `requests`.
   */
  const connect = async (agentId: string) => {
    sync.agentConnected(agentId);
    await sync.onReport(agentId, { type: 'inventory.summary', seq: 0, digest: '0'.repeat(64), count: 0 });
    const asked = requests.findIndex((r) => r.agentId === agentId && r.message.type === 'inventory.request');
    if (asked < 0) throw new Error(`${agentId} was not asked for its inventory`);
    requests.splice(asked, 1);
  };
  /** Hands `reports` to the sync and writes what it accepted (it would on the next turn of the event loop). */
  const deliver = async (agentId: string, ...reports: InventoryReport[]) => {
    for (const report of reports) await sync.onReport(agentId, report);
    await sync.flush();
  };
  return { sync, requests, deliver, connect };
}

function fullOf(
  packages: InstalledPackage[],
  seq: number,
  partSize: number = WIRE_LIMITS.inventoryPackagesPerFrame,
): InventoryFull[] {
  const parts = Math.max(1, Math.ceil(packages.length / partSize));
  return Array.from({ length: parts }, (_, part) => ({
    type: 'inventory.full' as const,
    seq,
    part,
    parts,
    digest: inventoryDigest(packages),
    count: packages.length,
    packages: packages.slice(part * partSize, (part + 1) * partSize),
  }));
}

describe('InventorySync', () => {
  it('asks for everything when it holds nothing, stores the full inventory, then applies diffs in sequence', async () => {
    await enroll('h1');
    const { sync, requests, deliver } = syncUnderTest();
    const v1 = opensslHost(VULNERABLE);
    sync.agentConnected('h1');
    await sync.onReport('h1', { type: 'inventory.summary', seq: 1, digest: inventoryDigest(v1), count: v1.length });
    expect(requests).toEqual([
      { agentId: 'h1', message: { type: 'inventory.request', reason: 'no inventory stored yet' } },
    ]);
    expect(sync.isCurrent('h1')).toBe(false);
    await deliver('h1', ...fullOf(v1, 2));
    expect(sync.isCurrent('h1')).toBe(true);
    expect((await store.inventory.get('h1'))?.digest).toBe(inventoryDigest(v1));

    const v2 = opensslHost(FIXED);
    await deliver('h1', {
      type: 'inventory.diff',
      seq: 3,
      digest: inventoryDigest(v2),
      count: v2.length,
      changed: v2.slice(0, 2),
      removed: [],
    });
    expect(sync.isCurrent('h1')).toBe(true);
    expect((await store.inventory.get('h1'))?.digest).toBe(inventoryDigest(v2));
    expect(requests).toHaveLength(1);
  });

  it('takes a matching summary as confirmation: no request, the copy is current', async () => {
    await enroll('h1');
    const v1 = opensslHost(VULNERABLE);
    await store.transaction(
      async () => await store.inventory.replace('h1', v1, inventoryDigest(v1), '2030-01-01T00:00:00.000Z'),
    );
    const { sync, requests } = syncUnderTest();
    sync.agentConnected('h1');
    await sync.onReport('h1', { type: 'inventory.summary', seq: 1, digest: inventoryDigest(v1), count: v1.length });
    expect(requests).toEqual([]);
    expect(sync.isCurrent('h1')).toBe(true);
    expect((await store.inventory.get('h1'))?.confirmedAt).toBe(at());
  });

  it('refuses a diff out of sequence, or one that does not lead to the agent’s digest, and asks for everything', async () => {
    await enroll('h1', 'h2');
    const v1 = opensslHost(VULNERABLE);
    const { sync, requests, deliver, connect } = syncUnderTest();
    for (const id of ['h1', 'h2']) {
      await connect(id);
      await deliver(id, ...fullOf(v1, 1));
    }
    const v2 = opensslHost(FIXED);
    const diff = {
      type: 'inventory.diff' as const,
      digest: inventoryDigest(v2),
      count: 4,
      changed: v2.slice(0, 2),
      removed: [],
    };
    // h1 missed seq 2.
    await sync.onReport('h1', { ...diff, seq: 3 });
    // h2's diff is in sequence but claims a result it does not lead to (it leaves out libssl3).
    await deliver('h2', { ...diff, seq: 2, changed: v2.slice(0, 1) });
    expect(requests.map((r) => [r.agentId, r.message])).toEqual([
      ['h1', { type: 'inventory.request', reason: 'an inventory diff was missed' }],
      ['h2', { type: 'inventory.request', reason: 'the stored inventory differs from the agent’s after a diff' }],
    ]);
    expect(sync.isCurrent('h1')).toBe(false);
    expect(sync.isCurrent('h2')).toBe(false);
    // Neither stored copy is touched: h1's diff was refused, h2's undone once it missed the digest.
    for (const id of ['h1', 'h2']) {
      expect((await store.inventory.get(id))?.digest).toBe(inventoryDigest(v1));
      expect(inventoryDigest(await store.inventory.packagesOf(id))).toBe(inventoryDigest(v1));
    }
    // The full inventories asked for bring both back.
    for (const id of ['h1', 'h2']) await deliver(id, ...fullOf(v2, 9));
    expect(sync.isCurrent('h1') && sync.isCurrent('h2')).toBe(true);
  });

  it('lets no late diff of one coordinator spoil the copy another coordinator of the group stored since', async () => {
    await enroll('h1');
    const v1 = opensslHost(VULNERABLE);
    const v2 = opensslHost(FIXED);
    const v3 = [...v2, binary('curl', '7.88.1-10+deb12u5')];
    // Two coordinators of a group on one store: h1 reports to `a`, which accepts a diff (v1 → v2) and
    // would write it on the next turn; meanwhile h1 goes over to `b` and sends its whole inventory (v3).
    const a = syncUnderTest();
    const b = syncUnderTest();
    await a.connect('h1');
    await a.deliver('h1', ...fullOf(v1, 1));
    await a.sync.onReport('h1', {
      type: 'inventory.diff',
      seq: 2,
      digest: inventoryDigest(v2),
      count: v2.length,
      changed: v2.slice(0, 2),
      removed: [],
    });
    a.sync.agentGone('h1');
    await b.connect('h1');
    await b.deliver('h1', ...fullOf(v3, 1));
    expect(b.sync.isCurrent('h1')).toBe(true);
    // Now `a` writes the diff it held: on v3 it leads elsewhere than v2, and is undone.
    await a.sync.flush();
    expect((await store.inventory.get('h1'))?.digest).toBe(inventoryDigest(v3));
    expect(inventoryDigest(await store.inventory.packagesOf('h1'))).toBe(inventoryDigest(v3));
    expect(b.sync.isCurrent('h1')).toBe(true);
    // `a` no longer holds h1: it asks it for nothing.
    expect(a.requests).toEqual([]);
  });

  it('assembles a full inventory from its parts, and starts over when a part is missing', async () => {
    await enroll('h1');
    const many = Array.from({ length: 25 }, (_, i) => binary(`pkg${i}`, '1.0-1'));
    const { sync, requests, deliver, connect } = syncUnderTest();
    await connect('h1');
    const parts = fullOf(many, 1, 10);
    expect(parts).toHaveLength(3);
    await sync.onReport('h1', parts[0] as InventoryFull);
    await sync.onReport('h1', parts[2] as InventoryFull);
    expect(requests.map((r) => r.message)).toEqual([
      { type: 'inventory.request', reason: 'a part of the full inventory was missing or out of order' },
    ]);
    expect(await store.inventory.get('h1')).toBeUndefined();
    await deliver('h1', ...fullOf(many, 2, 10));
    expect(await store.inventory.packagesOf('h1')).toHaveLength(25);
    expect(sync.isCurrent('h1')).toBe(true);
  });

  it('takes a full inventory nobody asked for (an agent sends one after a change too large for a diff), one a minute', async () => {
    await enroll('h1');
    const v1 = opensslHost(VULNERABLE);
    const v2 = opensslHost(FIXED);
    const { sync, requests, deliver } = syncUnderTest();
    sync.agentConnected('h1');
    await deliver('h1', ...fullOf(v1, 1));
    expect((await store.inventory.get('h1'))?.digest).toBe(inventoryDigest(v1));
    expect(sync.isCurrent('h1')).toBe(true);
    // A second one within the minute is dropped, every part of it (here two), without asking for
    // anything; and the copy is no longer taken as current.
    clock.ms += UNASKED_FULL_INTERVAL_MS - 1;
    const parts = fullOf(v2, 2, 2);
    expect(parts.length).toBeGreaterThan(1);
    await deliver('h1', ...parts);
    expect((await store.inventory.get('h1'))?.digest).toBe(inventoryDigest(v1));
    expect(sync.isCurrent('h1')).toBe(false);
    // Once the minute is over, the next is taken.
    clock.ms += 1;
    await deliver('h1', ...fullOf(v2, 3));
    expect((await store.inventory.get('h1'))?.digest).toBe(inventoryDigest(v2));
    expect(sync.isCurrent('h1')).toBe(true);
    expect(requests).toEqual([]);
  });

  it('does not store a full inventory that does not match its own digest', async () => {
    await enroll('h1');
    const { sync, connect } = syncUnderTest();
    await connect('h1');
    const [part] = fullOf(opensslHost(VULNERABLE), 1);
    await sync.onReport('h1', { ...(part as InventoryFull), digest: 'f'.repeat(64) });
    expect(await store.inventory.get('h1')).toBeUndefined();
    expect(sync.isCurrent('h1')).toBe(false);
  });

  it('asks at most maxFullRequests agents at once; the next is asked as one answers or leaves', async () => {
    await enroll('a', 'b', 'c', 'd');
    const { sync, requests, deliver } = syncUnderTest({ maxFullRequests: 2 });
    const v1 = opensslHost(VULNERABLE);
    for (const id of ['a', 'b', 'c', 'd']) {
      sync.agentConnected(id);
      await sync.onReport(id, { type: 'inventory.summary', seq: 1, digest: inventoryDigest(v1), count: 4 });
    }
    expect(requests.map((r) => r.agentId)).toEqual(['a', 'b']);
    await deliver('a', ...fullOf(v1, 2));
    expect(requests.map((r) => r.agentId)).toEqual(['a', 'b', 'c']);
    sync.agentGone('b');
    expect(requests.map((r) => r.agentId)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('writes what it accepted in one batch, in order: a diff right behind a full inventory is applied on it', async () => {
    await enroll('h1', 'h2');
    const { sync, requests, connect } = syncUnderTest();
    const v1 = opensslHost(VULNERABLE);
    const v2 = opensslHost(FIXED);
    for (const id of ['h1', 'h2']) await connect(id);
    for (const id of ['h1', 'h2']) for (const part of fullOf(v1, 1)) await sync.onReport(id, part);
    await sync.onReport('h1', {
      type: 'inventory.diff',
      seq: 2,
      digest: inventoryDigest(v2),
      count: 4,
      changed: v2.slice(0, 2),
      removed: [],
    });
    expect(sync.isCurrent('h1')).toBe(false);
    expect(await store.inventory.get('h1')).toBeUndefined();
    await sync.flush();
    expect((await store.inventory.get('h1'))?.digest).toBe(inventoryDigest(v2));
    expect((await store.inventory.get('h2'))?.digest).toBe(inventoryDigest(v1));
    expect(sync.isCurrent('h1') && sync.isCurrent('h2')).toBe(true);
    expect(requests).toEqual([]);
  });

  it('records an agent with no dpkg database as unavailable, which is current', async () => {
    await enroll('h1');
    const { sync, requests } = syncUnderTest();
    sync.agentConnected('h1');
    await sync.onReport('h1', { type: 'inventory.unavailable', seq: 1, reason: 'no dpkg database at /var/lib/dpkg' });
    expect(sync.isCurrent('h1')).toBe(false); // accepted, not written yet
    await sync.flush();
    expect(requests).toEqual([]);
    expect(sync.isCurrent('h1')).toBe(true);
    expect(await store.inventory.get('h1')).toMatchObject({ state: 'unavailable' });
  });
});
