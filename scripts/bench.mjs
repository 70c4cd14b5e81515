// @ts-check
// `npm run bench [-- --agents N]`: one real coordinator process (or --coordinators K on PostgreSQL) and N real agents (the `Agent` class:
// connection, protocol, journal, file driver; one socket each, each confined to its own scratch root),
// spread over one child process per core (--agent-processes) so the load generator is not what is
// measured. Measures connect, a file-patch rollout to all N in waves [1, "10%", "50%", "100%"] with
// zero bake (per host dispatch → result p50/p99, the last wave's last order sent), a one-call revert,
// the coordinator's CPU per host and the agents' CPU per order (apart, from /proc), coordinator memory
// per connected agent, a reconnect storm (every agent process killed at once and started again: time
// until all are online, /healthz polled throughout) and the status API (full status, summary, a page
// of hosts). Prints numbers and writes them as JSON under bench/results/ with the machine described;
// asserts nothing about time — but checks every file on disk after the rollout and after the revert,
// and exits non-zero if any is wrong or an agent never came back.
//
// First, the wire's floor (scripts/lib/wire-floor.mjs): a bare ws server's CPU for one host's exchange,
// the yardstick beside the coordinator's CPU per host; the handshake's floor, the same server letting
// each agent in as the coordinator does (challenge, hello, ed25519 proof, welcome), the yardstick beside
// the storm's and the reset's; then the agent's floor: the durable writes and
// reads one file order requires, bare (scripts/lib/durability-floor.mjs), plus the wire floor's clients'
// side, the yardstick beside the agents' CPU per order.
//
// Then, unless --inventory-hosts 0, the package inventory bench (scripts/bench-inventory.mjs) with
// --inventory-hosts (10000) and --inventory-packages (2000), as its own process.
//
// Flags: --agents N (1000)   --max-parallel N (200; also the revert's revertParallel)
//        --content-bytes N (the new file's size: 27 bytes unless given, padded with comment lines up to N)
//        --agent-processes N (one per core)   --results DIR (bench/results)
//        --start-concurrency N (64: agent starts in flight per agent process; a first start enrolls)
//        --pending N (the coordinator's agentLimits.maxPendingSockets; default its own, 2048)
//        --pending-per-address N (its maxPendingSocketsPerAddress; default --pending: every bench agent dials
//          from 127.0.0.1, where a real fleet has an address per host; lower it to bench a fleet behind one NAT)
//        --deadline S (300: everything, setup to teardown)   --tmp DIR (/dev/shm if writable)
//        --store-tmp DIR (the coordinators' store under DIR instead, e.g. on a disk while the agents stay on the tmpfs;
//          with --store postgres its cluster too, so DIR must let the postgres user through)
//        --tick-ms N (1000) --heartbeat-ms N (10000): the coordinator's production defaults, not the tests' 100/1000
//        --cpu-prof DIR (write V8 CPU profiles of the coordinator (run unbundled) and of each agent process over the connect,
//          the idle phase, the rollout, the revert, each later round's (--rounds: rollout-2, revert-2, …), the status API,
//          the storm and the network reset there, for chrome://inspect, speedscope or scripts/profile-summary.mjs)
//        --idle-seconds S (one heartbeat interval): after the connect, the connected fleet left idle for S seconds, its
//          CPU measured: what heartbeats and pings cost while nothing happens, the share of each phase's CPU that is
//          not the phase's (0: skip). A whole interval, so that every agent's heartbeat and every slice of pings falls in it
//        --rounds R (1): after the first rollout and revert, R-1 more of the same patch, each a new rollout on the same
//          coordinator and agents: the first round pays V8 compiling the code it runs, the later ones show a warm coordinator
//        --store sqlite|postgres (sqlite)   --coordinators K (1; more than one needs postgres)
//        --lease-ms N (the group's rollout lease, default the coordinator's own)
//        --kill-driver (postgres, K ≥ 2: SIGKILL the coordinator driving the rollout once 30% of the hosts
//          are healthy, and time until another holds its lease and until the rollout succeeds)
//        --verb-view summary|full (summary): what the start and revert calls ask to be answered with, as the CLI
//          and the dashboard ask (`?view=summary`, ~1 KB) or the full status (~2 MB at 10,000 hosts)
// With --store postgres the bench starts a throwaway PostgreSQL 15 cluster of its own (initdb + pg_ctl as
// the `postgres` account, scripts/lib/postgres-cluster.mjs; needs root and Debian's postgresql-15), K
// coordinators on it (ids c1…cK), and agent i lists coordinator i mod K first, then the others. CPU and
// memory are then the coordinators' summed; the agents per coordinator come from GET /v1/group.
// A run whose open-files limit is too low for N re-runs itself under `ulimit -n` (up to the hard limit).
// The Ansible head-to-head (scripts/lib/ansible-head-to-head.mjs): after the revert, Ansible's `copy`
// makes the same change to the same roots with the rollout's waves as `serial` and one fork per host
// (at most 50), and the bench prints the ratio of the two wall times from this run. It runs when
// `ansible-playbook` is installed (Debian: ansible-core) and N ≤ 100, or at any N with --ansible;
// --skip-ansible leaves it out.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { APPLY_END_STATES } from '@fleetpatch/shared';
import { hasAnsible, runAnsibleCopy } from './lib/ansible-head-to-head.mjs';
import { AgentProcesses } from './lib/bench-agent-fleet.mjs';
import {
  cpuMsOf,
  fileSystemOf,
  percentile,
  processStateOf,
  scratchBase,
  wireCounters,
  wirePerHost,
} from './lib/bench-measures.mjs';
import { startWatchers } from './lib/bench-watchers.mjs';
import { measureDurabilityFloor } from './lib/durability-floor.mjs';
import { HealthzWatch } from './lib/healthz-watch.mjs';
import { apiClient, COORDINATOR_UNBUNDLED, startCoordinator, waitFor } from './lib/local-fleet.mjs';
import { startCluster } from './lib/postgres-cluster.mjs';
import { sampleFacts, samplePatch, sampleRollout, sha256Of } from './lib/sample-specs.mjs';
import { measureHandshakeFloor, measureWireFloor } from './lib/wire-floor.mjs';

/**
 * @import { AgentList, EventPage, EventRecord, GroupView, Healthz, JoinTokenCreated, Patch, RolloutList, RolloutRecord, RolloutState, RolloutStatus, RolloutSummary } from '@fleetpatch/shared'
 * @import { CoordinatorProcess } from './lib/local-fleet.mjs'
 * @import { RunningCluster } from './lib/postgres-cluster.mjs'
 */

const USAGE =
  'usage: bench.mjs [--agents N] [--max-parallel N] [--agent-processes N] [--deadline SECONDS] [--tmp DIR] [--results DIR]\n' +
  '                 [--content-bytes 27..1048576] [--rounds R] [--idle-seconds S] [--target labels|hosts]\n' +
  '                 [--store sqlite|postgres] [--coordinators K] [--lease-ms N] [--kill-driver] [--watchers K]\n' +
  '                 [--verb-view summary|full] [--store-tmp DIR]\n';
const { values: flags } = parseFlags({
  options: {
    agents: { type: 'string', default: '1000' },
    'max-parallel': { type: 'string', default: '200' },
    'content-bytes': { type: 'string' },
    target: { type: 'string', default: 'labels' },
    deadline: { type: 'string', default: '300' },
    tmp: { type: 'string' },
    'store-tmp': { type: 'string' },
    'cpu-prof': { type: 'string' },
    'tick-ms': { type: 'string', default: '1000' },
    'heartbeat-ms': { type: 'string', default: '10000' },
    'inventory-hosts': { type: 'string', default: '10000' },
    'inventory-packages': { type: 'string', default: '2000' },
    'agent-processes': { type: 'string', default: String(cpus().length) },
    'start-concurrency': { type: 'string', default: '64' },
    'pending-per-address': { type: 'string' },
    pending: { type: 'string', default: '2048' },
    store: { type: 'string', default: 'sqlite' },
    coordinators: { type: 'string', default: '1' },
    'lease-ms': { type: 'string' },
    'kill-driver': { type: 'boolean', default: false },
    watchers: { type: 'string', default: '0' },
    rounds: { type: 'string', default: '1' },
    'verb-view': { type: 'string', default: 'summary' },
    'idle-seconds': { type: 'string' },
    ansible: { type: 'boolean', default: false },
    'skip-ansible': { type: 'boolean', default: false },
    results: { type: 'string', default: fileURLToPath(new URL('../bench/results', import.meta.url)) },
  },
  strict: true,
});

/**
 * `parseArgs`, with a flag it cannot read (unknown, a value missing, or one that looks like a flag:
 * `--idle-seconds -1`) answered by what is wrong and the usage, exit 2, before anything starts.
 * @template {import('node:util').ParseArgsConfig} T @param {T} config
 */
function parseFlags(config) {
  try {
    return parseArgs(config);
  } catch (err) {
    process.stderr.write(`bench.mjs: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exit(2);
  }
}
const N = Number.parseInt(flags.agents, 10);
/** The coordinator's `agentLimits.maxPendingSockets` (its default, 2048, unless --pending) and the cap per address. */
const PENDING = Number.parseInt(flags.pending, 10);
const PENDING_PER_ADDRESS = flags['pending-per-address'] ? Number.parseInt(flags['pending-per-address'], 10) : PENDING;
const MAX_PARALLEL = Number.parseInt(flags['max-parallel'], 10);
const IDLE_MS =
  flags['idle-seconds'] === undefined
    ? Number.parseInt(flags['heartbeat-ms'], 10)
    : Number.parseFloat(flags['idle-seconds']) * 1000;
/** Orders the agent's floor is measured over, whatever N: a figure per order, steady to a few µs over 2,000. */
const DURABILITY_FLOOR_ORDERS = 2000;
const CONTENT_BYTES = flags['content-bytes'] === undefined ? undefined : Number.parseInt(flags['content-bytes'], 10);
const DEADLINE_MS = Number.parseFloat(flags.deadline) * 1000;
const TARGET = flags.target;
const AGENT_PROCESSES = Number.parseInt(flags['agent-processes'], 10);
const START_CONCURRENCY = Number.parseInt(flags['start-concurrency'], 10);
const STORE = flags.store;
const K = Number.parseInt(flags.coordinators, 10);
const LEASE_MS = flags['lease-ms'] === undefined ? undefined : Number.parseInt(flags['lease-ms'], 10);
const KILL_DRIVER = flags['kill-driver'] === true;
const ROUNDS = Number.parseInt(flags.rounds, 10);
const VERB_VIEW = flags['verb-view'];
/** `rollout status --watch` processes following the first rollout (scripts/lib/bench-watchers.mjs). */
const WATCHERS = Number.parseInt(flags.watchers, 10);
const PROFILE_DIR = flags['cpu-prof'] === undefined ? undefined : resolve(flags['cpu-prof']);
if (
  !(N >= 1) ||
  !(MAX_PARALLEL >= 1) ||
  !(DEADLINE_MS > 0) ||
  !(AGENT_PROCESSES >= 1) ||
  !(START_CONCURRENCY >= 1) ||
  (STORE !== 'sqlite' && STORE !== 'postgres') ||
  (TARGET !== 'labels' && TARGET !== 'hosts') ||
  !(K >= 1) ||
  !(ROUNDS >= 1) ||
  (VERB_VIEW !== 'summary' && VERB_VIEW !== 'full') ||
  !(WATCHERS >= 0) ||
  !(IDLE_MS >= 0) ||
  (LEASE_MS !== undefined && !(LEASE_MS >= 1)) ||
  (CONTENT_BYTES !== undefined && !(CONTENT_BYTES >= 27 && CONTENT_BYTES <= 1024 * 1024))
) {
  process.stderr.write(USAGE);
  process.exit(2);
}
// A group of coordinators shares one database: SQLite is one process's file.
if (STORE === 'sqlite' && (K > 1 || LEASE_MS !== undefined || KILL_DRIVER)) {
  process.stderr.write('bench.mjs: --coordinators above 1, --lease-ms and --kill-driver need --store postgres\n');
  process.exit(2);
}
if (KILL_DRIVER && PROFILE_DIR) {
  // A SIGKILLed coordinator writes no profile, and the kill would be in the middle of the one measured.
  process.stderr.write('bench.mjs: --cpu-prof and --kill-driver do not go together\n');
  process.exit(2);
}
if (KILL_DRIVER && WATCHERS > 0) {
  // The watchers follow the first coordinator, which may be the one killed.
  process.stderr.write('bench.mjs: --watchers and --kill-driver do not go together\n');
  process.exit(2);
}
if (KILL_DRIVER && K < 2) {
  process.stderr.write(
    'bench.mjs: --kill-driver needs --coordinators 2 or more (someone must take the rollout over)\n',
  );
  process.exit(2);
}

// The store's own scratch goes under a directory the operator names: one that is not there is a typo.
if (flags['store-tmp'] !== undefined && !isDirectory(flags['store-tmp'])) {
  process.stderr.write(`bench.mjs: --store-tmp ${flags['store-tmp']} is not a directory\n`);
  process.exit(2);
}

// Each agent holds one socket in its agent process and one in the coordinator (the coordinator inherits
// this process's limit), plus the database, journals and fetch sockets.
const NEEDED_FILES = N + 512;
const limitNow = openFilesLimit();
if (limitNow.soft !== 'unlimited' && Number(limitNow.soft) < NEEDED_FILES) {
  if (process.env.FLEETPATCH_BENCH_RAISED_ULIMIT) {
    process.stderr.write(
      `open-files limit ${limitNow.soft} is below the ~${NEEDED_FILES} this bench needs, and the hard limit (${limitNow.hard}) does not allow more\n`,
    );
    process.exit(2);
  }
  const raised = limitNow.hard === 'unlimited' ? NEEDED_FILES : Math.min(NEEDED_FILES, Number(limitNow.hard));
  process.stdout.write(`raising the open-files limit from ${limitNow.soft} to ${raised} (ulimit -n) and re-running\n`);
  const rerun = spawnSync(
    '/bin/sh',
    ['-c', `ulimit -n ${raised} && exec "$0" "$@"`, process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    { stdio: 'inherit', env: { ...process.env, FLEETPATCH_BENCH_RAISED_ULIMIT: '1' } },
  );
  process.exit(rerun.status ?? 1);
}

/** The head-to-head runs by itself up to this many hosts; --ansible runs it at any N. */
const ANSIBLE_MAX_HOSTS = 100;
/** Ansible's own default is 5; one per host (up to this many) gives it every chance. */
const ANSIBLE_MAX_FORKS = 50;

const CONFIG_PATH = '/etc/bench/app.conf';
const OLD = 'listen = 8080\nworkers = 2\n';
const NEW = paddedTo('listen = 8080\nworkers = 4\n', CONTENT_BYTES);
const FACTS = sampleFacts('bench');
const ADMIN_TOKEN = 'bench-admin-token-000001';
const say = (line = '') => process.stdout.write(`${line}\n`);
const secs = (/** @type {number} */ ms) => `${(ms / 1000).toFixed(2)} s`;
const mib = (/** @type {number} */ kib) => `${(kib / 1024).toFixed(0)} MiB`;
const hostId = (/** @type {number} */ i) => `bench-${String(i).padStart(5, '0')}`;
const started = Date.now();
const remaining = () => Math.max(1000, started + DEADLINE_MS - Date.now());

/**
 * VmRSS and VmHWM (peak) of a process, in KiB, from /proc (Linux only; null elsewhere).
 * @param {number | undefined} pid
 */
function memoryOf(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (/** @type {string} */ name) => Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'))?.[1]);
    return { rss: field('VmRSS'), peak: field('VmHWM') };
  } catch {
    return null;
  }
}

/** Open-files limit of this process (the coordinator child inherits it): each agent is one fd on each side. */
/** @param {string} path */
function isDirectory(path) {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
}

function openFilesLimit() {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    const soft = limits.match(/^Max open files\s+(\S+)\s+(\S+)/m);
    if (soft) return { soft: soft[1], hard: soft[2] };
  } catch {}
  try {
    return { soft: execFileSync('/bin/sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim(), hard: '?' };
  } catch {
    return { soft: 'unknown', hard: '?' };
  }
}

/**
 * Each coordinator's wire and transaction counters (`GET /metrics`), by URL.
 * @param {readonly CoordinatorProcess[]} group
 */
async function wireOf(group) {
  return new Map(
    await Promise.all(
      group.map(
        async (c) =>
          /** @type {const} */ ([
            c.url,
            wireCounters(await (await apiClient(c.url, ADMIN_TOKEN).raw('GET', '/metrics')).text()),
          ]),
      ),
    ),
  );
}

/** Agent upgrades the live coordinators have answered 503 at their socket caps so far (`agentLimits`). */
async function upgradesRefused() {
  let sum = 0;
  for (const counters of (await wireOf(live())).values()) sum += counters.upgradesRefused;
  return sum;
}

/** Pending agent sockets the live coordinators have destroyed at their byte budgets so far (`agentLimits`). */
async function socketsCut() {
  let sum = 0;
  for (const counters of (await wireOf(live())).values()) sum += counters.socketsCut;
  return sum;
}

/**
 * Per host, what the coordinators alive at the end did between two `wireOf` readings (a coordinator
 * SIGKILLed in between took its counters with it, so it is left out of both).
 * @param {Awaited<ReturnType<typeof wireOf>>} before
 * @param {Awaited<ReturnType<typeof wireOf>>} after
 */
function wireBetween(before, after) {
  /** @param {Awaited<ReturnType<typeof wireOf>>} readings */
  const sum = (readings) => {
    /** @type {Record<string, number>} */
    const messages = {};
    let transactions = 0;
    for (const url of after.keys()) {
      const r = readings.get(url);
      if (!r) continue;
      for (const [k, n] of Object.entries(r.messages)) messages[k] = (messages[k] ?? 0) + n;
      transactions += r.transactions;
    }
    return { messages, transactions };
  };
  return wirePerHost(sum(before), sum(after), N);
}

/** @param {ReturnType<typeof wirePerHost>} wire */
function wireLine(wire) {
  const typeOf = (/** @type {string} */ key) => key.replace(/^(received|sent) /, '');
  const keys = Object.keys(wire.byType);
  // A type that goes both ways (heartbeats: the agents' pings in, the coordinator's out) says which way.
  const bothWays = (/** @type {string} */ key) => keys.filter((k) => typeOf(k) === typeOf(key)).length > 1;
  const types = Object.entries(wire.byType)
    .map(([key, n]) => {
      const way = bothWays(key) ? (key.startsWith('received ') ? ' in' : ' out') : '';
      return `${typeOf(key)}${way} ${n.toFixed(2)}`;
    })
    .join(', ');
  return `per host: ${wire.messagesIn.toFixed(2)} messages in, ${wire.messagesOut.toFixed(2)} out (${types}); ${wire.transactions.toFixed(2)} store transactions`;
}

const PROFILER_PRELOAD = fileURLToPath(new URL('lib/phase-profiler-preload.mjs', import.meta.url));

/**
 * `--cpu-prof DIR`: the environment of a profiled process (coordinator or agent process), whose
 * preload profiles between two SIGUSR2s (scripts/lib/phase-profiler-preload.mjs).
 * @param {string} role the profile files' prefix
 */
function profiledEnv(role) {
  /** @type {Record<string, string>} */
  const env = {
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${PROFILER_PRELOAD}`.trim(),
    FLEETPATCH_PROFILE_DIR: PROFILE_DIR ?? '.',
    FLEETPATCH_PROFILE_ROLE: role,
  };
  return env;
}

/** The pids of the coordinators and agent processes, as they are now. @param {readonly CoordinatorProcess[]} group @param {AgentProcesses} fleet */
const pidsOf = (group, fleet) =>
  [...group.map((c) => c.child.pid), ...fleet.children.map((c) => c.pid)].filter((pid) => pid !== undefined);

/**
 * Profiles the coordinators and agent processes over one phase of the run (`--cpu-prof DIR`; otherwise
 * does nothing). Resolves to the function that ends the phase once every process has written
 * DIR/<role>-<pid>-<phase>.cpuprofile. The processes that end it may be others than those that began
 * it (the reconnect storm's new agent processes, which profile from their start): it is told them.
 * @param {string} phase
 * @param {readonly CoordinatorProcess[]} group
 * @param {AgentProcesses} fleet
 * @returns {Promise<(endFleet?: AgentProcesses) => Promise<void>>}
 */
async function profilePhase(phase, group, fleet) {
  if (!PROFILE_DIR) return async () => {};
  for (const pid of pidsOf(group, fleet)) process.kill(pid, 'SIGUSR2');
  return async (endFleet = fleet) => {
    const pids = pidsOf(group, endFleet);
    await writeFile(join(PROFILE_DIR, '.phase'), phase);
    for (const pid of pids) process.kill(pid, 'SIGUSR2');
    await waitFor(
      `the ${phase} profiles of ${pids.length} processes`,
      async () => (await readdir(PROFILE_DIR)).filter((f) => f.endsWith(`-${phase}.cpuprofile`)).length >= pids.length,
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  };
}

/**
 * Runs `fn` over `items` with at most `limit` in flight.
 * @template T
 * @param {readonly T[]} items
 * @param {number} limit
 * @param {(item: T, index: number) => Promise<void>} fn
 */
async function pool(items, limit, fn) {
  // One iterator shared by every worker: each takes the next item when it is free.
  const queue = items.entries();
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    for (const [i, item] of queue) await fn(item, i);
  });
  await Promise.all(workers);
}

/** The last CPU time read of each coordinator: a killed one's (--kill-driver) stays counted at its last reading. */
/** @type {Map<number | undefined, number>} */
const lastCoordinatorCpuMs = new Map();

/**
 * CPU time (ms) of every coordinator so far, summed; a gone one counts what it had used when last read.
 * @param {readonly CoordinatorProcess[]} group
 */
function coordinatorsCpuMs(group) {
  let sum = 0;
  for (const { child } of group) {
    const ms = cpuMsOf(child.pid);
    if (!Number.isNaN(ms)) lastCoordinatorCpuMs.set(child.pid, ms);
    sum += lastCoordinatorCpuMs.get(child.pid) ?? 0;
  }
  return sum;
}

/**
 * A CPU stopwatch over the coordinators and the agent processes: each one's CPU time (ms) since it started.
 * @param {readonly CoordinatorProcess[]} group every coordinator (summed)
 * @param {AgentProcesses} fleet
 */
function cpuMeter(group, fleet) {
  const t0 = performance.now();
  const c0 = coordinatorsCpuMs(group);
  const a0 = fleet.cpuMs();
  return () => {
    const wallMs = performance.now() - t0;
    return { wallMs, coordinatorMs: coordinatorsCpuMs(group) - c0, agentsMs: fleet.cpuMs() - a0 };
  };
}

/**
 * Every coordinator's VmRSS and peak (KiB), and their sum.
 * @param {readonly CoordinatorProcess[]} group
 */
function memoryOfAll(group) {
  const each = group.map(({ child }) => memoryOf(child.pid));
  const total = (/** @type {'rss' | 'peak'} */ field) => each.reduce((sum, m) => sum + (m?.[field] ?? Number.NaN), 0);
  return { each, rss: total('rss'), peak: total('peak') };
}

/** @param {{ wallMs: number, coordinatorMs: number, agentsMs: number }} cpu @param {number} perHosts */
function cpuLine(cpu, perHosts) {
  const pct = (/** @type {number} */ ms) => `${((ms / cpu.wallMs) * 100).toFixed(0)}%`;
  return `cpu: coordinator${K > 1 ? `s (${K}, summed)` : ''} ${pct(cpu.coordinatorMs)} of a core = ${((cpu.coordinatorMs * 1000) / perHosts).toFixed(0)} µs/host; agents ${pct(cpu.agentsMs)} = ${((cpu.agentsMs * 1000) / perHosts).toFixed(0)} µs/order`;
}

/** @param {number[]} values */
function spread(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.at(-1) ?? Number.NaN,
  };
}

/** This machine, for the results file: the figures mean nothing without it. */
function machine() {
  const cpu = cpus();
  return {
    cpuModel: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memoryBytes: totalmem(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAverage: loadavg(),
  };
}

// ---- the run ---------------------------------------------------------------------------------------

/** @type {string[]} */
const failures = [];
/** @type {AgentProcesses | undefined} */
let fleet;
/** @type {CoordinatorProcess[]} every coordinator started (a killed one stays listed: its CPU still counts) */
const coordinators = [];
/** @type {Set<CoordinatorProcess>} the ones killed by --kill-driver */
const killed = new Set();
const live = () => coordinators.filter((c) => !killed.has(c));
/** @type {RunningCluster | undefined} */
let cluster;
/** @type {string | undefined} */
let work;
/** @type {string | undefined} the coordinators' own scratch, when --store-tmp puts their store apart from the agents' */
let storeScratch;
/** @type {ReturnType<typeof startWatchers> | undefined} */
let watchers;
/** @type {Promise<void> | null} */
let cleaning = null;
/** Every figure of the run, written to --results as JSON. */
/** @type {Record<string, unknown>} */
const result = {
  bench: 'fleetpatch',
  startedAt: new Date().toISOString(),
  agents: N,
  contentBytes: Buffer.byteLength(NEW),
  store: STORE,
  coordinators: K,
  flags,
  machine: machine(),
};

/** Idempotent; every caller (main, the watchdog, a signal) waits for the same teardown. */
function cleanup() {
  cleaning ??= teardown();
  return cleaning;
}

async function teardown() {
  const t = performance.now();
  // Agents first (each closes its socket), then the coordinators, then their database, then the scratch tree.
  watchers?.kill();
  if (fleet) await fleet.stop().catch(() => {});
  await Promise.all(live().map((c) => c.stop().catch(() => {})));
  cluster?.stop();
  if (work) await rm(work, { recursive: true, force: true }).catch(() => {});
  if (storeScratch) await rm(storeScratch, { recursive: true, force: true }).catch(() => {});
  say(
    `teardown (stop ${N} agents + ${coordinators.length} coordinator(s)${cluster ? ' + PostgreSQL' : ''}, rm scratch): ${secs(performance.now() - t)}`,
  );
}

function printCoordinatorLogs() {
  for (const [k, c] of coordinators.entries())
    process.stderr.write(`last log lines of coordinator c${k + 1}:\n${c.logs.slice(-20).join('\n')}\n`);
}

// Overall deadline: whatever is stuck, tear down and exit non-zero.
const watchdog = setTimeout(async () => {
  process.stderr.write(`bench: overall deadline of ${secs(DEADLINE_MS)} passed; tearing down\n`);
  printCoordinatorLogs();
  await printAgentProcessStates();
  const hard = setTimeout(() => process.exit(3), 15_000);
  hard.unref();
  // Fire and forget: the process exits when the teardown settles, whichever way it goes.
  void cleanup().finally(() => process.exit(3));
}, DEADLINE_MS);

/**
 * What each agent process was doing when the run got stuck: its state and its CPU over one second —
 * a whole second of CPU is a loop that never yields, none is a wait (in `wchan`, system call `syscall`).
 */
async function printAgentProcessStates() {
  const pids = fleet?.children.map((child) => child.pid) ?? [];
  const before = pids.map((pid) => processStateOf(pid));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  pids.forEach((pid, i) => {
    const now = processStateOf(pid);
    const cpuMs = now.cpuMs - (before[i]?.cpuMs ?? Number.NaN);
    process.stderr.write(
      `agent process ${pid}: state ${now.state}, ${cpuMs} ms of CPU in the last second, wchan ${now.wchan}, syscall ${now.syscall}\n`,
    );
  });
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    process.stderr.write(`bench: ${signal}; tearing down\n`);
    // Fire and forget: the process exits when the teardown settles, whichever way it goes.
    void cleanup().finally(() => process.exit(130));
  });
}

/**
 * Starts coordinator `k` (c1, c2, …): on its own SQLite file, or a member of the group on the bench's
 * PostgreSQL cluster.
 * @param {string} scratch
 * @param {number} k
 */
function startBenchCoordinator(scratch, k) {
  return startCoordinator({
    dataDir: join(storeScratch ?? scratch, `coordinator-c${k + 1}`),
    apiTokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' }],
    tickIntervalMs: Number.parseInt(flags['tick-ms'], 10),
    heartbeatIntervalMs: Number.parseInt(flags['heartbeat-ms'], 10),
    // The bench's rollouts run without an approver (requiredApprovals 0); the coordinator must allow it.
    extraConfig: {
      minApprovals: 0,
      // Every bench agent dials from 127.0.0.1, where a real fleet has an address per host: the cap per
      // address is the whole cap unless --pending-per-address asks for a fleet behind one NAT.
      agentLimits: { maxPendingSockets: PENDING, maxPendingSocketsPerAddress: PENDING_PER_ADDRESS },
      ...(cluster
        ? {
            store: {
              kind: 'postgres',
              url: cluster.urlOf('postgres'),
              coordinatorId: `c${k + 1}`,
              ...(LEASE_MS === undefined ? {} : { leaseMs: LEASE_MS }),
            },
          }
        : {}),
    },
    // Log level stays at info (startCoordinator waits for the "listening" line): two lines per agent connection.
    // Profiled, it runs unbundled: the profile then names each module (scripts/profile-summary.mjs sums by them).
    ...(PROFILE_DIR ? { env: profiledEnv(`coordinator-c${k + 1}`), bin: COORDINATOR_UNBUNDLED } : {}),
  });
}

async function main() {
  const limit = openFilesLimit();
  say(
    `fleetpatch bench: ${N} agents over ${Math.min(AGENT_PROCESSES, N)} agent processes, node ${process.version}, ${cpus().length} × ${cpus()[0]?.model}, ulimit -n ${limit.soft}; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}; the file rolled out: ${Buffer.byteLength(NEW)} bytes`,
  );

  // 0. The yardstick, before anything else loads the machine: a bare ws server's CPU for one host's
  // exchange (scripts/lib/wire-floor.mjs), the least a coordinator could spend per host here.
  const floor = await measureWireFloor(N);
  say(
    `wire floor: a bare ws server, ${N} clients, one order, result and ack each (2 out, 1 in): ${floor.serverCpuUsPerHost.toFixed(0)} µs of server CPU per host, ${secs(floor.wallMs)}`,
  );
  result.wireFloor = floor;
  // And the handshake's: a bare server letting N agents in as the coordinator does, the yardstick for
  // the reconnect storm and the network reset.
  const handshake = await measureHandshakeFloor(N);
  say(
    `handshake floor: a bare ws server lets ${N} clients in as the coordinator does (upgrade, challenge, hello with its ed25519 proof checked, welcome): ${handshake.serverCpuUsPerConnection.toFixed(0)} µs of server CPU per connection, ${handshake.clientCpuUsPerConnection.toFixed(0)} µs of the clients', ${secs(handshake.wallMs)}`,
  );
  result.handshakeFloor = handshake;

  const scratch = await mkdtemp(join(scratchBase(flags.tmp), 'fleetpatch-bench-'));
  work = scratch;
  // Every durable write of the run lands here: on a tmpfs an fsync costs nothing, on a disk it is most
  // of an agent's order (see the README's Performance section), so each run says which it had.
  const scratchFileSystem = fileSystemOf(scratch);
  result.scratchFileSystem = scratchFileSystem;
  say(
    `scratch ${scratch} on ${scratchFileSystem}: the agents' journals and roots${flags['store-tmp'] ? '' : ", the coordinators' store"}${scratchFileSystem === 'tmpfs' ? ' (--tmp DIR puts them on a disk)' : ''}`,
  );
  // The store on a file system of its own (--store-tmp): a coordinator's commits synced on a disk while
  // its agents, which in a real fleet each have a machine and a disk of their own, stay on the tmpfs.
  if (flags['store-tmp']) {
    storeScratch = await mkdtemp(join(flags['store-tmp'], 'fleetpatch-bench-store-'));
    // A PostgreSQL cluster runs as its own user, in a directory of its own in here: it must pass
    // through (mkdtemp made it the owner's alone). Nothing in it is readable to others but that.
    if (STORE === 'postgres') await chmod(storeScratch, 0o711);
    result.storeFileSystem = fileSystemOf(storeScratch);
    say(`the coordinators' store in ${storeScratch} on ${result.storeFileSystem} (--store-tmp)`);
  }
  // The agent's yardstick, on the file system its agents' journals and roots will be on: the least an
  // agent honouring the durability rules spends per file order, its file system calls and its side of the wire.
  const durability = await measureDurabilityFloor(join(scratch, 'durability-floor'), DURABILITY_FLOOR_ORDERS);
  const agentFloorUs = durability.cpuUsPerOrder + floor.clientCpuUsPerHost;
  say(
    `agent floor: ${agentFloorUs.toFixed(0)} µs per order = the file system calls one file order requires, bare (${durability.orders} orders in one process, 5 atomic replaces, 3 reads, one parent walk): ${durability.cpuUsPerOrder.toFixed(0)} µs (${durability.systemUsPerOrder.toFixed(0)} in the kernel) + the wire floor's clients' side: ${floor.clientCpuUsPerHost.toFixed(0)} µs`,
  );
  result.agentFloor = { usPerOrder: agentFloorUs, durability, wireClientUsPerOrder: floor.clientCpuUsPerHost };
  if (STORE === 'postgres') {
    const t0 = performance.now();
    // Our own SIGTERM/SIGINT handlers tear down agents and coordinators first, then the cluster. It
    // lives where the SQLite coordinator's file would (a tmpfs when there is one): the same disk for both stores.
    cluster = await startCluster({ stopOnSignal: false, parent: storeScratch ?? scratchBase(flags.tmp) });
    say(
      `PostgreSQL 15 cluster on 127.0.0.1:${cluster.port} (fsync on) in ${cluster.dir}, started in ${secs(performance.now() - t0)}`,
    );
  }
  if (PROFILE_DIR) await mkdir(PROFILE_DIR, { recursive: true });
  // One after the other: the first one migrates the shared database.
  for (let k = 0; k < K; k++) coordinators.push(await startBenchCoordinator(scratch, k));
  let admin = apiClient(coordinators[0]?.url ?? '', ADMIN_TOKEN);
  for (const [k, c] of coordinators.entries())
    say(`coordinator c${k + 1} pid ${c.child.pid} on ${c.url} (${STORE}); scratch ${work}`);
  /** Agents online: each live coordinator's own sockets, summed. */
  const onlineCount = async () => {
    const counts = await Promise.all(
      live().map(async (c) => {
        /** @type {Healthz} */
        const { agentsOnline } = await apiClient(c.url, ADMIN_TOKEN).get('/healthz');
        return agentsOnline;
      }),
    );
    return counts.reduce((a, b) => a + b, 0);
  };

  // Lay out the fleet: one multi-use join token; each agent enrolls (its own ed25519 key) on start.
  const ids = Array.from({ length: N }, (_, i) => hostId(i));
  /** @type {JoinTokenCreated} */
  const { token: joinToken } = await admin.post('/v1/join-tokens', {
    uses: N,
    labels: { role: 'bench' },
    expiresInSeconds: 24 * 3600,
  });
  await pool(ids, 64, async (id) => {
    await mkdir(join(scratch, id, 'root', 'etc/bench'), { recursive: true });
    await writeFile(join(scratch, id, 'root', CONFIG_PATH), OLD, { mode: 0o644 });
  });
  const agentFleet = new AgentProcesses(
    ids,
    AGENT_PROCESSES,
    {
      coordinatorUrls: coordinators.map((c) => c.url),
      joinToken,
      scratch,
      facts: FACTS,
      startConcurrency: START_CONCURRENCY,
    },
    PROFILE_DIR ? { ...process.env, ...profiledEnv('agents') } : undefined,
  );
  fleet = agentFleet;
  /**
   * Waits until all N agents are online, noting on the way when half and nine tenths of them first were
   * (ms after `from`): the shape of a storm's return, which its end alone does not show.
   * @param {string} what
   * @param {number} from
   */
  const allOnline = async (what, from) => {
    /** @type {{ halfMs?: number, ninetyPercentMs?: number }} */
    const milestones = {};
    await waitFor(
      what,
      async () => {
        const count = await onlineCount();
        const at = performance.now() - from;
        if (count >= N / 2) milestones.halfMs ??= at;
        if (count >= N * 0.9) milestones.ninetyPercentMs ??= at;
        return count === N;
      },
      { timeoutMs: remaining(), intervalMs: 50 },
    );
    return milestones;
  };

  // 1. Connect (enrollment included: each agent's first start).
  const rssBefore = memoryOfAll(coordinators);
  let t = performance.now();
  let cpu = cpuMeter(coordinators, agentFleet);
  // --cpu-prof: the coordinator over the first connect, the agent processes from their first line.
  const endConnectProfile = await profilePhase('connect', coordinators, agentFleet);
  const wireBeforeConnect = await wireOf(coordinators);
  await agentFleet.start(PROFILE_DIR ? { FLEETPATCH_PROFILE_FROM_START: '1' } : undefined);
  await allOnline(`${N} agents online`, t);
  const connectMs = performance.now() - t;
  const connectCpu = cpu();
  await endConnectProfile(agentFleet);
  const connectRefused = await upgradesRefused();
  const connectCut = await socketsCut();
  // Each first start commits its enrollment and its hello (both shared with others of the moment).
  const connectTransactions = wireBetween(wireBeforeConnect, await wireOf(coordinators)).transactions;
  const rssConnected = memoryOfAll(coordinators);
  const perAgentBytes = ((rssConnected.rss - rssBefore.rss) * 1024) / N;
  say(
    `connect ${N} agents (first start: enrolment included, ${START_CONCURRENCY} starts in flight per agent process): ${secs(connectMs)}; ${connectRefused} upgrades refused 503, ${connectCut} cut at the byte budget; ${connectTransactions.toFixed(2)} store transactions per agent; ${cpuLine(connectCpu, N)}`,
  );
  say(
    `coordinator RSS${K > 1 ? ` (${K}, summed)` : ''}: ${mib(rssBefore.rss)} before, ${mib(rssConnected.rss)} with ${N} connected = ${(perAgentBytes / 1024).toFixed(1)} KiB per connected agent`,
  );
  result.connect = {
    ...connectCpu,
    wallMs: connectMs,
    upgradesRefused: connectRefused,
    socketsCut: connectCut,
    transactionsPerAgent: connectTransactions,
  };
  result.memory = {
    rssBeforeKiB: rssBefore.rss,
    rssConnectedKiB: rssConnected.rss,
    perAgentBytes,
    perCoordinator: coordinators.map((_, k) => ({
      id: `c${k + 1}`,
      rssBeforeKiB: rssBefore.each[k]?.rss,
      rssConnectedKiB: rssConnected.each[k]?.rss,
    })),
  };
  if (STORE === 'postgres') result.agentsPerCoordinator = await agentsPerCoordinator(admin);

  // 1b. Idle: the connected fleet's own cost while nothing happens (agents' heartbeats, the coordinator's
  // pings and its sweeps), per agent per second. Every later phase pays it too, for as long as it lasts:
  // the rollout's line says how much of its CPU per host that is, so the rollout's own cost can be read apart.
  /** @type {{ coordinatorUsPerAgentSecond: number, agentsUsPerAgentSecond: number } | undefined} */
  let idle;
  if (IDLE_MS > 0) {
    const endIdleProfile = await profilePhase('idle', coordinators, agentFleet);
    const idleCpu = cpuMeter(coordinators, agentFleet);
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    const { wallMs, coordinatorMs, agentsMs } = idleCpu();
    await endIdleProfile();
    const perAgentSecond = (/** @type {number} */ ms) => (ms * 1000) / N / (wallMs / 1000);
    idle = {
      coordinatorUsPerAgentSecond: perAgentSecond(coordinatorMs),
      agentsUsPerAgentSecond: perAgentSecond(agentsMs),
    };
    say(
      `idle ${secs(wallMs)}, ${N} agents connected: coordinator ${((coordinatorMs / wallMs) * 100).toFixed(1)}% of a core = ${idle.coordinatorUsPerAgentSecond.toFixed(1)} µs per agent per second; agents ${((agentsMs / wallMs) * 100).toFixed(1)}% = ${idle.agentsUsPerAgentSecond.toFixed(1)} µs per agent per second`,
    );
    result.idle = { wallMs, coordinatorMs, agentsMs, ...idle };
  }
  /** The idle cost over a phase's wall time, per host: the part of its CPU per host that is not the phase's. */
  const idleLine = (/** @type {{ wallMs: number }} */ cpu) =>
    idle === undefined
      ? ''
      : `; of it the fleet's idle cost over the same ${secs(cpu.wallMs)}: coordinator ${((idle.coordinatorUsPerAgentSecond * cpu.wallMs) / 1000).toFixed(0)} µs/host, agents ${((idle.agentsUsPerAgentSecond * cpu.wallMs) / 1000).toFixed(0)} µs/order`;

  // 2. Roll out.
  /** @type {Patch} */
  const patch = await admin.post(
    '/v1/patches',
    samplePatch({
      title: 'Bench: raise workers to 4',
      ticket: 'BENCH-1',
      path: CONFIG_PATH,
      content: NEW,
      expectedPriorSha256: sha256Of(OLD),
      health: { checks: [], intervalSeconds: 1, minHealthySeconds: 0, healthyDeadlineSeconds: 60 },
    }),
  );
  const waves = /** @type {const} */ ([1, '10%', '50%', '100%']);
  const rolloutRequest = (/** @type {string} */ patchId) =>
    sampleRollout(patchId, {
      // A label, or every host by name, as a rollout of a list of hosts someone pasted does.
      target: TARGET === 'hosts' ? { hostIds: ids } : { labels: { role: 'bench' } },
      waves: [...waves],
      maxParallel: MAX_PARALLEL,
      revertParallel: MAX_PARALLEL,
      maxFailures: 0,
      bakeSeconds: 0,
      requiredApprovals: 0,
    });
  /** @type {RolloutStatus} */
  const created = await admin.post('/v1/rollouts', rolloutRequest(patch.id));
  const rolloutId = created.rollout.id;
  // Polled through the list endpoint every 100 ms: the rollout's state is all the wait needs. Polling
  // costs the coordinator CPU the bench would count as the rollout's (at 25 ms it was ~15 % of it), so
  // the wall times come from the rollout's own finishedAt, on this machine's clock, not from the poll.
  const waitState = (/** @type {readonly RolloutState[]} */ states, id = rolloutId) =>
    waitFor(
      `rollout ${id} to reach ${states.join('|')}`,
      async () => {
        /** @type {RolloutList} */
        const { rollouts } = await admin.get('/v1/rollouts?limit=5');
        const seen = rollouts.find((r) => r.id === id);
        return seen && states.includes(seen.state) ? seen : undefined;
      },
      { timeoutMs: remaining(), intervalMs: 100 },
    );
  /**
   * A lifecycle verb sent as the CLI and the dashboard send it (`?view=summary` unless --verb-view full):
   * how long its answer took, in ms.
   */
  const verb = async (/** @type {string} */ id, /** @type {string} */ name) => {
    const sentAt = performance.now();
    await admin.post(`/v1/rollouts/${id}/${name}?view=${VERB_VIEW}`);
    return performance.now() - sentAt;
  };
  /** From a wall-clock start to the rollout's finishedAt (the coordinator's clock: the same machine's). */
  const untilFinished = (/** @type {{ finishedAt: string | null }} */ record, /** @type {number} */ startedAt) =>
    record.finishedAt === null ? Number.NaN : Date.parse(record.finishedAt) - startedAt;
  /**
   * --kill-driver: once 30% of the hosts are healthy, SIGKILLs the coordinator holding the rollout's
   * lease (GET /v1/group) and times until another coordinator holds it. The API client moves to a live one.
   */
  const killDriverMidRollout = async () => {
    const healthyAtKill = await waitFor(
      '30% of the hosts healthy, to kill the driving coordinator mid-rollout',
      async () => {
        /** @type {RolloutSummary} */
        const summary = await admin.get(`/v1/rollouts/${rolloutId}/summary`);
        if (APPLY_END_STATES.includes(summary.rollout.state))
          throw new Error(`the rollout ended (${summary.rollout.state}) before it could be killed mid-way`);
        const healthy = summary.counts.healthy ?? 0;
        return healthy >= 0.3 * N ? healthy : undefined;
      },
      { timeoutMs: remaining(), intervalMs: 100 },
    );
    /** @type {GroupView} */
    const before = await admin.get('/v1/group');
    const lease = before.leases.find((l) => l.rolloutId === rolloutId);
    const victim = coordinators[Number(lease?.holder.slice(1)) - 1];
    if (!lease || !victim)
      throw new Error(`no coordinator holds rollout ${rolloutId}'s lease: ${JSON.stringify(before)}`);
    coordinatorsCpuMs(coordinators); // its CPU up to now stays counted
    const killedAt = performance.now();
    await victim.kill();
    killed.add(victim);
    admin = apiClient(live()[0]?.url ?? '', ADMIN_TOKEN);
    const taken = await waitFor(
      `another coordinator to hold rollout ${rolloutId}'s lease after ${lease.holder} was killed`,
      async () => {
        /** @type {GroupView} */
        const group = await admin.get('/v1/group');
        const now = group.leases.find((l) => l.rolloutId === rolloutId);
        return now && now.holder !== lease.holder ? now : undefined;
      },
      { timeoutMs: remaining(), intervalMs: 20 },
    );
    const takeoverMs = performance.now() - killedAt;
    say(
      `killed the driving coordinator ${lease.holder} (SIGKILL) with ${healthyAtKill}/${N} hosts healthy; ${taken.holder} held the lease ${secs(takeoverMs)} later (fencing token ${lease.token} → ${taken.token})`,
    );
    return {
      killed: lease.holder,
      healthyAtKill,
      takenBy: taken.holder,
      tokens: [lease.token, taken.token],
      killedAt,
      takeoverMs,
    };
  };
  if (WATCHERS > 0) {
    // Each watcher's first line describes the rollout whole: from then on it follows the stream.
    const following = startWatchers(WATCHERS, coordinators[0]?.url ?? '', ADMIN_TOKEN, rolloutId);
    watchers = following;
    await waitFor(
      `${WATCHERS} watchers to show the rollout`,
      async () => {
        const each = following.progress();
        const gone = each.find((w) => w.exitCode !== null);
        if (gone) throw new Error(`a watcher exited ${gone.exitCode} before the rollout started: ${gone.stderr}`);
        return each.every((w) => w.lines > 0) || undefined;
      },
      { timeoutMs: remaining(), intervalMs: 20 },
    );
  }
  const wireBeforeRollout = await wireOf(coordinators);
  const endRolloutProfile = await profilePhase('rollout', coordinators, agentFleet);
  const rolloutStartedAt = Date.now();
  cpu = cpuMeter(coordinators, agentFleet);
  const startAnsweredMs = await verb(rolloutId, 'start');
  let rolloutEndedAt = 0;
  const ending = waitState(APPLY_END_STATES).then((seen) => {
    rolloutEndedAt = performance.now();
    return seen;
  });
  // Together: a failed kill fails the run at once rather than leave the wait running to the deadline.
  const [rolled, takeover] = await Promise.all([ending, KILL_DRIVER ? killDriverMidRollout() : undefined]);
  const rolloutWallMs = untilFinished(rolled, rolloutStartedAt);
  const rolloutCpu = cpu();
  await endRolloutProfile();
  const rolloutWire = wireBetween(wireBeforeRollout, await wireOf(live()));
  if (watchers) {
    const each = await watchers.finished();
    const failed = each.filter((w) => w.exitCode !== 0);
    if (failed.length > 0)
      failures.push(
        `${failed.length} watcher(s) did not exit 0: ${failed.map((w) => `${w.exitCode} ${w.stderr}`).join('; ')}`,
      );
    const cpuMs = each.map((w) => w.cpuMs);
    say(
      `watchers: ${WATCHERS} \`rollout status --watch\` processes followed the rollout: ${each.map((w) => w.lines).join(', ')} lines; their CPU ${cpuMs.map((ms) => ms.toFixed(0)).join(', ')} ms`,
    );
    result.watchers = { count: WATCHERS, lines: each.map((w) => w.lines), cpuMs };
  }
  if (rolled.state !== 'succeeded') failures.push(`rollout ended ${rolled.state}: ${rolled.stateReason}`);
  if (takeover) {
    const { killedAt, ...figures } = takeover;
    const finishedAfterKillMs = rolloutEndedAt - killedAt;
    say(`  after the kill: the rollout finished ${secs(finishedAfterKillMs)} later`);
    result.takeover = { ...figures, finishedAfterKillMs };
  }
  /** @type {RolloutSummary} */
  const afterRollout = await admin.get(`/v1/rollouts/${rolloutId}/summary`);
  if (afterRollout.counts.healthy !== N)
    failures.push(`after the rollout ${afterRollout.counts.healthy ?? 0}/${N} hosts are healthy`);
  const wrongAfterRollout = await checkFiles(scratch, ids, NEW);
  if (wrongAfterRollout.length > 0)
    failures.push(
      `${wrongAfterRollout.length} root(s) lack the new content after the rollout, e.g. ${wrongAfterRollout.slice(0, 3).join(', ')}`,
    );

  // 3. Revert.
  const wireBeforeRevert = await wireOf(live());
  const endRevertProfile = await profilePhase('revert', coordinators, agentFleet);
  const revertStartedAt = Date.now();
  cpu = cpuMeter(coordinators, agentFleet);
  const revertAnsweredMs = await verb(rolloutId, 'revert');
  const reverted = await waitState(['reverted', 'revert_failed']);
  const revertWallMs = untilFinished(reverted, revertStartedAt);
  const revertCpu = cpu();
  await endRevertProfile();
  const revertWire = wireBetween(wireBeforeRevert, await wireOf(live()));
  if (reverted.state !== 'reverted') failures.push(`revert ended ${reverted.state}: ${reverted.stateReason}`);
  /** @type {RolloutSummary} */
  const afterRevert = await admin.get(`/v1/rollouts/${rolloutId}/summary`);
  if (afterRevert.counts.reverted !== N)
    failures.push(`after the revert ${afterRevert.counts.reverted ?? 0}/${N} hosts are reverted`);
  const wrongAfterRevert = await checkFiles(scratch, ids, OLD);
  if (wrongAfterRevert.length > 0)
    failures.push(
      `${wrongAfterRevert.length} root(s) lack the old content after the revert, e.g. ${wrongAfterRevert.slice(0, 3).join(', ')}`,
    );

  // The audit trail of the rollout: wave timings and per-host dispatch → result, by event timestamps.
  /** @type {EventRecord[]} */
  const events = [];
  for (let after = 0; ; ) {
    /** @type {EventPage} */
    const page = await admin.get(`/v1/rollouts/${rolloutId}/events?after=${after}&limit=1000`);
    events.push(...page.events);
    if (page.next === null) break;
    after = page.next;
  }
  /** @param {string} type @param {(event: EventRecord) => boolean} [pred] */
  const at = (type, pred = () => true) => {
    const e = events.find((ev) => ev.type === type && pred(ev));
    return e ? Date.parse(e.at) : Number.NaN;
  };
  /** @type {Map<string, number>} */
  const dispatchedAt = new Map();
  /** @type {number[]} */
  const dispatchToResult = [];
  for (const e of events) {
    if (e.hostId === null) continue;
    if (e.type === 'host.dispatched') dispatchedAt.set(e.hostId, Date.parse(e.at));
    if (e.type === 'host.healthy' && dispatchedAt.has(e.hostId))
      dispatchToResult.push(Date.parse(e.at) - (dispatchedAt.get(e.hostId) ?? 0));
  }
  const perHost = spread(dispatchToResult);
  const lastWave = waves.length - 1;
  const lastWaveStarted = at('wave.started', (e) => e.data?.wave === lastWave);
  const lastWaveHosts = new Set(
    events.filter((e) => e.type === 'host.dispatched' && Date.parse(e.at) >= lastWaveStarted).map((e) => e.hostId),
  );
  const lastOrderSent = Math.max(
    ...events.filter((e) => e.type === 'host.dispatched' && lastWaveHosts.has(e.hostId)).map((e) => Date.parse(e.at)),
  );
  const engineRolloutMs = at('rollout.succeeded') - at('rollout.running');
  const engineRevertMs = at('rollout.reverted') - at('rollout.reverting');

  say(
    `rollout to ${N} hosts, waves ${JSON.stringify(waves)}, maxParallel ${MAX_PARALLEL}, bake 0, no health checks: ${secs(rolloutWallMs)} wall (start call → the rollout's finishedAt), ${secs(engineRolloutMs)} by event timestamps; ${(N / (rolloutWallMs / 1000)).toFixed(0)} hosts/s; the start call answered in ${startAnsweredMs.toFixed(1)} ms (view=${VERB_VIEW})`,
  );
  say(`  ${cpuLine(rolloutCpu, N)}${idleLine(rolloutCpu)}`);
  say(`  ${wireLine(rolloutWire)}`);
  say(
    `  per host, dispatch → result committed: p50 ${perHost.p50} ms, p99 ${perHost.p99} ms, max ${perHost.max} ms (${perHost.n} hosts)`,
  );
  /** @type {{ wave: number, hosts: number, ms: number }[]} */
  const waveTimes = [];
  for (const wave of afterRollout.waves) {
    const ms =
      at('wave.passed', (e) => e.data?.wave === wave.wave) - at('wave.started', (e) => e.data?.wave === wave.wave);
    waveTimes.push({ wave: wave.wave, hosts: wave.hostCount, ms });
    say(`  wave ${wave.wave + 1} (${wave.hostCount} hosts): ${secs(ms)}`);
  }
  say(`  last wave: last order sent ${secs(lastOrderSent - lastWaveStarted)} after it started`);
  say(
    `revert ${N} hosts (one call, revertParallel ${MAX_PARALLEL}): ${secs(revertWallMs)} wall, ${secs(engineRevertMs)} by event timestamps; ${(N / (revertWallMs / 1000)).toFixed(0)} hosts/s; the revert call answered in ${revertAnsweredMs.toFixed(1)} ms (view=${VERB_VIEW})`,
  );
  say(`  ${cpuLine(revertCpu, N)}${idleLine(revertCpu)}`);
  say(`  ${wireLine(revertWire)}`);
  say(`files checked: ${N} roots carried the new content after the rollout and the old after the revert`);
  /** @type {Map<string, number>} */
  const byType = new Map();
  for (const e of events) byType.set(e.type, (byType.get(e.type) ?? 0) + 1);
  const top = [...byType.entries()].sort((a, b) => b[1] - a[1]);
  say(
    `audit rows for the rollout and revert: ${events.length} (${(events.length / N).toFixed(1)}/host): ${top.map(([k, v]) => `${k} ${v}`).join(', ')}`,
  );
  result.rollout = {
    waves,
    maxParallel: MAX_PARALLEL,
    ...rolloutCpu,
    wallMs: rolloutWallMs,
    engineMs: engineRolloutMs,
    coordinatorUsPerHost: (rolloutCpu.coordinatorMs * 1000) / N,
    agentUsPerOrder: (rolloutCpu.agentsMs * 1000) / N,
    dispatchToResultMs: perHost,
    waveMs: waveTimes,
    lastWaveLastOrderSentMs: lastOrderSent - lastWaveStarted,
    wire: rolloutWire,
    verbView: VERB_VIEW,
    startAnsweredMs,
  };
  result.revert = {
    ...revertCpu,
    wallMs: revertWallMs,
    engineMs: engineRevertMs,
    coordinatorUsPerHost: (revertCpu.coordinatorMs * 1000) / N,
    agentUsPerOrder: (revertCpu.agentsMs * 1000) / N,
    wire: revertWire,
    verbView: VERB_VIEW,
    revertAnsweredMs,
  };
  result.auditRows = { total: events.length, perHost: events.length / N, byType: Object.fromEntries(top) };

  // 3a. --rounds: the same patch rolled out and reverted again, a new rollout each time, on the same
  // coordinator and agents. The first round's figures carry V8 compiling (and optimizing) the code
  // each process runs; these show the coordinator as it runs once it has done a rollout.
  /** @type {{ round: number, rollout: Record<string, unknown>, revert: Record<string, unknown> }[]} */
  const laterRounds = [];
  for (let round = 2; round <= ROUNDS; round++) {
    /** @type {RolloutStatus} */
    const again = await admin.post('/v1/rollouts', rolloutRequest(patch.id));
    const id = again.rollout.id;
    const measured = async (/** @type {string} */ name, /** @type {readonly RolloutState[]} */ endStates) => {
      const wireBefore = await wireOf(live());
      // --cpu-prof: each later round's rollout and revert too (`rollout-2`, `revert-2`, …), beside the first's.
      const endProfile = await profilePhase(
        `${name === 'start' ? 'rollout' : name}-${round}`,
        coordinators,
        agentFleet,
      );
      const startedAt = Date.now();
      const meter = cpuMeter(coordinators, agentFleet);
      await verb(id, name);
      const ended = await waitState(endStates, id);
      const used = meter();
      await endProfile();
      const wire = wireBetween(wireBefore, await wireOf(live()));
      return { ended, used, wallMs: untilFinished(ended, startedAt), wire };
    };
    const rolledOut = await measured('start', APPLY_END_STATES);
    if (rolledOut.ended.state !== 'succeeded')
      failures.push(`round ${round}: the rollout ended ${rolledOut.ended.state}: ${rolledOut.ended.stateReason}`);
    const notNew = await checkFiles(scratch, ids, NEW);
    if (notNew.length > 0)
      failures.push(`round ${round}: ${notNew.length} root(s) lack the new content after the rollout`);
    const rolledBack = await measured('revert', ['reverted', 'revert_failed']);
    if (rolledBack.ended.state !== 'reverted')
      failures.push(`round ${round}: the revert ended ${rolledBack.ended.state}: ${rolledBack.ended.stateReason}`);
    const wrong = await checkFiles(scratch, ids, OLD);
    if (wrong.length > 0)
      failures.push(`round ${round}: ${wrong.length} root(s) lack the old content after the revert`);
    const figures = (/** @type {typeof rolledOut} */ m) => ({
      ...m.used,
      wallMs: m.wallMs,
      coordinatorUsPerHost: (m.used.coordinatorMs * 1000) / N,
      agentUsPerOrder: (m.used.agentsMs * 1000) / N,
      wire: m.wire,
    });
    laterRounds.push({ round, rollout: figures(rolledOut), revert: figures(rolledBack) });
    say(
      `round ${round} (the same patch, a new rollout): rollout ${secs(rolledOut.wallMs)}, ${cpuLine(rolledOut.used, N)}; revert ${secs(rolledBack.wallMs)}, ${cpuLine(rolledBack.used, N)}; ${rolledOut.wire.transactions.toFixed(2)} + ${rolledBack.wire.transactions.toFixed(2)} store transactions per host`,
    );
  }
  if (ROUNDS > 1) result.laterRounds = laterRounds;

  // 3b. The head-to-head: Ansible's copy module makes the same change to the same roots, same waves.
  result.ansible = await ansibleHeadToHead(scratch, ids, waves, rolloutWallMs);

  // 4. The status API while idle: the full status, the summary, one page of hosts.
  /** @type {Record<string, unknown>} */
  const api = {};
  /** @type {[string, string][]} */
  const statusCalls = [
    ['status', `/v1/rollouts/${rolloutId}`],
    ['summary', `/v1/rollouts/${rolloutId}/summary`],
    ['hostsPage', `/v1/rollouts/${rolloutId}/hosts?state=reverted&limit=100`],
  ];
  const endStatusProfile = await profilePhase('status', coordinators, agentFleet);
  for (const [name, url] of statusCalls) {
    /** @type {number[]} */
    const latencies = [];
    let bytes = 0;
    for (let i = 0; i < 100; i++) {
      const t0 = performance.now();
      const res = await admin.raw('GET', url);
      bytes = (await res.arrayBuffer()).byteLength;
      latencies.push(performance.now() - t0);
    }
    const { p50, p99 } = spread(latencies);
    api[name] = { url: url.replace(rolloutId, ':id'), bytes, p50Ms: p50, p99Ms: p99 };
    say(
      `GET ${url.replace(rolloutId, ':id')}, 100 sequential: ${bytes} bytes, p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`,
    );
  }
  await endStatusProfile();
  result.statusApi = api;

  // 5. The reconnect storm: every agent process killed at once, then started again over the same data.
  t = performance.now();
  cpu = cpuMeter(coordinators, agentFleet);
  const healthz = new HealthzWatch(live);
  const refusedBefore = await upgradesRefused();
  const cutBefore = await socketsCut();
  // --cpu-prof: the coordinator over the whole storm, the new agent processes from their first line.
  const endStormProfile = await profilePhase('storm', coordinators, agentFleet);
  await agentFleet.killAll();
  await waitFor('the coordinators to see every agent gone', async () => (await onlineCount()) === 0, {
    timeoutMs: remaining(),
    intervalMs: 50,
  });
  const goneMs = performance.now() - t;
  const back = performance.now();
  // Counted from the processes' start on: their agents come back while the others start.
  const returning = allOnline(`${N} agents back online`, back);
  returning.catch(() => {}); // awaited below; a failed start must not leave it unhandled meanwhile
  await agentFleet.start(PROFILE_DIR ? { FLEETPATCH_PROFILE_FROM_START: '1' } : undefined);
  const { halfMs, ninetyPercentMs } = await returning;
  const backMs = performance.now() - back;
  await endStormProfile(agentFleet);
  const stormCpu = cpu();
  await healthz.stop();
  const healthzFailures = healthz.failures;
  const stormRefused = (await upgradesRefused()) - refusedBefore;
  const stormCut = (await socketsCut()) - cutBefore;
  if (healthzFailures > 0) failures.push(`/healthz failed ${healthzFailures} time(s) during the reconnect storm`);
  say(
    `reconnect storm: ${N} agents killed at once, all seen gone in ${secs(goneMs)}, all back online ${secs(backMs)} after restarting (agent start included; half back in ${secs(halfMs ?? backMs)}, 90 % in ${secs(ninetyPercentMs ?? backMs)}); ${stormRefused} upgrades refused 503, ${stormCut} cut at the byte budget; /healthz failures ${healthzFailures}; ${cpuLine(stormCpu, N)}`,
  );
  result.reconnectStorm = {
    goneMs,
    backMs,
    halfBackMs: halfMs ?? backMs,
    ninetyPercentBackMs: ninetyPercentMs ?? backMs,
    healthzFailures,
    upgradesRefused: stormRefused,
    socketsCut: stormCut,
    ...stormCpu,
  };

  // 6. A network reset: every agent's connection cut at once while the agents run on.
  result.networkReset = await networkReset(agentFleet, onlineCount);
}

/** How long the network reset waits for every agent before it looks for connections `ss -K` passed by. */
const RESET_STRAGGLER_MS = 60_000;

/**
 * The reconnect storm as a real fleet meets it: a load balancer or a link resets every agent's
 * connection at once, and the agents — still running, their keys loaded — redial. `ss -K` has the
 * kernel reset every established connection to the coordinators' ports (both ends see it at once).
 * Timed from the reset until every agent has said a new hello (the coordinators' hello counters grew by
 * N) and all N are online again; /healthz is polled throughout. Needs root and `ss` (iproute2) with
 * socket destruction in the kernel; skipped with the reason otherwise.
 * @param {AgentProcesses} agentFleet
 * @param {() => Promise<number>} onlineCount
 */
async function networkReset(agentFleet, onlineCount) {
  const group = live();
  const hellos = async () => {
    let sum = 0;
    for (const counters of (await wireOf(group)).values()) sum += counters.messages['received hello'] ?? 0;
    return sum;
  };
  const hellosBefore = await hellos();
  const refusedBefore = await upgradesRefused();
  const cutBefore = await socketsCut();
  const cpu = cpuMeter(group, agentFleet);
  const healthz = new HealthzWatch(() => group);
  // --cpu-prof: the coordinators and the agent processes over the reset and the reconnect.
  const endResetProfile = await profilePhase('reset', group, agentFleet);
  const filters = group.map((c) => ['dst', '127.0.0.1', 'dport', '=', `:${new URL(c.url).port}`]);
  const agentPids = new Set(agentFleet.children.map((c) => c.pid));
  const before = establishedTo(filters, agentPids);
  const t = performance.now();
  const cut = await healthz.whilePaused(async () =>
    filters.map((filter) => spawnSync('ss', ['-K', '-t', ...filter], { encoding: 'utf8' })),
  );
  const failed = cut.find((run) => run.error || run.status !== 0);
  if (failed) {
    await endResetProfile();
    await healthz.stop();
    const skipped = `ss -K failed: ${failed.error?.message ?? failed.stderr.trim()}`;
    say(`network reset: skipped (${skipped})`);
    return { skipped };
  }
  // When the count of new hellos last grew: the time all were back, should a straggler be found below.
  let helloCount = -1;
  let grewAt = t;
  /** @param {number} wanted */
  const back = async (wanted) => {
    // /healthz first: /metrics costs the coordinator more (it lists its open descriptors), so it is
    // read only once all N are online.
    if ((await onlineCount()) !== N) return false;
    const count = (await hellos()) - hellosBefore;
    if (count !== helloCount) [helloCount, grewAt] = [count, performance.now()];
    return count >= wanted;
  };
  const what = `${N} new hellos and ${N} agents online after the network reset`;
  let survivors = 0;
  let backMs;
  try {
    await waitFor(what, () => back(N), { timeoutMs: Math.min(remaining(), RESET_STRAGGLER_MS), intervalMs: 100 });
    backMs = performance.now() - t;
  } catch (err) {
    // `ss -K` walks the kernel's socket table while agents reconnect into it, and can pass one by
    // (once in ~20 runs at 10,000): that agent never lost its connection, so it says no new hello.
    // Counted only here, so that the listing's cost never falls inside a measured reset.
    const after = establishedTo(filters, agentPids);
    survivors = [...before].filter((connection) => after.has(connection)).length;
    if (survivors === 0) throw err;
    await waitFor(what, () => back(N - survivors), { timeoutMs: remaining(), intervalMs: 100 });
    backMs = grewAt - t;
  }
  const resetCpu = cpu();
  await endResetProfile();
  await healthz.stop();
  const refused = (await upgradesRefused()) - refusedBefore;
  const cutAtBudget = (await socketsCut()) - cutBefore;
  if (healthz.failures > 0) failures.push(`/healthz failed ${healthz.failures} time(s) during the network reset`);
  say(
    `network reset: every agent connection cut at once (ss -K), ${survivors > 0 ? `the ${N - survivors} it cut (it passed ${survivors} by) said hello again and all ${N}` : `all ${N} said hello again and`} were online ${secs(backMs)} later; ${refused} upgrades refused 503, ${cutAtBudget} cut at the byte budget; /healthz failures ${healthz.failures}; ${cpuLine(resetCpu, N)}`,
  );
  return {
    backMs,
    survivors,
    healthzFailures: healthz.failures,
    upgradesRefused: refused,
    socketsCut: cutAtBudget,
    ...resetCpu,
  };
}

/**
 * The agent processes' established connections matching any of `filters` (ss's filter words), each
 * as its two addresses: the same text before and after a cut is a connection the cut passed by. The
 * bench's own HTTP connections to the coordinators are not the agents' and are left out.
 * @param {string[][]} filters
 * @param {ReadonlySet<number | undefined>} agentPids
 */
function establishedTo(filters, agentPids) {
  const connections = new Set();
  for (const filter of filters) {
    const run = spawnSync('ss', ['-H', '-t', '-n', '-p', 'state', 'established', ...filter], { encoding: 'utf8' });
    for (const line of (run.stdout ?? '').split('\n')) {
      const pid = Number(/pid=(\d+)/.exec(line)?.[1]);
      const fields = line.trim().split(/\s+/);
      if (agentPids.has(pid) && fields.length >= 5) connections.add(`${fields[2]} ${fields[3]}`);
    }
  }
  return connections;
}

/**
 * Ansible's `copy` on the same hosts (their roots hold the old content again after the revert), with
 * the rollout's waves as `serial` and one fork per host: its wall time against the rollout's, from this
 * one run. Runs when `ansible-playbook` is installed and N ≤ ANSIBLE_MAX_HOSTS (a play of thousands of
 * local hosts takes many minutes), or with --ansible whatever N is.
 * @param {string} scratch
 * @param {string[]} ids
 * @param {readonly (number | string)[]} waves
 * @param {number} rolloutWallMs
 */
async function ansibleHeadToHead(scratch, ids, waves, rolloutWallMs) {
  if (flags['skip-ansible'] === true) {
    say('Ansible head-to-head: skipped (--skip-ansible)');
    return { skipped: '--skip-ansible' };
  }
  if (!hasAnsible()) {
    say('Ansible head-to-head: skipped (ansible-playbook is not installed: apt-get install ansible-core)');
    return { skipped: 'ansible-playbook is not installed' };
  }
  if (N > ANSIBLE_MAX_HOSTS && flags.ansible !== true) {
    say(`Ansible head-to-head: skipped at ${N} hosts (over ${ANSIBLE_MAX_HOSTS}; --ansible runs it anyway)`);
    return { skipped: `over ${ANSIBLE_MAX_HOSTS} hosts` };
  }
  const forks = Math.min(N, ANSIBLE_MAX_FORKS);
  const run = await runAnsibleCopy({
    workDir: join(scratch, 'ansible'),
    hosts: ids.map((id) => ({ id, root: join(scratch, id, 'root') })),
    path: CONFIG_PATH,
    content: NEW,
    serial: waves,
    forks,
  });
  if (run.exitCode !== 0) {
    failures.push(`ansible-playbook exited ${run.exitCode}: ${run.output.slice(-2000)}`);
    return { exitCode: run.exitCode };
  }
  const wrong = await checkFiles(scratch, ids, NEW);
  if (wrong.length > 0)
    failures.push(`after Ansible's run ${wrong.length} roots lack the new content: ${wrong.slice(0, 5)}`);
  const ratio = run.wallMs / rolloutWallMs;
  say(
    `Ansible head-to-head: ansible-playbook copy to the same ${N} roots, serial ${JSON.stringify(waves)}, forks ${forks}, connection local: ${secs(run.wallMs)}; fleetpatch's rollout ${secs(rolloutWallMs)}: fleetpatch ${ratio.toFixed(1)}× faster`,
  );
  return { wallMs: run.wallMs, forks, fleetpatchRolloutWallMs: rolloutWallMs, ratio, filesChecked: ids.length };
}

/**
 * How many agents each coordinator of the group holds, as GET /v1/group says (presence is renewed on the
 * group's heartbeat, so it is waited for until the members' counts add up to N, for at most 30 s).
 * @param {import('./lib/local-fleet.mjs').ApiClient} api
 */
async function agentsPerCoordinator(api) {
  /** @type {GroupView | undefined} */
  let group;
  const settled = await waitFor(
    `GET /v1/group to count ${N} agents`,
    async () => {
      /** @type {GroupView} */
      const seen = await api.get('/v1/group');
      group = seen;
      return seen.members.reduce((n, m) => n + m.agents, 0) === N;
    },
    { timeoutMs: Math.min(30_000, remaining()), intervalMs: 250 },
  ).catch(() => false);
  const members = (group?.members ?? [])
    .map(({ id, agents }) => ({ id, agents }))
    .sort((a, b) => a.id.localeCompare(b.id));
  say(
    `agents per coordinator (GET /v1/group${settled ? '' : `, NOT adding up to ${N} after 30 s`}): ${members.map((m) => `${m.id} ${m.agents}`).join(', ')}`,
  );
  return members;
}

/**
 * Host ids whose root (under `scratch`) does not hold `content` at CONFIG_PATH.
 * @param {string} scratch
 * @param {readonly string[]} ids
 * @param {string} content
 */
async function checkFiles(scratch, ids, content) {
  /** @type {string[]} */
  const wrong = [];
  await pool(ids, 64, async (id) => {
    const text = await readFile(join(scratch, id, 'root', CONFIG_PATH), 'utf8').catch((err) => `<${err.code}>`);
    if (text !== content) wrong.push(id);
  });
  return wrong.sort();
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  exitCode = 1;
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err) : err}\n`);
  printCoordinatorLogs();
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
for (const failure of failures) process.stderr.write(`CHECK FAILED: ${failure}\n`);
if (failures.length > 0) exitCode = 1;
say(`total: ${secs(Date.now() - started)}; ${exitCode === 0 ? 'all checks passed' : 'FAILED'}`);
result.failures = failures;
result.finishedAt = new Date().toISOString();
result.loadAverageAtEnd = loadavg();
await mkdir(flags.results, { recursive: true });
const resultFile = join(flags.results, `bench-${N}-${STORE}-${K}-${result.startedAt}.json`.replaceAll(':', ''));
await writeFile(resultFile, `${JSON.stringify(result, null, 2)}\n`);
say(`results: ${resultFile}`);
if (Number.parseInt(flags['inventory-hosts'], 10) > 0) {
  say();
  const inventory = spawnSync(
    process.execPath,
    [
      fileURLToPath(new URL('bench-inventory.mjs', import.meta.url)),
      '--hosts',
      flags['inventory-hosts'],
      '--packages',
      flags['inventory-packages'],
      ...(flags.tmp ? ['--tmp', flags.tmp] : []),
    ],
    { stdio: 'inherit' },
  );
  if (inventory.status !== 0) exitCode = 1;
}
process.exit(exitCode);

/**
 * `text`, then comment lines up to exactly `bytes` (ASCII): a larger file to roll out, to see what
 * a change's size costs. Unchanged when `bytes` is undefined.
 * @param {string} text
 * @param {number | undefined} bytes
 */
function paddedTo(text, bytes) {
  if (bytes === undefined || bytes <= text.length) return text;
  const line = `# padding to ${bytes} bytes, so that the rollout carries a file of that size\n`;
  const padding = line.repeat(Math.ceil((bytes - text.length) / line.length)).slice(0, bytes - text.length - 1);
  return `${text}${padding}\n`;
}
