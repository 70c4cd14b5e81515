/**
 * PostgresInventoryRepository against InventoryRepository (SQLite, the reference): full inventories,
 * diffs, unavailable hosts and confirmations, written in transactions as the store writes them, then
 * every read compliance and the package views make — host states, versions with host counts, each
 * host's binaries of a source, a host's packages and their digest — answers the same on both stores,
 * down to the dictionary ids that order them. Thousands of packages per host, as a real fleet sends.
 */
import { type InstalledPackage, inventoryDigest } from '@fleetpatch/shared';
import { expect, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import type { InventoryRepository } from '../src/store/inventory-repository.js';
import { PostgresExecutor } from '../src/store/postgres/postgres-executor.js';
import { PostgresInventoryRepository } from '../src/store/postgres/postgres-inventory-repository.js';
import { SqliteBackend } from '../src/store/sqlite-backend.js';
import { binary, FIXED, opensslHost, VULNERABLE } from './support/sample-inventory.js';
import { useStoreTwins } from './support/store-twins.js';

/** A repository and the way its store runs a transaction: inventory writes always run in one. */
interface Transactional {
  repository: InventoryRepository;
  inTransaction<T>(fn: () => Promise<T>): Promise<T>;
}

const AT = (minute: number) =>
  `2026-12-04T15:${String(minute).padStart(2, '0')}:00.${String(minute * 11).padStart(3, '0')}Z`;

/** A Debian host's worth of packages; `generation` moves a tenth of them to other versions. */
function manyPackages(count: number, generation: number): InstalledPackage[] {
  return Array.from({ length: count }, (_, i) =>
    binary(`pkg-${String(i).padStart(4, '0')}`, i % 10 === generation % 10 ? `2.${generation}` : '1.0', {
      source: `src-${Math.floor(i / 3)}`,
      architecture: i % 7 === 0 ? 'all' : 'amd64',
    }),
  );
}

describeNeeding(postgresCluster, 'PostgresInventoryRepository', () => {
  const { twins, same } = useStoreTwins<Transactional>(async (twins) => {
    await twins.seed.agent('h1', { lastSeenAt: AT(1) });
    await twins.seed.agent('h2');
    await twins.seed.agent('h3', { revokedAt: AT(2), lastSeenAt: AT(1) });
    await twins.seed.agent('a0');
    // Removed from the fleet (DELETE /v1/agents/:id): no host state of compliance's lists it.
    await twins.seed.agent('gone', { revokedAt: AT(2), removedAt: AT(2) });
    const sqlite = new SqliteBackend(twins.sqlite);
    return {
      sqlite: { repository: sqlite.inventory, inTransaction: (fn) => sqlite.inTransaction(fn) },
      postgres: {
        repository: new PostgresInventoryRepository(twins.postgres) as unknown as InventoryRepository,
        inTransaction: (fn) => twins.postgres.inTransaction(fn),
      },
    };
  });

  const write = <T>(call: (r: InventoryRepository) => Promise<T>, expected = { refusal: false }) =>
    same(({ repository, inTransaction }) => inTransaction(() => call(repository)), expected);
  const read = <T>(call: (r: InventoryRepository) => Promise<T>) => same(({ repository }) => call(repository));

  async function readEverything(): Promise<void> {
    await read((r) => r.hostStates());
    await read((r) => r.countReported());
    for (const host of ['h1', 'h2', 'h3', 'a0', 'nobody']) {
      await read((r) => r.get(host));
      await read((r) => r.packagesOf(host));
    }
    for (const name of ['openssl', 'libssl3', 'bash', 'pkg-0003', 'nothing']) await read((r) => r.versions({ name }));
    for (const source of ['openssl', 'bash', 'src-1', 'nothing']) {
      await read((r) => r.versions({ source }));
      await read((r) => r.binariesOfSource(source));
    }
  }

  it('answers every read as the SQLite store does, through full reports, diffs and unavailable hosts', async () => {
    await readEverything();
    const h1 = [...opensslHost(VULNERABLE), binary('openssl', VULNERABLE, { architecture: 'i386' })];
    // Listed twice: one package all the same.
    await write((r) => r.replace('h1', [...h1, h1[0] as InstalledPackage], inventoryDigest(h1), AT(3)));
    await write((r) => r.replace('h2', opensslHost(FIXED), inventoryDigest(opensslHost(FIXED)), AT(4)));
    await write((r) => r.replace('a0', opensslHost(VULNERABLE).reverse(), 'd-a0', AT(4)));
    // A removed agent's inventory (kept from before removals forgot them, or reported on its way out):
    // in no count, on either store.
    await write((r) => r.replace('gone', opensslHost(VULNERABLE), 'd-gone', AT(4)));
    await readEverything();
    expect((await read((r) => r.versions({ name: 'libssl3' }))).map((v) => v.hosts).reduce((a, b) => a + b, 0)).toBe(3);
    expect(await read((r) => r.countReported())).toBe(3);

    const changed = [binary('openssl', FIXED), binary('libssl3', FIXED, { source: 'openssl' })];
    const removed = [{ name: 'tzdata', architecture: 'all' }];
    const h1After = inventoryDigest([
      ...changed,
      binary('bash', '5.2.15-2+b7', { sourceVersion: '5.2.15-2' }),
      h1[4] as InstalledPackage,
    ]);
    // A diff made on another copy than the one stored leads elsewhere than it says: undone on both.
    const curl = binary('curl', '7.88.1-10+deb12u5');
    const missed = await write((r) =>
      r.applyDiff('h1', { changed: [...changed, curl], removed, count: 5, digest: h1After }, AT(5)),
    );
    expect(missed).not.toBe(h1After);
    await readEverything();
    const digest = await write((r) => r.applyDiff('h1', { changed, removed, count: 4, digest: h1After }, AT(5)));
    expect(digest).toBe(h1After);
    // A diff naming a package twice is refused, and its transaction leaves nothing behind.
    await write(
      (r) =>
        r.applyDiff(
          'h2',
          { changed: [changed[0], changed[0]] as InstalledPackage[], removed: [], count: 4, digest: 'x' },
          AT(6),
        ),
      {
        refusal: true,
      },
    );
    await write((r) => r.confirm('h2', AT(7)));
    await write((r) => r.markUnavailable('a0', 'no dpkg database', AT(8)));
    // A host the coordinator never registered has no inventory to hold.
    await write((r) => r.replace('ghost', opensslHost(FIXED), 'd', AT(9)), { refusal: true });
    await readEverything();
    // An unavailable host reporting again, and a full report that equals what is held.
    await write((r) => r.replace('a0', opensslHost(FIXED), 'd-a0-2', AT(10)));
    await write((r) => r.replace('h2', opensslHost(FIXED), inventoryDigest(opensslHost(FIXED)), AT(11)));
    await readEverything();
    // A host removed from the fleet: its inventory goes, the others' stay; one with none to forget changes nothing.
    await write((r) => r.forget('h1'));
    await write((r) => r.forget('h3'));
    await readEverything();
    expect(await read((r) => r.get('h1'))).toBeUndefined();
    expect((await read((r) => r.hostStates())).map((s) => s.hostId)).toEqual(['a0', 'h1', 'h2', 'h3']);
    expect(await read((r) => r.packagesOf('h2'))).toHaveLength(4);
  });

  it('keeps thousands of packages per host as the SQLite store does', async () => {
    for (const [host, generation] of [
      ['h1', 0],
      ['h2', 1],
      ['h3', 0],
    ] as const) {
      const packages = manyPackages(2_000, generation);
      await write((r) => r.replace(host, packages, inventoryDigest(packages), AT(generation)));
    }
    const next = manyPackages(2_000, 3).slice(0, 1_990);
    await write((r) => r.replace('h1', next, inventoryDigest(next), AT(20)));
    const moved = manyPackages(2_000, 4).filter((_, i) => i % 10 === 4);
    const h2After = inventoryDigest(
      manyPackages(2_000, 1)
        .filter((p) => p.name !== 'pkg-0000')
        .map((p) => moved.find((m) => m.name === p.name && m.architecture === p.architecture) ?? p),
    );
    const digest = await write((r) =>
      r.applyDiff(
        'h2',
        { changed: moved, removed: [{ name: 'pkg-0000', architecture: 'all' }], count: 1_999, digest: h2After },
        AT(21),
      ),
    );
    expect(digest).toBe(h2After);
    expect(inventoryDigest(await read((r) => r.packagesOf('h2')))).toBe(h2After);
    expect((await read((r) => r.packagesOf('h1'))).length).toBe(1_990);
    await readEverything();
    for (const source of ['src-0', 'src-333']) {
      await read((r) => r.versions({ source }));
      await read((r) => r.binariesOfSource(source));
    }
  });

  it('lets two coordinators add the same new versions at once: each host gets them, the dictionary once', async () => {
    // A second coordinator: its own pool on the same database.
    const other = new PostgresExecutor(twins().postgresUrl, 2);
    try {
      const packages = manyPackages(500, 7);
      const writers = [
        [new PostgresInventoryRepository(twins().postgres), twins().postgres, 'h1'],
        [new PostgresInventoryRepository(other), other, 'h2'],
      ] as const;
      await Promise.all(
        writers.map(([repository, executor, host]) =>
          executor.inTransaction(() => repository.replace(host, packages, inventoryDigest(packages), AT(1))),
        ),
      );
      const [first] = writers;
      for (const host of ['h1', 'h2']) {
        expect(inventoryDigest(await first[0].packagesOf(host))).toBe(inventoryDigest(packages));
      }
      const dictionary = await twins().postgres.one<{ n: number }>('SELECT count(*) AS n FROM package_versions');
      expect(dictionary?.n).toBe(500);
    } finally {
      await other.close();
    }
  });
});
