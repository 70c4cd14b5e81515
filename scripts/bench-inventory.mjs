// @ts-check
// `node scripts/bench-inventory.mjs [--hosts N] [--packages M]` (also run by `npm run bench`): a
// simulated fleet of N hosts × M installed packages loaded into a real coordinator's store through
// the path agents' full inventories take (InventorySync: digest check, normalized writes, one
// transaction per host), then a real coordinator process started on that store answering the
// package and compliance queries over HTTP. Prints the figures; checks the answers' counts.
//
// Flags: --hosts N (10000)  --packages M (2000)  --repeat R (20: timed runs of each query)
//        --tmp DIR (/dev/shm if writable)
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { InventorySync, Store } from '@fleetpatch/coordinator';
import { inventoryDigest, WIRE_LIMITS } from '@fleetpatch/shared';
import { pino } from 'pino';
import { cpuMsOf, percentile, scratchBase } from './lib/bench-measures.mjs';
import { apiClient, startCoordinator } from './lib/local-fleet.mjs';

/**
 * @import { ComplianceReport, HostPackages, InstalledPackage, PackageVersions } from '@fleetpatch/shared'
 * @import { CoordinatorProcess } from './lib/local-fleet.mjs'
 */

const { values: flags } = parseArgs({
  options: {
    hosts: { type: 'string', default: '10000' },
    packages: { type: 'string', default: '2000' },
    repeat: { type: 'string', default: '20' },
    tmp: { type: 'string' },
  },
  strict: true,
});
const HOSTS = Number.parseInt(flags.hosts, 10);
const PACKAGES = Number.parseInt(flags.packages, 10);
const REPEAT = Number.parseInt(flags.repeat, 10);
if (!(HOSTS >= 1) || !(PACKAGES >= 10) || !(REPEAT >= 1)) {
  process.stderr.write('usage: bench-inventory.mjs [--hosts N] [--packages M>=10] [--repeat R] [--tmp DIR]\n');
  process.exit(2);
}

const ADMIN_TOKEN = 'bench-admin-token-000001';
const say = (line = '') => process.stdout.write(`${line}\n`);
const secs = (/** @type {number} */ ms) => `${(ms / 1000).toFixed(2)} s`;
const hostId = (/** @type {number} */ i) => `inv-${String(i).padStart(5, '0')}`;
const FIXED = '3.0.15-1~deb12u1';
/** The openssl versions across the fleet: a third each, the last one the fix. */
const OPENSSL_VERSIONS = ['3.0.13-1~deb12u1', '3.0.14-1~deb12u2', FIXED];

/**
 * Host i's packages: openssl and libssl3 (one source) at one of three versions, then M − 2 others
 * built from sources of three binaries each, every package at one of three versions — so the
 * dictionary holds a few thousand rows, as a real fleet's would, and each host 20 million links.
 * @param {number} i
 * @returns {InstalledPackage[]}
 */
function packagesOf(i) {
  const openssl = OPENSSL_VERSIONS[i % 3] ?? FIXED;
  /** @type {InstalledPackage[]} */
  const list = [
    {
      name: 'openssl',
      version: openssl,
      architecture: 'amd64',
      source: 'openssl',
      sourceVersion: openssl,
      status: 'ii',
    },
    {
      name: 'libssl3',
      version: openssl,
      architecture: 'amd64',
      source: 'openssl',
      sourceVersion: openssl,
      status: 'ii',
    },
  ];
  for (let p = 0; p < PACKAGES - 2; p++) {
    const version = `1.${(i * 7 + p) % 3}.${p % 10}-1`;
    list.push({
      name: `pkg-${String(p).padStart(4, '0')}`,
      version,
      architecture: p % 5 === 0 ? 'all' : 'amd64',
      source: `src-${String(Math.floor(p / 3)).padStart(4, '0')}`,
      sourceVersion: version,
      status: 'ii',
    });
  }
  return list;
}

/**
 * Runs one request `REPEAT` times, one after another; prints its wall-clock p50 and p99 and the
 * coordinator's CPU time per request (on a shared machine the wall clock also measures the neighbours).
 * @template T
 * @param {string} label
 * @param {() => Promise<T>} fn
 */
async function timed(label, fn) {
  /** @type {number[]} */
  const times = [];
  /** @type {T | undefined} */
  let last;
  const pid = coordinator?.child.pid;
  const cpu0 = cpuMsOf(pid);
  for (let r = 0; r < REPEAT; r++) {
    const t0 = performance.now();
    last = await fn();
    times.push(performance.now() - t0);
  }
  const cpuPerRequest = (cpuMsOf(pid) - cpu0) / REPEAT;
  times.sort((a, b) => a - b);
  say(
    `${label}: p50 ${percentile(times, 50).toFixed(1)} ms, p99 ${percentile(times, 99).toFixed(1)} ms wall; ` +
      `coordinator CPU ${cpuPerRequest.toFixed(0)} ms per request`,
  );
  return /** @type {T} */ (last);
}

/** @type {string[]} */
const failures = [];
/** @type {CoordinatorProcess | undefined} */
let coordinator;
/** @type {string | undefined} */
let work;

async function main() {
  work = await mkdtemp(join(scratchBase(flags.tmp), 'fleetpatch-bench-inventory-'));
  const dataDir = join(work, 'coordinator');
  say(`fleetpatch inventory bench: ${HOSTS} hosts × ${PACKAGES} packages, node ${process.version}; scratch ${work}`);

  // 1. Load, through what a coordinator runs for each agent's full inventory.
  const store = await Store.open(join(dataDir, 'fleetpatch.db'));
  const at = new Date().toISOString();
  await store.transaction(async () => {
    for (let i = 0; i < HOSTS; i++)
      await store.agents.enroll({ id: hostId(i), publicKey: 'A'.repeat(43), labels: {}, mayReplace: false }, at);
  });
  const sync = new InventorySync({
    store,
    channel: { send: () => true },
    clock: { now: () => Date.now() },
    log: pino({ level: 'warn' }),
  });
  const size = WIRE_LIMITS.inventoryPackagesPerFrame;
  let loadMs = 0;
  let loadCpuMs = 0;
  const cpuNow = () => {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  };
  let t = performance.now();
  for (let i = 0; i < HOSTS; i++) {
    const id = hostId(i);
    const packages = packagesOf(i);
    const digest = inventoryDigest(packages);
    const parts = Math.ceil(packages.length / size);
    // Only the coordinator's side is timed: the agent built and digested this. The sync writes in
    // batches by itself (every ~20,000 rows, or at the end of the event loop's turn).
    const t0 = performance.now();
    const c0 = cpuNow();
    sync.agentConnected(id);
    for (let part = 0; part < parts; part++) {
      await sync.onReport(id, {
        type: 'inventory.full',
        seq: 1,
        part,
        parts,
        digest,
        count: packages.length,
        packages: packages.slice(part * size, (part + 1) * size),
      });
    }
    loadMs += performance.now() - t0;
    loadCpuMs += cpuNow() - c0;
    if ((i + 1) % 2000 === 0 && i + 1 < HOSTS) say(`  … ${i + 1} hosts loaded (${secs(performance.now() - t)})`);
  }
  const t0 = performance.now();
  const c0 = cpuNow();
  await sync.flush();
  loadMs += performance.now() - t0;
  loadCpuMs += cpuNow() - c0;
  const notStored = Array.from({ length: HOSTS }, (_, i) => hostId(i)).filter((id) => !sync.isCurrent(id));
  if (notStored.length > 0)
    failures.push(`${notStored.length} inventories not stored, e.g. ${notStored.slice(0, 3).join(', ')}`);
  const wallMs = performance.now() - t;
  const rows = /** @type {number} */ (store.db.prepare('SELECT COUNT(*) FROM host_packages').pluck().get());
  const dictionary = /** @type {number} */ (store.db.prepare('SELECT COUNT(*) FROM package_versions').pluck().get());
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  await store.close();
  const dbMiB = statSync(join(dataDir, 'fleetpatch.db')).size / 1024 ** 2;
  say(
    `load: ${HOSTS} full inventories in ${secs(loadMs)} of coordinator work, ${secs(loadCpuMs)} of it on the CPU ` +
      `(${(loadMs / HOSTS).toFixed(1)} ms wall, ${(loadCpuMs / HOSTS).toFixed(1)} ms CPU per host; ${secs(wallMs)} wall with building them); ` +
      `${rows.toLocaleString('en')} host_packages rows, ` +
      `${dictionary.toLocaleString('en')} distinct package versions; database ${dbMiB.toFixed(0)} MiB`,
  );
  if (rows !== HOSTS * PACKAGES) failures.push(`host_packages holds ${rows} rows, expected ${HOSTS * PACKAGES}`);

  // 2. Queries, over HTTP, from a real coordinator on that store.
  t = performance.now();
  coordinator = await startCoordinator({
    dataDir,
    apiTokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' }],
  });
  say(`coordinator started on the loaded store in ${secs(performance.now() - t)}`);
  const admin = apiClient(coordinator.url, ADMIN_TOKEN);
  const query = `source=openssl&fixed=${encodeURIComponent(FIXED)}`;

  /** @type {ComplianceReport} */
  const compliance = await timed(`GET /v1/compliance?${query} (${HOSTS} hosts listed)`, () =>
    admin.get(`/v1/compliance?${query}`),
  );
  // Every agent is offline here, so every host is unknown — with what its inventory last said.
  const lastKnown = { exposed: 0, fixed: 0 };
  for (const h of compliance.hosts) if (h.lastKnown === 'exposed' || h.lastKnown === 'fixed') lastKnown[h.lastKnown]++;
  const expectedFixed = Math.floor(HOSTS / 3);
  if (compliance.counts.unknown !== HOSTS) failures.push(`compliance: ${compliance.counts.unknown} unknown`);
  if (lastKnown.fixed !== expectedFixed || lastKnown.exposed !== HOSTS - expectedFixed)
    failures.push(`compliance: last known ${JSON.stringify(lastKnown)}, expected ${expectedFixed} fixed`);

  await timed('GET /v1/compliance?…&status=exposed (the counts, no host listed)', () =>
    admin.get(`/v1/compliance?${query}&status=exposed`),
  );

  /** @type {PackageVersions} */
  const bySource = await timed('GET /v1/packages?source=openssl', () => admin.get('/v1/packages?source=openssl'));
  const counted = bySource.versions.reduce((n, v) => n + v.hosts, 0);
  if (counted !== 2 * HOSTS) failures.push(`packages?source=openssl counts ${counted} installs, expected ${2 * HOSTS}`);

  /** @type {PackageVersions} */
  const byName = await timed('GET /v1/packages?name=pkg-0001', () => admin.get('/v1/packages?name=pkg-0001'));
  if (byName.versions.reduce((n, v) => n + v.hosts, 0) !== HOSTS) failures.push('packages?name=pkg-0001 miscounts');

  const someHost = hostId(Math.floor(HOSTS / 2));
  /** @type {HostPackages} */
  const hostPackages = await timed(`GET /v1/hosts/${someHost}/packages (${PACKAGES} packages)`, () =>
    admin.get(`/v1/hosts/${someHost}/packages`),
  );
  if (hostPackages.packages.length !== PACKAGES) failures.push(`host packages: ${hostPackages.packages.length}`);
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  exitCode = 1;
  process.stderr.write(`inventory bench failed: ${err instanceof Error ? (err.stack ?? err) : err}\n`);
  if (coordinator) process.stderr.write(`last coordinator log lines:\n${coordinator.logs.slice(-20).join('\n')}\n`);
} finally {
  if (coordinator) await coordinator.stop().catch(() => {});
  if (work) await rm(work, { recursive: true, force: true }).catch(() => {});
}
for (const failure of failures) process.stderr.write(`CHECK FAILED: ${failure}\n`);
if (failures.length > 0) exitCode = 1;
say(`inventory bench: ${exitCode === 0 ? 'all checks passed' : 'FAILED'}`);
process.exit(exitCode);
