import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type InstalledPackage,
  type InventoryReport,
  inventoryDigest,
  packageKey,
  WIRE_LIMITS,
} from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeNeeding } from '../../../test/support/requirements.js';
import { DpkgInventory, type InventoryRead, parseInventory } from '../src/inventory/dpkg-inventory.js';
import { InventoryReporter } from '../src/inventory/inventory-reporter.js';
import { StatusWatch } from '../src/inventory/status-watch.js';
import { dpkgQuery, replaceStatusFile, VULNERABLE_OPENSSL, writeStatusFile } from './support/dpkg-status.js';

const silent = pino({ level: 'silent' });

let base: string;
beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'fleetpatch-inventory-'));
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

describeNeeding([dpkgQuery], 'DpkgInventory: the real dpkg-query over a status file', () => {
  it('reports installed packages with their source and status; not the removed ones', async () => {
    await writeStatusFile(base, VULNERABLE_OPENSSL);
    const read = await new DpkgInventory({ root: base }).read();
    if (!read.available) throw new Error(read.reason);
    expect(read.skipped).toEqual([]);
    const byKey = new Map(read.packages.map((p) => [packageKey(p), p]));
    expect([...byKey.keys()].sort()).toEqual([
      'bash:amd64',
      'curl:amd64',
      'libssl3:amd64',
      'libssl3:i386',
      'openssl:amd64',
      'tzdata:all',
    ]);
    expect(byKey.get('libssl3:i386')).toEqual({
      name: 'libssl3',
      version: '3.0.14-1~deb12u2',
      architecture: 'i386',
      source: 'openssl',
      sourceVersion: '3.0.14-1~deb12u2',
      status: 'ii',
    });
    // A binNMU: the binary's version is not its source's.
    expect(byKey.get('bash:amd64')).toMatchObject({
      version: '5.2.15-2+b7',
      source: 'bash',
      sourceVersion: '5.2.15-2',
    });
    // No Source field: the package is its own source.
    expect(byKey.get('tzdata:all')).toMatchObject({ source: 'tzdata', sourceVersion: '2024a-0+deb12u1' });
    expect(byKey.get('curl:amd64')?.status).toBe('iF');
  });

  it('says so when the root has no dpkg database', async () => {
    const read = await new DpkgInventory({ root: join(base, 'nothing') }).read();
    expect(read).toEqual({
      available: false,
      reason: expect.stringMatching(/no dpkg database at .*nothing\/var\/lib\/dpkg/),
    });
  });
});

describe('parseInventory', () => {
  it('skips, and returns, a line that is no valid record instead of refusing the inventory', () => {
    const out = [
      'openssl\t3.0.15-1~deb12u1\tamd64\topenssl\t3.0.15-1~deb12u1\tii ',
      'Weird_Pkg\t1.0\tamd64\tWeird_Pkg\t1.0\tii ',
      'broken\tnot a version\tamd64\tbroken\tnot a version\tii ',
      'gone\t1.0\tamd64\tgone\t1.0\trc ',
      'held\t2.0\tamd64\theld\t2.0\thiR',
    ].join('\n');
    const { packages, skipped } = parseInventory(out);
    expect(packages.map((p) => `${p.name} ${p.status}`)).toEqual(['openssl ii', 'held hiR']);
    expect(skipped).toEqual([expect.stringContaining('Weird_Pkg'), expect.stringContaining('not a version')]);
  });
});

/** A package named `n`, version `v`, built from source `src`. */
function pkg(n: string, v = '1.0-1', src = n): InstalledPackage {
  return { name: n, version: v, architecture: 'amd64', source: src, sourceVersion: v, status: 'ii' };
}

/** A reporter over an inventory the test sets, recording every message it would send. */
function reporterOver(initial: InventoryRead) {
  let current = initial;
  let connected = true;
  const sent: InventoryReport[] = [];
  const reporter = new InventoryReporter({
    read: async () => current,
    send: (message) => {
      if (connected) sent.push(message);
      return connected;
    },
    log: silent,
  });
  return {
    reporter,
    sent,
    set(read: InventoryRead) {
      current = read;
    },
    setConnected(value: boolean) {
      connected = value;
    },
  };
}

const available = (packages: InstalledPackage[]): InventoryRead => ({ available: true, packages, skipped: [] });

describe('InventoryReporter', () => {
  it('sends a summary first, then a diff with the next seq after each change, nothing when nothing changed', async () => {
    const a = pkg('a');
    const b = pkg('b');
    const h = reporterOver(available([a, b]));
    await h.reporter.refresh();
    expect(h.sent).toEqual([{ type: 'inventory.summary', seq: 1, digest: inventoryDigest([a, b]), count: 2 }]);

    const b2 = pkg('b', '1.0-2');
    const c = pkg('c');
    h.set(available([b2, c]));
    await h.reporter.refresh();
    expect(h.sent[1]).toEqual({
      type: 'inventory.diff',
      seq: 2,
      digest: inventoryDigest([b2, c]),
      count: 2,
      changed: [b2, c],
      removed: [{ name: 'a', architecture: 'amd64' }],
    });
    await h.reporter.refresh();
    expect(h.sent).toHaveLength(2);
  });

  it('answers a request with the whole inventory, sorted, in parts of one frame each at one seq', async () => {
    const many = Array.from({ length: WIRE_LIMITS.inventoryPackagesPerFrame + 5 }, (_, i) => pkg(`p${i}`)).reverse();
    const h = reporterOver(available(many));
    await h.reporter.refresh();
    h.reporter.requested('no copy');
    const parts = h.sent.filter((m) => m.type === 'inventory.full');
    expect(parts.map((m) => [m.seq, m.part, m.parts, m.packages.length, m.count])).toEqual([
      [2, 0, 2, WIRE_LIMITS.inventoryPackagesPerFrame, many.length],
      [2, 1, 2, 5, many.length],
    ]);
    const keys = parts.flatMap((m) => m.packages.map(packageKey));
    expect(keys).toEqual([...keys].sort());
    expect(parts.every((m) => m.digest === inventoryDigest(many))).toBe(true);
  });

  it('sends a full inventory instead of a diff too big for a frame', async () => {
    const h = reporterOver(available([pkg('base')]));
    await h.reporter.refresh();
    const upgraded = Array.from({ length: WIRE_LIMITS.inventoryPackagesPerFrame + 1 }, (_, i) => pkg(`n${i}`));
    h.set(available(upgraded));
    await h.reporter.refresh();
    expect(h.sent.slice(1).map((m) => m.type)).toEqual(['inventory.full', 'inventory.full']);
  });

  it('reports unavailable, and a summary again once dpkg is back; every connection starts with a summary', async () => {
    const h = reporterOver({ available: false, reason: 'no dpkg database at /x' });
    await h.reporter.refresh();
    expect(h.sent).toEqual([{ type: 'inventory.unavailable', seq: 1, reason: 'no dpkg database at /x' }]);
    h.reporter.connected();
    expect(h.sent[1]).toMatchObject({ type: 'inventory.unavailable', seq: 2 });
    h.set(available([pkg('a')]));
    await h.reporter.refresh();
    expect(h.sent[2]).toMatchObject({ type: 'inventory.summary', seq: 3, count: 1 });
    // A change while disconnected is not queued: the next connection's summary carries it.
    h.setConnected(false);
    h.set(available([pkg('a'), pkg('b')]));
    await h.reporter.refresh();
    h.setConnected(true);
    h.reporter.connected();
    expect(h.sent.slice(3)).toEqual([
      { type: 'inventory.summary', seq: 5, digest: inventoryDigest([pkg('a'), pkg('b')]), count: 2 },
    ]);
  });

  it('never runs two reads at once: a change noticed during a read is read right after it', async () => {
    let reads = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const reporter = new InventoryReporter({
      read: async () => {
        reads++;
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 20));
        inFlight--;
        return available([pkg('a', `1.0-${reads}`)]);
      },
      send: () => true,
      log: silent,
    });
    await Promise.all([reporter.refresh(), reporter.refresh(), reporter.refresh()]);
    expect(maxInFlight).toBe(1);
    expect(reads).toBe(2);
  });
});

describeNeeding([dpkgQuery], 'StatusWatch', () => {
  it('calls back once, after the quiet time, when dpkg renames a new status file over the old one', async () => {
    await writeStatusFile(base, VULNERABLE_OPENSSL);
    let calls = 0;
    const watch = new StatusWatch({
      statusFile: join(base, 'var/lib/dpkg/status'),
      debounceMs: 200,
      maxDelayMs: 10_000,
      onChange: () => {
        calls++;
      },
      log: silent,
    });
    watch.start();
    try {
      // A dpkg run writes the database several times.
      for (let i = 0; i < 3; i++) await replaceStatusFile(base, VULNERABLE_OPENSSL.slice(i));
      await expect.poll(() => calls, { timeout: 5000 }).toBe(1);
      // Still watching the new file, not the renamed-over old one.
      await replaceStatusFile(base, VULNERABLE_OPENSSL);
      await expect.poll(() => calls, { timeout: 5000 }).toBe(2);
    } finally {
      watch.stop();
    }
  });
});
