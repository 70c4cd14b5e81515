import { readdirSync, readFileSync } from 'node:fs';
import { configDefaults, defineConfig } from 'vitest/config';
import { postgresCluster } from './test/support/postgres-cluster.js';
import { met } from './test/support/requirements.js';
import { useScratchTmpdir } from './test/support/scratch-tmpdir.js';
import { skipAllowListPlugin } from './test/support/skip-allowlist.js';

/**
 * The engine's specification: the coordinator test files built on the simulated fleet, the ones
 * that run again on PostgreSQL (the others — routes, hub, config — open no fleet store of their own
 * and would only run on SQLite a second time).
 */
const COORDINATOR_TESTS = 'packages/coordinator/test';
const ENGINE_SPECIFICATION = readdirSync(COORDINATOR_TESTS)
  .filter((name) => name.endsWith('.test.ts'))
  .filter((name) => readFileSync(`${COORDINATOR_TESTS}/${name}`, 'utf8').includes('./support/simulated-fleet.js'))
  .map((name) => `${COORDINATOR_TESTS}/${name}`);

/** Engine specification files that stay on SQLite in the `coordinator-postgres` project, each for its reason. */
const SQLITE_ONLY_COORDINATOR_TESTS = [
  // SQLite's own migrations, file permissions and pragmas.
  'packages/coordinator/test/migrations.test.ts',
  'packages/coordinator/test/database-permissions.test.ts',
  // Opens SQLite stores directly (Store.open on a file) to test the Store itself.
  'packages/coordinator/test/store.test.ts',
  // Provokes SQLITE_BUSY with a second connection holding SQLite's write lock.
  'packages/coordinator/test/report-batch-busy.test.ts',
  // FAIL on PostgreSQL, not a store bug: queuedRun() assumes the engine's next turn has not run by
  // the test's next read, true of synchronous SQLite, a race on PostgreSQL (the run is 'dispatched').
  'packages/coordinator/test/host-run-transition.test.ts',
  // Reads the SQLite file from a second connection at each crash point (what is on disk then).
  'packages/coordinator/test/crash-points.test.ts',
  // Already run against both stores by the store-postgres project.
  'packages/coordinator/test/postgres-*.test.ts',
];

/**
 * Unit test files that replace a module (`vi.mock`): each needs a module registry of its own. Every
 * other unit test file shares its worker's modules with the files before it (`isolate: false`):
 * importing fastify, zod and the store again for each of ~130 files cost more than their tests
 * (the coordinator's: 47 s of imports in a 91 s run, 10 s in 66 s without).
 */
const MOCKS_MODULES = [COORDINATOR_TESTS, 'packages/agent/test', 'packages/cli/test', 'packages/shared/test'].flatMap(
  (dir) =>
    readdirSync(dir)
      .filter((name) => name.endsWith('.test.ts'))
      .filter((name) => /\bvi\.(mock|doMock)\(/.test(readFileSync(`${dir}/${name}`, 'utf8')))
      .map((name) => `${dir}/${name}`),
);
/**
 * The coordinator projects' per-file setup: closes what a test left open (simulated fleets, webhook
 * receivers). A setup file runs before each test file even where modules are shared; a hook at a
 * shared module's top level would be registered for the first file of a worker only.
 */
const COORDINATOR_SETUP = ['packages/coordinator/test/support/close-after-each-test.ts'];
/** What a unit project sets: modules shared across its files, unless they mock one (MOCKS_MODULES). */
const SHARED_MODULES = { isolate: false, exclude: [...configDefaults.exclude, ...MOCKS_MODULES] };

/**
 * One PostgreSQL cluster for the whole run, shared by every project that lists it (each test file
 * makes databases of its own on it): a cluster per file cost 5–20 s each.
 */
const POSTGRES_GLOBAL_SETUP = 'test/support/postgres-global-setup.ts';
const ENGINE_ON_POSTGRES = 'packages/coordinator/test/engine-on-postgres.test.ts';
/** Test files of the store's PostgreSQL side, in the coordinator package and end to end. */
const STORE_POSTGRES_TESTS = ['packages/coordinator/test/postgres-*.test.ts', 'test/migrate-store.test.ts'];

// The run's temporary files on a tmpfs, where the machine has one with room (scratch-tmpdir.ts says why).
useScratchTmpdir();

// Unit tests live beside each package; end-to-end tests in test/ run the built binaries
// (`npm test` builds first) as real processes on 127.0.0.1. Every project extends this root config,
// so what is set here holds for every test file.
export default defineConfig({
  // In CI (CI=true) a skipped test fails the run unless test/skip-allowlist.json lists it with a reason.
  plugins: [skipAllowListPlugin(new URL('./test/skip-allowlist.json', import.meta.url).pathname)],
  test: {
    // A test in which no expect() ran fails: a test that cannot fail proves nothing.
    expect: { requireAssertions: true },
    // Two files at a time, even on a 2-core runner: the end-to-end files mostly wait on their child
    // processes, and left to itself vitest ran them one after another here (737 s vs ~400 s).
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'shared', include: ['packages/shared/test/**/*.test.ts'], ...SHARED_MODULES } },
      {
        extends: true,
        test: { name: 'agent', include: ['packages/agent/test/**/*.test.ts'], testTimeout: 30_000, ...SHARED_MODULES },
      },
      {
        extends: true,
        test: { name: 'cli', include: ['packages/cli/test/**/*.test.ts'], testTimeout: 30_000, ...SHARED_MODULES },
      },
      // The unit test files that mock a module, each with modules of its own (vitest's default).
      { extends: true, test: { name: 'module-mocks', include: MOCKS_MODULES, testTimeout: 30_000 } },
      {
        extends: true,
        test: {
          name: 'coordinator',
          include: ['packages/coordinator/test/**/*.test.ts'],
          isolate: false,
          exclude: [...SHARED_MODULES.exclude, ENGINE_ON_POSTGRES, ...STORE_POSTGRES_TESTS],
          setupFiles: COORDINATOR_SETUP,
          // coordinator-group-parts.test.ts: a group's leases, outbox and tail on the run's cluster.
          globalSetup: [POSTGRES_GLOBAL_SETUP],
          testTimeout: 30_000,
        },
      },
      {
        // The engine's specification again, every simulated fleet on a PostgreSQL database of one
        // cluster the global setup starts for the run. Where PostgreSQL 15 or root is missing, only
        // engine-on-postgres.test.ts runs, skipped with the reason (CI has both).
        extends: true,
        test: {
          name: 'coordinator-postgres',
          include: met(...postgresCluster) ? [...ENGINE_SPECIFICATION, ENGINE_ON_POSTGRES] : [ENGINE_ON_POSTGRES],
          exclude: [...SHARED_MODULES.exclude, ...SQLITE_ONLY_COORDINATOR_TESTS],
          isolate: false,
          env: { FLEETPATCH_TEST_STORE: 'postgres' },
          setupFiles: COORDINATOR_SETUP,
          globalSetup: [POSTGRES_GLOBAL_SETUP],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        // The store's own PostgreSQL tests (repositories, schema, migrate-store), each file on
        // databases of its own in the run's one cluster, which they share with coordinator-postgres.
        // Where PostgreSQL 15 or root is missing their PostgreSQL halves are skipped, saying why.
        extends: true,
        test: {
          name: 'store-postgres',
          include: STORE_POSTGRES_TESTS,
          globalSetup: [POSTGRES_GLOBAL_SETUP],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          // The fault suite has its own run (`npm run test:faults`, vitest.faults.config.ts).
          exclude: [...configDefaults.exclude, 'test/faults/**', ...STORE_POSTGRES_TESTS],
          // The crash tests' PostgreSQL variants (test/support/store-variants.ts) use the run's cluster.
          globalSetup: [POSTGRES_GLOBAL_SETUP],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
