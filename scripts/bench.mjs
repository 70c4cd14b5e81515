// @ts-check
// `npm run bench [-- --agents N]`: one real coordinator process and N in-process agents (the
// `Agent` class, one socket each), each confined to its own scratch root. Measures connect time, a
// file-patch rollout to all N in waves [1, "10%", "100%"], a one-call revert, memory, events
// written and status-API latency. Prints numbers, not pass/fail — but checks every file on disk
// after the rollout and after the revert, and exits non-zero if any is wrong.
//
// Then, unless --inventory-hosts 0, the package inventory bench (scripts/bench-inventory.mjs) with
// --inventory-hosts (10000) and --inventory-packages (2000), as its own process.
//
// Flags: --agents N (1000)   --max-parallel N (200; also the revert's revertParallel)
//        --deadline S (300: everything, setup to teardown)   --tmp DIR (/dev/shm if writable)
//        --tick-ms N (1000) --heartbeat-ms N (10000): the coordinator's production defaults, not the tests' 100/1000
//        --cpu-prof DIR (write the coordinator's V8 CPU profile there, for chrome://inspect or speedscope)
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Agent, AgentConfigSchema } from '@fleetpatch/agent';
import { APPLY_END_STATES } from '@fleetpatch/shared';
import { pino } from 'pino';
import { cpuMsOf, percentile, scratchBase } from './lib/bench-measures.mjs';
import { apiClient, startCoordinator, waitFor } from './lib/local-fleet.mjs';
import { samplePatch, sampleRollout, sha256Of } from './lib/sample-specs.mjs';

/**
 * @import { AgentList, EventPage, EventRecord, Healthz, JoinTokenCreated, Patch, RolloutList, RolloutRecord, RolloutState, RolloutStatus } from '@fleetpatch/shared'
 * @import { CoordinatorProcess } from './lib/local-fleet.mjs'
 */

const { values: flags } = parseArgs({
  options: {
    agents: { type: 'string', default: '1000' },
    'max-parallel': { type: 'string', default: '200' },
    deadline: { type: 'string', default: '300' },
    tmp: { type: 'string' },
    'cpu-prof': { type: 'string' },
    'tick-ms': { type: 'string', default: '1000' },
    'heartbeat-ms': { type: 'string', default: '10000' },
    'inventory-hosts': { type: 'string', default: '10000' },
    'inventory-packages': { type: 'string', default: '2000' },
  },
  strict: true,
});
const N = Number.parseInt(flags.agents, 10);
const MAX_PARALLEL = Number.parseInt(flags['max-parallel'], 10);
const DEADLINE_MS = Number.parseFloat(flags.deadline) * 1000;
if (!(N >= 1) || !(MAX_PARALLEL >= 1) || !(DEADLINE_MS > 0)) {
  process.stderr.write('usage: bench.mjs [--agents N] [--max-parallel N] [--deadline SECONDS] [--tmp DIR]\n');
  process.exit(2);
}

const CONFIG_PATH = '/etc/bench/app.conf';
const OLD = 'listen = 8080\nworkers = 2\n';
const NEW = 'listen = 8080\nworkers = 4\n';
const FACTS = {
  hostname: 'bench',
  os: 'linux',
  distro: 'Bench Linux',
  release: '1.0',
  kernel: '6.0.0-bench',
  arch: 'x64',
  cpus: 2,
  memoryBytes: 4 * 1024 ** 3,
};
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
 * `--cpu-prof` is refused in NODE_OPTIONS, so the coordinator child gets a preload (written to the
 * scratch dir) that runs the inspector's profiler and writes coordinator-<pid>.cpuprofile on exit.
 * @param {string} scratch where the preload is written
 * @param {string} dir where the profile goes
 */
async function profilerPreload(scratch, dir) {
  await mkdir(dir, { recursive: true });
  const file = join(scratch, 'cpu-profile-preload.mjs');
  const out = JSON.stringify(join(dir, 'coordinator-'));
  await writeFile(
    file,
    `import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
const session = new Session();
session.connect();
session.post('Profiler.enable');
session.post('Profiler.start');
process.on('exit', () => {
  session.post('Profiler.stop', (err, result) => {
    if (!err) writeFileSync(${out} + process.pid + '.cpuprofile', JSON.stringify(result.profile));
  });
});
`,
  );
  return file;
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

/**
 * Starts a CPU stopwatch over the coordinator and this process; `.line()` says how busy each was.
 * @param {number | undefined} pid
 */
function cpuMeter(pid) {
  const t0 = performance.now();
  const c0 = cpuMsOf(pid);
  const b0 = cpuMsOf(process.pid);
  return {
    line() {
      const wall = performance.now() - t0;
      const pct = (/** @type {number} */ ms) => `${((ms / wall) * 100).toFixed(0)}%`;
      return `cpu: coordinator ${pct(cpuMsOf(pid) - c0)}, bench/agents ${pct(cpuMsOf(process.pid) - b0)} of one core`;
    },
  };
}

// ---- the run ---------------------------------------------------------------------------------------

/** @type {string[]} */
const failures = [];
/** @type {{ id: string, agent: Agent }[]} */
const agents = [];
/** @type {CoordinatorProcess | undefined} */
let coordinator;
/** @type {string | undefined} */
let work;
/** @type {Promise<void> | null} */
let cleaning = null;

/** Idempotent; every caller (main, the watchdog, a signal) waits for the same teardown. */
function cleanup() {
  cleaning ??= teardown();
  return cleaning;
}

async function teardown() {
  const t = performance.now();
  // Agents first (each closes its socket), then the coordinator, then the scratch tree.
  await Promise.allSettled(agents.map((a) => a.agent.stop()));
  if (coordinator) await coordinator.stop().catch(() => {});
  if (work) await rm(work, { recursive: true, force: true }).catch(() => {});
  say(`teardown (stop ${agents.length} agents + coordinator, rm scratch): ${secs(performance.now() - t)}`);
}

// Overall deadline: whatever is stuck, tear down and exit non-zero.
const watchdog = setTimeout(() => {
  process.stderr.write(`bench: overall deadline of ${secs(DEADLINE_MS)} passed; tearing down\n`);
  if (coordinator) process.stderr.write(`last coordinator log lines:\n${coordinator.logs.slice(-20).join('\n')}\n`);
  const hard = setTimeout(() => process.exit(3), 15_000);
  hard.unref();
  // Fire and forget: the process exits when the teardown settles, whichever way it goes.
  void cleanup().finally(() => process.exit(3));
}, DEADLINE_MS);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    process.stderr.write(`bench: ${signal}; tearing down\n`);
    // Fire and forget: the process exits when the teardown settles, whichever way it goes.
    void cleanup().finally(() => process.exit(130));
  });
}

async function main() {
  const limit = openFilesLimit();
  const needed = N + 512; // one socket per agent in each process, plus the database, journals and fetch sockets
  say(`fleetpatch bench: ${N} agents, node ${process.version}, ulimit -n ${limit.soft} (hard ${limit.hard})`);
  if (limit.soft !== 'unlimited' && Number(limit.soft) < needed) {
    throw new Error(
      `open-files limit ${limit.soft} is below the ~${needed} this bench needs (each agent holds one socket in the bench process and one in the coordinator); raise it with \`ulimit -n ${Math.max(needed, 4096)}\``,
    );
  }

  const scratch = await mkdtemp(join(scratchBase(flags.tmp), 'fleetpatch-bench-'));
  work = scratch;
  say(`scratch: ${work}`);
  const coordinatorProcess = await startCoordinator({
    dataDir: join(work, 'coordinator'),
    apiTokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' }],
    tickIntervalMs: Number.parseInt(flags['tick-ms'], 10),
    heartbeatIntervalMs: Number.parseInt(flags['heartbeat-ms'], 10),
    // The bench's rollouts run without an approver (requiredApprovals 0); the coordinator must allow it.
    extraConfig: { minApprovals: 0 },
    // Log level stays at info (startCoordinator waits for the "listening" line): two lines per agent connection.
    ...(flags['cpu-prof']
      ? { env: { NODE_OPTIONS: `--import=${await profilerPreload(scratch, flags['cpu-prof'])}` } }
      : {}),
  });
  coordinator = coordinatorProcess;
  const admin = apiClient(coordinatorProcess.url, ADMIN_TOKEN);
  say(
    `coordinator pid ${coordinatorProcess.child.pid} on ${coordinatorProcess.url} (tick ${flags['tick-ms']} ms, heartbeat ${flags['heartbeat-ms']} ms)`,
  );

  // Register and lay out the fleet.
  let t = performance.now();
  const ids = Array.from({ length: N }, (_, i) => hostId(i));
  // One multi-use join token for the whole fleet; each agent enrolls (its own ed25519 key) on start.
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

  // 1. Connect.
  const log = pino({ level: 'silent' });
  for (const id of ids) {
    const config = AgentConfigSchema.parse({
      coordinatorUrl: coordinatorProcess.url,
      // Plain HTTP on loopback: nothing to encrypt against, and the bench measures the coordinatorProcess.
      allowInsecure: true,
      hostId: id,
      joinToken,
      labels: { role: 'bench' },
      dataDir: join(scratch, id, 'data'),
      rootDir: join(scratch, id, 'root'),
      logLevel: 'silent',
      file: { allowedRoots: ['/etc'] },
      // N agents in one process on one machine would each read this machine's dpkg database; the
      // inventory has its own bench (bench-inventory.mjs, run after this one).
      inventory: { enabled: false },
    });
    agents.push({ id, agent: new Agent({ config, log, facts: FACTS }) });
  }
  t = performance.now();
  let cpu = cpuMeter(coordinatorProcess.child.pid);
  await Promise.all(agents.map((a) => a.agent.start()));
  /** @type {number | null} */
  let localDone = null;
  await waitFor(
    `${N} agents online`,
    async () => {
      if (localDone === null && agents.every((a) => a.agent.connected)) localDone = performance.now() - t;
      /** @type {Healthz} */
      const { agentsOnline } = await admin.get('/healthz');
      if (agentsOnline < N) return false;
      /** @type {AgentList} */
      const { agents: listed } = await admin.get('/v1/agents');
      return listed.filter((a) => a.online).length === N;
    },
    { timeoutMs: remaining(), intervalMs: 100 },
  );
  const connectMs = performance.now() - t;
  say(
    `connect ${N} agents: ${secs(connectMs)} (all online in GET /v1/agents; all welcomed agent-side at ${secs(localDone ?? connectMs)}); ${cpu.line()}`,
  );

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
  /** @type {RolloutStatus} */
  const created = await admin.post(
    '/v1/rollouts',
    sampleRollout(patch.id, {
      target: { labels: { role: 'bench' } },
      waves: [1, '10%', '100%'],
      maxParallel: MAX_PARALLEL,
      revertParallel: MAX_PARALLEL,
      maxFailures: 0,
      bakeSeconds: 0,
      requiredApprovals: 0,
    }),
  );
  const rolloutId = created.rollout.id;
  // Polled through the cheap list endpoint: GET /v1/rollouts/:id is O(hosts) and would load the coordinatorProcess.
  const waitState = (/** @type {readonly RolloutState[]} */ states) =>
    waitFor(
      `rollout ${rolloutId} to reach ${states.join('|')}`,
      async () => {
        /** @type {RolloutList} */
        const { rollouts } = await admin.get('/v1/rollouts?limit=5');
        const seen = rollouts.find((r) => r.id === rolloutId);
        return seen && states.includes(seen.state) ? seen : undefined;
      },
      { timeoutMs: remaining(), intervalMs: 25 },
    );
  t = performance.now();
  cpu = cpuMeter(coordinatorProcess.child.pid);
  await admin.post(`/v1/rollouts/${rolloutId}/start`);
  const rolled = await waitState(APPLY_END_STATES);
  const rolloutWallMs = performance.now() - t;
  const rolloutCpu = cpu.line();
  if (rolled.state !== 'succeeded') failures.push(`rollout ended ${rolled.state}: ${rolled.stateReason}`);

  /** @type {RolloutStatus} */
  const afterRollout = await admin.get(`/v1/rollouts/${rolloutId}`);
  const wrongAfterRollout = await checkFiles(scratch, ids, NEW);
  if (afterRollout.counts.healthy !== N)
    failures.push(`after the rollout ${afterRollout.counts.healthy ?? 0}/${N} hosts are healthy`);
  if (wrongAfterRollout.length > 0)
    failures.push(
      `${wrongAfterRollout.length} root(s) lack the new content after the rollout, e.g. ${wrongAfterRollout.slice(0, 3).join(', ')}`,
    );

  // 3. Revert.
  t = performance.now();
  cpu = cpuMeter(coordinatorProcess.child.pid);
  await admin.post(`/v1/rollouts/${rolloutId}/revert`);
  const reverted = await waitState(['reverted', 'revert_failed']);
  const revertWallMs = performance.now() - t;
  const revertCpu = cpu.line();
  if (reverted.state !== 'reverted') failures.push(`revert ended ${reverted.state}: ${reverted.stateReason}`);
  /** @type {RolloutStatus} */
  const afterRevert = await admin.get(`/v1/rollouts/${rolloutId}`);
  const wrongAfterRevert = await checkFiles(scratch, ids, OLD);
  if (afterRevert.counts.reverted !== N)
    failures.push(`after the revert ${afterRevert.counts.reverted ?? 0}/${N} hosts are reverted`);
  if (wrongAfterRevert.length > 0)
    failures.push(
      `${wrongAfterRevert.length} root(s) lack the old content after the revert, e.g. ${wrongAfterRevert.slice(0, 3).join(', ')}`,
    );

  // Events: page through the whole audit trail of the rollout.
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
  const engineRolloutMs = at('rollout.succeeded') - at('rollout.running');
  const engineRevertMs = at('rollout.reverted') - at('rollout.reverting');

  say(
    `rollout to ${N} hosts, waves [1, "10%", "100%"], maxParallel ${MAX_PARALLEL}, bake 0, no health checks: ${secs(rolloutWallMs)} wall (start call → succeeded seen), ${secs(engineRolloutMs)} by event timestamps`,
  );
  say(`  throughput: ${(N / (rolloutWallMs / 1000)).toFixed(0)} hosts/s; ${rolloutCpu}`);
  for (let wave = 0; wave < created.rollout.waveCount || wave < 3; wave++) {
    const startAt = at('wave.started', (e) => e.data?.wave === wave);
    const passAt = at('wave.passed', (e) => e.data?.wave === wave);
    if (Number.isNaN(startAt)) break;
    const size = afterRollout.waves[wave]?.hosts.length ?? 0;
    say(
      `  wave ${wave + 1} (${size} host${size === 1 ? '' : 's'}): ${secs(passAt - startAt)} (${size > 0 ? (size / ((passAt - startAt) / 1000 || 0.001)).toFixed(0) : '-'} hosts/s)`,
    );
  }
  say(
    `revert ${N} hosts (one call, revertParallel ${MAX_PARALLEL}): ${secs(revertWallMs)} wall, ${secs(engineRevertMs)} by event timestamps; ${(N / (revertWallMs / 1000)).toFixed(0)} hosts/s; ${revertCpu}`,
  );
  say(`files checked: ${N} roots carried the new content after the rollout and the old after the revert`);

  // 5. API latency while idle.
  /** @type {number[]} */
  const latencies = [];
  let bytes = 0;
  for (let i = 0; i < 200; i++) {
    const t0 = performance.now();
    const res = await admin.raw('GET', `/v1/rollouts/${rolloutId}`);
    bytes = (await res.arrayBuffer()).byteLength;
    latencies.push(performance.now() - t0);
  }
  latencies.sort((a, b) => a - b);
  say(
    `GET /v1/rollouts/:id idle, 200 sequential (${(bytes / 1024).toFixed(0)} KiB each): p50 ${percentile(latencies, 50).toFixed(1)} ms, p99 ${percentile(latencies, 99).toFixed(1)} ms`,
  );

  // 4. Memory and events.
  const coordMem = memoryOf(coordinatorProcess.child.pid);
  const benchMem = memoryOf(process.pid) ?? { rss: process.memoryUsage().rss / 1024, peak: Number.NaN };
  say(
    `coordinator RSS: ${coordMem ? `${mib(coordMem.rss)} (peak ${mib(coordMem.peak)})` : 'n/a (no /proc)'}; bench process RSS (${N} agents): ${mib(benchMem.rss)} (peak ${mib(benchMem.peak)})`,
  );
  /** @type {Map<string, number>} */
  const byType = new Map();
  for (const e of events) byType.set(e.type, (byType.get(e.type) ?? 0) + 1);
  const top = [...byType.entries()].sort((a, b) => b[1] - a[1]);
  say(
    `events written for the rollout: ${events.length} (${(events.length / N).toFixed(1)}/host): ${top.map(([k, v]) => `${k} ${v}`).join(', ')}`,
  );
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
  if (coordinator) process.stderr.write(`last coordinator log lines:\n${coordinator.logs.slice(-20).join('\n')}\n`);
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
for (const failure of failures) process.stderr.write(`CHECK FAILED: ${failure}\n`);
if (failures.length > 0) exitCode = 1;
say(`total: ${secs(Date.now() - started)}; ${exitCode === 0 ? 'all checks passed' : 'FAILED'}`);
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
