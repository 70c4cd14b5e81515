/**
 * The two stores a coordinator runs on (issue 15), for the end-to-end tests that must hold on both.
 * `describeOnEachStore` declares a describe twice: on SQLite (the default, nothing to configure) and
 * on PostgreSQL — one cluster for the file, started before the describe's own hooks, a fresh database
 * for every fleet — the PostgreSQL one skipped visibly where the cluster cannot run (root, PG 15).
 */
import { describe } from 'vitest';
import { postgresCluster, runPostgresCluster } from './postgres-cluster.js';
import { describeNeeding, type Requirement } from './requirements.js';

export type StoreKind = 'sqlite' | 'postgres';

/** What a coordinator's config says of its store: nothing (SQLite in the data dir), or a PostgreSQL database. */
export interface StoreConfig {
  store?: { kind: 'postgres'; url: string };
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
}

const SQLITE: StoreUnderTest = { kind: 'sqlite', label: 'SQLite', suffix: '', coordinatorConfig: async () => ({}) };

/**
 * `body` once per store, each in a describe of its own titled `<title>, on <label>`; `requirements`
 * are what both need besides the store (e.g. network namespaces).
 */
export function describeOnEachStore(
  title: string,
  requirements: readonly Requirement[],
  body: (store: StoreUnderTest) => void,
): void {
  const sqliteTitle = `${title}, on ${SQLITE.label}`;
  if (requirements.length === 0) describe(sqliteTitle, () => body(SQLITE));
  else describeNeeding(requirements, sqliteTitle, () => body(SQLITE));

  describeNeeding([...requirements, ...postgresCluster], `${title}, on PostgreSQL`, () => {
    // The run's one cluster (test/support/postgres-global-setup.ts); each fleet gets a database of its own.
    const cluster = () => runPostgresCluster();
    body({
      kind: 'postgres',
      label: 'PostgreSQL',
      suffix: ' on PostgreSQL',
      coordinatorConfig: async () => ({ store: { kind: 'postgres', url: await cluster().createDatabase() } }),
    });
  });
}
