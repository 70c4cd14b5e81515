import {
  type InstalledBinary,
  type InstalledPackage,
  inventoryDigest,
  type PackageVersionCount,
} from '@fleetpatch/shared';
import {
  dictionaryKey,
  type HostInventoryRecord,
  type HostInventoryState,
  type InventoryDiffWrite,
  type InventoryRepository,
  type InventoryRow,
  type PackageRow,
  REMOVED_AGENTS_INVENTORIES,
  toPackage,
  toRecord,
} from '../inventory-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

const INVENTORY_COLUMNS = 'id, host_id, state, reason, digest, package_count, reported_at, confirmed_at';

/** Packages as six parallel arrays, `$1` … `$6` of the queries below: one query carries thousands. */
const asColumns = (packages: readonly InstalledPackage[]) => [
  packages.map((p) => p.name),
  packages.map((p) => p.architecture),
  packages.map((p) => p.version),
  packages.map((p) => p.source),
  packages.map((p) => p.sourceVersion),
  packages.map((p) => p.status),
];

/**
 * The packages as rows `u` numbered from 1 in the given order (`u.i`). The dictionary's columns are
 * COLLATE "C"; the arrays' text takes it explicitly, so the comparisons use the UNIQUE index.
 */
const PACKAGES_TABLE = `unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
  WITH ORDINALITY AS u(name, architecture, version, source, source_version, status, i)`;
const IN_DICTIONARY = `pv.name = u.name COLLATE "C" AND pv.architecture = u.architecture COLLATE "C"
  AND pv.version = u.version COLLATE "C" AND pv.source = u.source COLLATE "C"
  AND pv.source_version = u.source_version COLLATE "C" AND pv.status = u.status COLLATE "C"`;

const PACKAGE_COLUMNS = 'pv.name, pv.architecture, pv.version, pv.source, pv.source_version, pv.status';

/**
 * Hosts' package inventories on PostgreSQL (inventory-repository.ts is the reference): the same
 * dictionary of package versions and per-host sets of its ids. A host's thousands of packages go in
 * a handful of queries — the dictionary looked up for all of them at once, only the difference from
 * what is held written — never one query per package. Writes must run inside `Store.transaction()`.
 *
 * Nothing is cached between calls (SQLite's repository caches dictionary ids): with several
 * coordinators, and a dictionary row a rolled-back transaction of this one may have written, an id
 * is only trusted as read in the transaction that uses it.
 *
 * Identity values are spent by every INSERT that tries a row, kept or not, and these ids are
 * 32-bit: so existing dictionary rows and inventories are found first and only new ones inserted
 * (an `INSERT … ON CONFLICT` each time would use up `host_inventories.id` within months of a large
 * fleet's reports).
 */
export class PostgresInventoryRepository implements Public<InventoryRepository> {
  constructor(private readonly executor: PostgresExecutor) {}

  async get(hostId: string): Promise<HostInventoryRecord | undefined> {
    const row = await this.inventoryRow(hostId);
    return row && toRecord(row);
  }

  async hostStates(): Promise<HostInventoryState[]> {
    const rows = await this.executor.query<
      Omit<InventoryRow, 'id'> & {
        revoked_at: string | null;
        last_seen_at: string | null;
        id: number | null;
      }
    >(
      `SELECT a.id AS host_id, a.revoked_at, a.last_seen_at, hi.id, hi.state, hi.reason, hi.digest,
              hi.package_count, hi.reported_at, hi.confirmed_at
         FROM agents a LEFT JOIN host_inventories hi ON hi.host_id = a.id
        WHERE a.removed_at IS NULL ORDER BY a.id`,
    );
    return rows.map((row) => ({
      hostId: row.host_id,
      revokedAt: row.revoked_at,
      lastSeenAt: row.last_seen_at,
      inventory: row.id === null ? undefined : toRecord({ ...row, id: row.id }),
    }));
  }

  async countReported(): Promise<number> {
    const row = await this.executor.one<{ n: number }>(
      `SELECT count(*) AS n FROM host_inventories hi JOIN agents a ON a.id = hi.host_id
        WHERE hi.state = 'reported' AND a.removed_at IS NULL`,
    );
    return row?.n ?? 0;
  }

  async replace(hostId: string, packages: readonly InstalledPackage[], digest: string, at: string): Promise<void> {
    const inventoryId = await this.upsert(hostId, 'reported', null, digest, packages.length, at);
    const wanted = new Set(await this.dictionaryIds(packages));
    const held = new Set(
      (
        await this.executor.query<{ id: number }>(
          'SELECT package_version_id AS id FROM host_packages WHERE inventory_id = $1',
          [inventoryId],
        )
      ).map((row) => row.id),
    );
    const gone = [...held].filter((id) => !wanted.has(id));
    const added = [...wanted].filter((id) => !held.has(id));
    if (gone.length > 0) {
      await this.executor.query(
        'DELETE FROM host_packages WHERE inventory_id = $1 AND package_version_id = ANY($2::integer[])',
        [inventoryId, gone],
      );
    }
    await this.link(inventoryId, added);
  }

  /** As the SQLite store's: a diff that misses the agent's digest is undone (its savepoint), the copy kept. */
  async applyDiff(hostId: string, diff: InventoryDiffWrite, at: string): Promise<string> {
    await this.executor.query('SAVEPOINT inventory_diff');
    const reached = await this.diffWrites(hostId, diff, at);
    if (reached !== diff.digest) await this.executor.query('ROLLBACK TO SAVEPOINT inventory_diff');
    await this.executor.query('RELEASE SAVEPOINT inventory_diff');
    return reached;
  }

  private async diffWrites(hostId: string, diff: InventoryDiffWrite, at: string): Promise<string> {
    const inventoryId = await this.upsert(hostId, 'reported', null, diff.digest, diff.count, at);
    const keys = [...diff.changed, ...diff.removed];
    if (keys.length > 0) {
      // Whatever the host had of each name and architecture goes (the UNIQUE index's prefix finds them).
      await this.executor.query(
        `DELETE FROM host_packages WHERE inventory_id = $1 AND package_version_id IN (
           SELECT pv.id FROM unnest($2::text[], $3::text[]) AS k(name, architecture)
             JOIN package_versions pv ON pv.name = k.name COLLATE "C" AND pv.architecture = k.architecture COLLATE "C")`,
        [inventoryId, keys.map((p) => p.name), keys.map((p) => p.architecture)],
      );
    }
    // Not a set: a package listed twice is refused by the primary key, as it is by SQLite.
    await this.link(inventoryId, await this.dictionaryIds(diff.changed));
    return inventoryDigest(await this.packagesById(inventoryId));
  }

  async markUnavailable(hostId: string, reason: string, at: string): Promise<void> {
    const inventoryId = await this.upsert(hostId, 'unavailable', reason, null, 0, at);
    await this.executor.query('DELETE FROM host_packages WHERE inventory_id = $1', [inventoryId]);
  }

  async forget(hostId: string): Promise<void> {
    const inventory = await this.inventoryRow(hostId);
    if (!inventory) return;
    await this.executor.query('DELETE FROM host_packages WHERE inventory_id = $1', [inventory.id]);
    await this.executor.query('DELETE FROM host_inventories WHERE id = $1', [inventory.id]);
  }

  async confirm(hostId: string, at: string): Promise<void> {
    await this.executor.query('UPDATE host_inventories SET confirmed_at = $2 WHERE host_id = $1', [hostId, at]);
  }

  async packagesOf(hostId: string): Promise<InstalledPackage[]> {
    const inventory = await this.inventoryRow(hostId);
    return inventory ? await this.packagesById(inventory.id) : [];
  }

  async versions(query: { name: string } | { source: string }): Promise<PackageVersionCount[]> {
    // Led by the UNIQUE index's prefix (name) or package_versions_source; counted from
    // host_packages_by_version without reading a host row. By id, the order SQLite groups in.
    const rows = await this.executor.query<PackageRow & { hosts: number }>(
      `SELECT ${PACKAGE_COLUMNS}, count(*) AS hosts
         FROM package_versions pv JOIN host_packages hp ON hp.package_version_id = pv.id
        WHERE ${'name' in query ? 'pv.name' : 'pv.source'} = $1
          AND hp.inventory_id NOT IN (${REMOVED_AGENTS_INVENTORIES}) GROUP BY pv.id ORDER BY pv.id`,
      ['name' in query ? query.name : query.source],
    );
    return rows.map((row) => ({ ...toPackage(row), hosts: row.hosts }));
  }

  async binariesOfSource(source: string): Promise<Map<string, InstalledBinary[]>> {
    const rows = await this.executor.query<{
      host_id: string;
      name: string;
      architecture: string;
      version: string;
      source_version: string;
      status: string;
    }>(
      `SELECT hi.host_id, pv.name, pv.architecture, pv.version, pv.source_version, pv.status
         FROM package_versions pv JOIN host_packages hp ON hp.package_version_id = pv.id
         JOIN host_inventories hi ON hi.id = hp.inventory_id
        WHERE pv.source = $1 ORDER BY hi.host_id, pv.id`,
      [source],
    );
    const byHost = new Map<string, InstalledBinary[]>();
    for (const { host_id: hostId, name, architecture, version, source_version: sourceVersion, status } of rows) {
      const binary = { name, architecture, version, sourceVersion, status };
      const list = byHost.get(hostId);
      if (list) list.push(binary);
      else byHost.set(hostId, [binary]);
    }
    return byHost;
  }

  private async inventoryRow(hostId: string): Promise<InventoryRow | undefined> {
    return await this.executor.one<InventoryRow>(
      `SELECT ${INVENTORY_COLUMNS} FROM host_inventories WHERE host_id = $1`,
      [hostId],
    );
  }

  private async packagesById(inventoryId: number): Promise<InstalledPackage[]> {
    const rows = await this.executor.query<PackageRow>(
      `SELECT ${PACKAGE_COLUMNS} FROM host_packages hp JOIN package_versions pv ON pv.id = hp.package_version_id
        WHERE hp.inventory_id = $1 ORDER BY hp.package_version_id`,
      [inventoryId],
    );
    return rows.map(toPackage);
  }

  private async link(inventoryId: number, ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.executor.query(
      'INSERT INTO host_packages (inventory_id, package_version_id) SELECT $1, unnest($2::integer[])',
      [inventoryId, ids],
    );
  }

  private async upsert(
    hostId: string,
    state: HostInventoryRecord['state'],
    reason: string | null,
    digest: string | null,
    packageCount: number,
    at: string,
  ): Promise<number> {
    const values = [hostId, state, reason, digest, packageCount, at];
    const set = 'state = $2, reason = $3, digest = $4, package_count = $5, reported_at = $6, confirmed_at = $6';
    const updated = await this.executor.one<{ id: number }>(
      `UPDATE host_inventories SET ${set} WHERE host_id = $1 RETURNING id`,
      values,
    );
    if (updated) return updated.id;
    // The host's first inventory (or another coordinator's, written since the UPDATE: then it is replaced).
    const inserted = await this.executor.one<{ id: number }>(
      `INSERT INTO host_inventories (host_id, state, reason, digest, package_count, reported_at, confirmed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
       ON CONFLICT (host_id) DO UPDATE SET ${set} RETURNING id`,
      values,
    );
    return (inserted as { id: number }).id;
  }

  /**
   * The dictionary id of each package, in the packages' order. Versions new to the dictionary are
   * added in the order they first appear (as SQLite's repository adds them, so both number them
   * alike), then read back: another coordinator may have added some of them meanwhile.
   */
  private async dictionaryIds(packages: readonly InstalledPackage[]): Promise<number[]> {
    const distinct = [...new Map(packages.map((p) => [dictionaryKey(p), p])).values()];
    const ids = new Map<string, number>();
    const lookUp = async (list: readonly InstalledPackage[]) => {
      if (list.length === 0) return;
      const rows = await this.executor.query<{ i: number; id: number }>(
        `SELECT u.i, pv.id FROM ${PACKAGES_TABLE} JOIN package_versions pv ON ${IN_DICTIONARY}`,
        asColumns(list),
      );
      for (const { i, id } of rows) ids.set(dictionaryKey(list[i - 1] as InstalledPackage), id);
    };
    await lookUp(distinct);
    const missing = distinct.filter((p) => !ids.has(dictionaryKey(p)));
    if (missing.length > 0) {
      await this.executor.query(
        `INSERT INTO package_versions (name, architecture, version, source, source_version, status)
         SELECT u.name, u.architecture, u.version, u.source, u.source_version, u.status FROM ${PACKAGES_TABLE}
          ORDER BY u.i
         ON CONFLICT DO NOTHING`,
        asColumns(missing),
      );
      await lookUp(missing);
    }
    return packages.map((p) => {
      const id = ids.get(dictionaryKey(p));
      if (id === undefined) throw new Error(`package ${p.name} ${p.version} is in no dictionary row`);
      return id;
    });
  }
}
