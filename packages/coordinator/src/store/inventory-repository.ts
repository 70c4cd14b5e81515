import {
  type InstalledBinary,
  type InstalledPackage,
  inventoryDigest,
  type PackageKey,
  type PackageVersionCount,
} from '@fleetpatch/shared';
import type { Db } from './database.js';

/** What the coordinator holds of one host's inventory, besides the packages themselves. */
export interface HostInventoryRecord {
  hostId: string;
  /** `reported`: packages follow; `unavailable`: the agent said it has none to give, and why. */
  state: 'reported' | 'unavailable';
  reason: string | null;
  digest: string | null;
  packageCount: number;
  /** When the content last changed. */
  reportedAt: string;
  /** When the agent last confirmed it. */
  confirmedAt: string;
}

/** A registered host as compliance needs it: its credential, when it was seen, and its inventory if any. */
export interface HostInventoryState {
  hostId: string;
  revokedAt: string | null;
  lastSeenAt: string | null;
  inventory: HostInventoryRecord | undefined;
}

export interface InventoryRow {
  id: number;
  host_id: string;
  state: 'reported' | 'unavailable';
  reason: string | null;
  digest: string | null;
  package_count: number;
  reported_at: string;
  confirmed_at: string;
}

export interface PackageRow {
  name: string;
  architecture: string;
  version: string;
  source: string;
  source_version: string;
  status: string;
}

/** What `applyDiff` writes: the agent's diff, and the count and digest it says the inventory has after it. */
export interface InventoryDiffWrite {
  changed: readonly InstalledPackage[];
  removed: readonly PackageKey[];
  count: number;
  digest: string;
}

/** A diff whose writes lead to another digest than the agent's: thrown to undo them (see `applyDiff`). */
class DiffMissed extends Error {
  constructor(readonly reached: string) {
    super(`the diff leads to ${reached}`);
  }
}

export const toRecord = (row: InventoryRow): HostInventoryRecord => ({
  hostId: row.host_id,
  state: row.state,
  reason: row.reason,
  digest: row.digest,
  packageCount: row.package_count,
  reportedAt: row.reported_at,
  confirmedAt: row.confirmed_at,
});

export const toPackage = (row: PackageRow): InstalledPackage => ({
  name: row.name,
  version: row.version,
  architecture: row.architecture,
  source: row.source,
  sourceVersion: row.source_version,
  status: row.status,
});

export const dictionaryKey = (p: InstalledPackage): string =>
  `${p.name}\t${p.architecture}\t${p.version}\t${p.source}\t${p.sourceVersion}\t${p.status}`;

/**
 * Hosts' package inventories, normalized: every distinct (name, architecture, version, source,
 * source version, status) is one `package_versions` row, and a host's inventory is its set of those
 * ids (`host_packages`). Writes must run inside `Store.transaction()`.
 *
 * Dictionary rows are never deleted (a version no host has any more is simply counted by none): the
 * dictionary grows with the versions a fleet has ever run, thousands of rows, not millions.
 */
/**
 * The inventories of agents removed from the fleet: few, so `NOT IN` this set costs a small lookup per
 * counted row (see `countInventories`).
 */
export const REMOVED_AGENTS_INVENTORIES =
  'SELECT hi.id FROM host_inventories hi JOIN agents a ON a.id = hi.host_id WHERE a.removed_at IS NOT NULL';

export class InventoryRepository {
  private readonly statements;
  /** Dictionary ids by key; only ids read back from the database go in, and it is dropped on any failed write. */
  private readonly ids = new Map<string, number>();
  /** A diff's writes, as a savepoint inside the store's transaction: undone alone when they miss the agent's digest. */
  private readonly diffWrites: (hostId: string, diff: InventoryDiffWrite, at: string) => string;

  constructor(db: Db) {
    this.diffWrites = db.transaction((hostId: string, diff: InventoryDiffWrite, at: string) => {
      const inventoryId = this.upsert(hostId, 'reported', null, diff.digest, diff.count, at);
      for (const p of [...diff.changed, ...diff.removed])
        this.statements.unlinkByKey.run(inventoryId, p.name, p.architecture);
      for (const p of diff.changed) this.statements.link.run(inventoryId, this.dictionaryId(p));
      const reached = inventoryDigest(this.packagesById(inventoryId));
      if (reached !== diff.digest) throw new DiffMissed(reached);
      return reached;
    });
    this.statements = {
      inventory: db.prepare('SELECT * FROM host_inventories WHERE host_id = ?'),
      // Only the columns compliance needs, as arrays: no labels or facts to parse for every host of the fleet.
      // A removed agent is no longer part of the fleet: compliance neither counts nor lists it.
      hostStates: db
        .prepare(
          `SELECT a.id, a.revoked_at, a.last_seen_at, hi.id, hi.state, hi.reason, hi.digest, hi.package_count,
                  hi.reported_at, hi.confirmed_at
             FROM agents a LEFT JOIN host_inventories hi ON hi.host_id = a.id
            WHERE a.removed_at IS NULL ORDER BY a.id`,
        )
        .raw(),
      // A removed agent's inventory is forgotten when it is removed (`forget`); one an agent reported on its
      // way out, or kept from before removals forgot them, is left out of every count all the same.
      countInventories: db
        .prepare(
          `SELECT COUNT(*) FROM host_inventories hi JOIN agents a ON a.id = hi.host_id
            WHERE hi.state = 'reported' AND a.removed_at IS NULL`,
        )
        .pluck(),
      upsert: db.prepare(
        `INSERT INTO host_inventories (host_id, state, reason, digest, package_count, reported_at, confirmed_at)
           VALUES (@hostId, @state, @reason, @digest, @packageCount, @at, @at)
         ON CONFLICT (host_id) DO UPDATE SET state = @state, reason = @reason, digest = @digest,
           package_count = @packageCount, reported_at = @at, confirmed_at = @at
         RETURNING id`,
      ),
      confirm: db.prepare('UPDATE host_inventories SET confirmed_at = @at WHERE host_id = @hostId'),
      dictionaryId: db
        .prepare(
          `SELECT id FROM package_versions WHERE name = @name AND architecture = @architecture AND version = @version
             AND source = @source AND source_version = @sourceVersion AND status = @status`,
        )
        .pluck(),
      addToDictionary: db
        .prepare(
          `INSERT INTO package_versions (name, architecture, version, source, source_version, status)
             VALUES (@name, @architecture, @version, @source, @sourceVersion, @status) RETURNING id`,
        )
        .pluck(),
      idsOf: db.prepare('SELECT package_version_id FROM host_packages WHERE inventory_id = ?').pluck(),
      link: db.prepare('INSERT INTO host_packages (inventory_id, package_version_id) VALUES (?, ?)'),
      unlink: db.prepare('DELETE FROM host_packages WHERE inventory_id = ? AND package_version_id = ?'),
      unlinkAll: db.prepare('DELETE FROM host_packages WHERE inventory_id = ?'),
      forgetInventory: db.prepare('DELETE FROM host_inventories WHERE id = ?'),
      unlinkByKey: db.prepare(
        `DELETE FROM host_packages WHERE inventory_id = ? AND package_version_id IN
           (SELECT id FROM package_versions WHERE name = ? AND architecture = ?)`,
      ),
      packagesOf: db.prepare(
        `SELECT pv.name, pv.architecture, pv.version, pv.source, pv.source_version, pv.status
           FROM host_packages hp JOIN package_versions pv ON pv.id = hp.package_version_id
          WHERE hp.inventory_id = ?`,
      ),
      versionsByName: db.prepare(
        `SELECT pv.name, pv.architecture, pv.version, pv.source, pv.source_version, pv.status, COUNT(*) AS hosts
           FROM package_versions pv JOIN host_packages hp ON hp.package_version_id = pv.id
          WHERE pv.name = ? AND hp.inventory_id NOT IN (${REMOVED_AGENTS_INVENTORIES}) GROUP BY pv.id`,
      ),
      versionsBySource: db.prepare(
        `SELECT pv.name, pv.architecture, pv.version, pv.source, pv.source_version, pv.status, COUNT(*) AS hosts
           FROM package_versions pv JOIN host_packages hp ON hp.package_version_id = pv.id
          WHERE pv.source = ? AND hp.inventory_id NOT IN (${REMOVED_AGENTS_INVENTORIES}) GROUP BY pv.id`,
      ),
      // Inventory ids, not host ids: joining host_inventories per row costs more than one map of them all.
      binariesOfSource: db
        .prepare(
          `SELECT hp.inventory_id, pv.name, pv.architecture, pv.version, pv.source_version, pv.status
             FROM package_versions pv JOIN host_packages hp ON hp.package_version_id = pv.id
            WHERE pv.source = ?`,
        )
        .raw(),
      inventoryHosts: db.prepare('SELECT id, host_id FROM host_inventories').raw(),
    };
  }

  async get(hostId: string): Promise<HostInventoryRecord | undefined> {
    const row = this.statements.inventory.get(hostId) as InventoryRow | undefined;
    return row && toRecord(row);
  }

  /** Every registered host, with its inventory when it has one. */
  async hostStates(): Promise<HostInventoryState[]> {
    type Row = [
      string,
      string | null,
      string | null,
      number | null,
      HostInventoryRecord['state'],
      string | null,
      string | null,
      number,
      string,
      string,
    ];
    return (this.statements.hostStates.all() as Row[]).map(
      ([hostId, revokedAt, lastSeenAt, inventoryId, state, reason, digest, packageCount, reportedAt, confirmedAt]) => ({
        hostId,
        revokedAt,
        lastSeenAt,
        inventory:
          inventoryId === null ? undefined : { hostId, state, reason, digest, packageCount, reportedAt, confirmedAt },
      }),
    );
  }

  /** Hosts whose inventory lists packages. */
  async countReported(): Promise<number> {
    return this.statements.countInventories.get() as number;
  }

  /**
   * Makes `packages` the host's whole inventory. Only the difference is written, so that a host
   * sending again what the coordinator already mostly holds costs little.
   */
  async replace(hostId: string, packages: readonly InstalledPackage[], digest: string, at: string): Promise<void> {
    this.guarded(() => {
      const inventoryId = this.upsert(hostId, 'reported', null, digest, packages.length, at);
      const wanted = new Set(packages.map((p) => this.dictionaryId(p)));
      const held = new Set(this.statements.idsOf.all(inventoryId) as number[]);
      for (const id of held) if (!wanted.has(id)) this.statements.unlink.run(inventoryId, id);
      for (const id of wanted) if (!held.has(id)) this.statements.link.run(inventoryId, id);
    });
  }

  /**
   * Applies a diff: each changed package replaces whatever the host had of that name and
   * architecture; removed ones go. Returns the digest of the inventory it leads to, computed from
   * what is stored, for the caller to check against the agent's (`diff.digest`). A diff that does
   * not lead there was made on another copy than the one stored — one a coordinator of the group
   * wrote since (the agent's full inventory, say), while another still held this diff — so it is
   * undone and the stored copy stays as it was: a late diff never spoils a good copy.
   */
  async applyDiff(hostId: string, diff: InventoryDiffWrite, at: string): Promise<string> {
    return this.guarded(() => {
      try {
        return this.diffWrites(hostId, diff, at);
      } catch (err) {
        if (!(err instanceof DiffMissed)) throw err;
        // Dictionary rows it added went with the savepoint: their ids must not be remembered.
        this.ids.clear();
        return err.reached;
      }
    });
  }

  /** The agent has none to give (no dpkg database): the packages held so far go, its reason stays. */
  async markUnavailable(hostId: string, reason: string, at: string): Promise<void> {
    this.guarded(() => {
      const inventoryId = this.upsert(hostId, 'unavailable', reason, null, 0, at);
      this.statements.unlinkAll.run(inventoryId);
    });
  }

  /**
   * The host left the fleet (DELETE /v1/agents/:id): its inventory goes, so no count of installed
   * versions includes it. Should it enroll again, its first hello finds nothing stored and sends it all.
   */
  async forget(hostId: string): Promise<void> {
    const inventory = this.statements.inventory.get(hostId) as InventoryRow | undefined;
    if (!inventory) return;
    this.statements.unlinkAll.run(inventory.id);
    this.statements.forgetInventory.run(inventory.id);
  }

  /** The agent says it still has exactly this inventory. */
  async confirm(hostId: string, at: string): Promise<void> {
    this.statements.confirm.run({ hostId, at });
  }

  async packagesOf(hostId: string): Promise<InstalledPackage[]> {
    const inventory = this.statements.inventory.get(hostId) as InventoryRow | undefined;
    return inventory ? this.packagesById(inventory.id) : [];
  }

  /** Every installed version of a binary package (`name`) or of a source's binaries (`source`), with host counts. */
  async versions(query: { name: string } | { source: string }): Promise<PackageVersionCount[]> {
    const rows =
      'name' in query
        ? this.statements.versionsByName.all(query.name)
        : this.statements.versionsBySource.all(query.source);
    return (rows as (PackageRow & { hosts: number })[]).map((row) => ({ ...toPackage(row), hosts: row.hosts }));
  }

  /** Every installed binary of `source`, by host. */
  async binariesOfSource(source: string): Promise<Map<string, InstalledBinary[]>> {
    type Row = [number, string, string, string, string, string];
    const byInventory = new Map<number, InstalledBinary[]>();
    for (const [
      inventoryId,
      name,
      architecture,
      version,
      sourceVersion,
      status,
    ] of this.statements.binariesOfSource.all(source) as Row[]) {
      const binary = { name, architecture, version, sourceVersion, status };
      const list = byInventory.get(inventoryId);
      if (list) list.push(binary);
      else byInventory.set(inventoryId, [binary]);
    }
    const byHost = new Map<string, InstalledBinary[]>();
    for (const [inventoryId, hostId] of this.statements.inventoryHosts.all() as [number, string][]) {
      const binaries = byInventory.get(inventoryId);
      if (binaries) byHost.set(hostId, binaries);
    }
    return byHost;
  }

  private packagesById(inventoryId: number): InstalledPackage[] {
    return (this.statements.packagesOf.all(inventoryId) as PackageRow[]).map(toPackage);
  }

  private upsert(
    hostId: string,
    state: HostInventoryRecord['state'],
    reason: string | null,
    digest: string | null,
    packageCount: number,
    at: string,
  ): number {
    const row = this.statements.upsert.get({ hostId, state, reason, digest, packageCount, at }) as { id: number };
    return row.id;
  }

  private dictionaryId(p: InstalledPackage): number {
    const key = dictionaryKey(p);
    const cached = this.ids.get(key);
    if (cached !== undefined) return cached;
    const id =
      (this.statements.dictionaryId.get(p) as number | undefined) ?? (this.statements.addToDictionary.get(p) as number);
    this.ids.set(key, id);
    return id;
  }

  /** A write that fails may roll back dictionary rows this cache already holds: forget them all. */
  private guarded<T>(write: () => T): T {
    try {
      return write();
    } catch (err) {
      this.ids.clear();
      throw err;
    }
  }
}
