import {
  byCodeUnits,
  type InstalledPackage,
  type InventoryReport,
  inventoryDigest,
  type PackageKey,
  packageKey,
  WIRE_LIMITS,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { InventoryRead } from './dpkg-inventory.js';

export interface InventoryReporterOptions {
  /** One read of the dpkg database (DpkgInventory.read in production). */
  read(): Promise<InventoryRead>;
  /**
   * Puts a message on the coordinator's socket; false when it is not connected or the agreed protocol
   * (before 3) has no inventory. Nothing is queued: the next connection's summary catches up.
   */
  send(message: InventoryReport): boolean;
  log: Logger;
}

type Known =
  | { state: 'unread' }
  | { state: 'packages'; packages: Map<string, InstalledPackage>; digest: string }
  | { state: 'unavailable'; reason: string };

/**
 * Keeps the coordinator's copy of this host's package inventory current (the exchange is described in
 * shared's inventory.ts): a summary on every connection, the whole inventory when asked, a diff after
 * every change. Reads never overlap: a change noticed during a read is read again right after it.
 */
export class InventoryReporter {
  private known: Known = { state: 'unread' };
  private seq = 0;
  private reading: Promise<void> | null = null;
  private readAgain = false;
  private stopped = false;

  constructor(private readonly options: InventoryReporterOptions) {}

  /** Reads the database again and reports what changed (the first read reports a summary). */
  refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    this.reading = this.readLoop().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  /** The coordinator welcomed this agent: tell it what we have, so it can tell whether its copy is current. */
  connected(): void {
    this.sendSummary();
  }

  /** The coordinator asked for everything (its copy is missing or out of date). */
  requested(reason: string | undefined): void {
    this.options.log.info({ reason }, 'coordinator asked for the whole package inventory');
    if (this.known.state === 'packages') this.sendFull([...this.known.packages.values()], this.known.digest);
    else this.sendSummary();
  }

  /** Waits for a read in progress; nothing is read or sent after. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.reading;
  }

  private async readLoop(): Promise<void> {
    do {
      this.readAgain = false;
      let read: InventoryRead;
      try {
        read = await this.options.read();
      } catch (err) {
        read = { available: false, reason: `reading the dpkg database failed: ${(err as Error).message}` };
      }
      if (this.stopped) return;
      this.update(read);
    } while (this.readAgain && !this.stopped);
  }

  private update(read: InventoryRead): void {
    const { log } = this.options;
    const before = this.known;
    if (!read.available) {
      if (before.state === 'unavailable' && before.reason === read.reason) return;
      log.warn({ reason: read.reason }, 'no package inventory to report');
      this.known = { state: 'unavailable', reason: read.reason };
      this.send({ type: 'inventory.unavailable', seq: this.nextSeq(), reason: read.reason });
      return;
    }
    if (read.skipped.length > 0) {
      log.warn(
        { skipped: read.skipped.length, first: read.skipped.slice(0, 3) },
        'dpkg-query listed packages that are not valid records; left out of the inventory',
      );
    }
    const packages = new Map(read.packages.map((p) => [packageKey(p), p]));
    const digest = inventoryDigest(read.packages);
    this.known = { state: 'packages', packages, digest };
    if (before.state !== 'packages') {
      // First read, or dpkg is back: the coordinator compares digests and asks for what it lacks.
      this.sendSummary();
      return;
    }
    if (before.digest === digest) return;
    const changed = read.packages.filter((p) => !samePackage(before.packages.get(packageKey(p)), p));
    const removed: PackageKey[] = [...before.packages.values()]
      .filter((p) => !packages.has(packageKey(p)))
      .map(({ name, architecture }) => ({ name, architecture }));
    log.info({ changed: changed.length, removed: removed.length }, 'installed packages changed');
    const limit = WIRE_LIMITS.inventoryPackagesPerFrame;
    if (changed.length > limit || removed.length > limit) {
      this.sendFull(read.packages, digest);
      return;
    }
    this.send({ type: 'inventory.diff', seq: this.nextSeq(), digest, count: packages.size, changed, removed });
  }

  private sendSummary(): void {
    const known = this.known;
    if (known.state === 'unread') return; // the first read sends it
    if (known.state === 'unavailable') {
      this.send({ type: 'inventory.unavailable', seq: this.nextSeq(), reason: known.reason });
      return;
    }
    this.send({ type: 'inventory.summary', seq: this.nextSeq(), digest: known.digest, count: known.packages.size });
  }

  /** Every package, sorted, in parts of one frame each, all at one `seq`. */
  private sendFull(all: readonly InstalledPackage[], digest: string): void {
    const sorted = [...all].sort((a, b) => byCodeUnits(packageKey(a), packageKey(b)));
    const size = WIRE_LIMITS.inventoryPackagesPerFrame;
    const parts = Math.max(1, Math.ceil(sorted.length / size));
    const seq = this.nextSeq();
    for (let part = 0; part < parts; part++) {
      const packages = sorted.slice(part * size, (part + 1) * size);
      const sent = this.send({ type: 'inventory.full', seq, part, parts, digest, count: sorted.length, packages });
      if (!sent) return;
    }
  }

  private send(message: InventoryReport): boolean {
    return this.options.send(message);
  }

  private nextSeq(): number {
    this.seq += 1;
    return this.seq;
  }
}

function samePackage(a: InstalledPackage | undefined, b: InstalledPackage): boolean {
  return (
    a !== undefined &&
    a.version === b.version &&
    a.source === b.source &&
    a.sourceVersion === b.sourceVersion &&
    a.status === b.status
  );
}
