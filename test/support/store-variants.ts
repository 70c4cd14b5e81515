/**
 * The two stores a coordinator runs on (issue 15), for the end-to-end tests that must hold on both.
 * `describeOnEachStore` declares a describe twice: on SQLite (the default, nothing to configure) and
 * on PostgreSQL — one cluster for the file, started before the describe's own hooks, a fresh database
 * for every fleet — the PostgreSQL one skipped visibly where the cluster cannot run (root, PG 15).
 * Asked for (`postgresGroup`), the PostgreSQL variant is a coordinator group: several coordinators
 * on that one database, which is how PostgreSQL is run for availability.
 */
import { describe } from 'vitest';
import { postgresCluster, runPostgresCluster } from './postgres-cluster.js';
import { describeNeeding, type Requirement } from './requirements.js';

export type StoreKind = 'sqlite' | 'postgres';

/** What a coordinator's config says of its store: nothing (SQLite in the data dir), or a PostgreSQL database. */
export interface StoreConfig {
  store?: { kind: 'postgres'; url: string };
}

/** Several coordinators on one PostgreSQL database (issue 15): how many, and their rollout lease. */
export interface CoordinatorGroupShape {
  coordinators: number;
  /** Short in tests, so a member taking over a dead driver's rollout does so in seconds. */
  leaseMs: number;
}

export interface StoreUnderTest {
  readonly kind: StoreKind;
  /** `SQLite` or `PostgreSQL`: for titles and result rows. */
  readonly label: string;
  /** Nothing on SQLite, the default; ` on PostgreSQL` otherwise: for result rows and log lines. */
  readonly suffix: string;
  /**
   * What a new fleet's coordinator config adds (FleetHarness `extraConfig`): nothing on SQLite, whose
   * file lives in the data dir; on PostgreSQL a database of its own, created now. A restart keeps it.
   */
  coordinatorConfig(): Promise<StoreConfig>;
  /** On PostgreSQL when the describe asked for a group: the coordinators sharing the database. */
  readonly group?: CoordinatorGroupShape;
}

const SQLITE: StoreUnderTest = { kind: 'sqlite', label: 'SQLite', suffix: '', coordinatorConfig: async () => ({}) };

/**
 * `body` once per store, each in a describe of its own titled `<title>, on <label>`; `requirements`
 * are what both need besides the store (e.g. network namespaces). With `postgresGroup`, the
 * PostgreSQL variant runs that many coordinators on its database (`StoreUnderTest.group`).
 */
export function describeOnEachStore(
  title: string,
  requirements: readonly Requirement[],
  body: (store: StoreUnderTest) => void,
  { postgresGroup }: { postgresGroup?: CoordinatorGroupShape } = {},
): void {
  const sqliteTitle = `${title}, on ${SQLITE.label}`;
  if (requirements.length === 0) describe(sqliteTitle, () => body(SQLITE));
  else describeNeeding(requirements, sqliteTitle, () => body(SQLITE));

  const label = postgresGroup ? `PostgreSQL, ${postgresGroup.coordinators} coordinators` : 'PostgreSQL';
  describeNeeding([...requirements, ...postgresCluster], `${title}, on ${label}`, () => {
    // The run's one cluster (test/support/postgres-global-setup.ts); each fleet gets a database of its own.
    const cluster = () => runPostgresCluster();
    body({
      kind: 'postgres',
      label,
      suffix: postgresGroup ? ` on PostgreSQL, ${postgresGroup.coordinators} coordinators` : ' on PostgreSQL',
      coordinatorConfig: async () => ({ store: { kind: 'postgres', url: await cluster().createDatabase() } }),
      ...(postgresGroup ? { group: postgresGroup } : {}),
    });
  });
}
