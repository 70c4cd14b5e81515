// @ts-check
// What both benches (bench.mjs, bench-inventory.mjs) measure with and where they write.
import { accessSync, constants, readFileSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';

/**
 * A tmpfs when there is one: the benches measure the coordinator, not the disk's fsync latency.
 * @param {string | undefined} chosen the --tmp flag, when given
 */
export function scratchBase(chosen) {
  if (chosen) return chosen;
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/** `statfs` magic numbers of the file systems a scratch directory is likely to be on (statfs(2)). */
const FILE_SYSTEMS = new Map([
  [0x01021994, 'tmpfs'],
  [0xef53, 'ext2/3/4'],
  [0x58465342, 'xfs'],
  [0x9123683e, 'btrfs'],
  [0x794c7630, 'overlayfs'],
  [0x2fc12fc1, 'zfs'],
]);

/**
 * The kind of file system `dir` is on, by name (its magic number in hex when unknown here): the
 * bench's journals, roots and store are on it, and whether it is a tmpfs or a disk changes every
 * durable write (an fsync is free on a tmpfs, ~0.2–0.4 ms of kernel work on this VM's disk).
 * @param {string} dir
 */
export function fileSystemOf(dir) {
  const { type } = statfsSync(dir);
  return FILE_SYSTEMS.get(type) ?? `0x${type.toString(16)}`;
}

/**
 * CPU time (user + system) of a process so far, in ms, from /proc (NaN elsewhere).
 * @param {number | undefined} pid
 */
export function cpuMsOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

/**
 * Where a process stands, for a run that is stuck: its scheduler state (R running, S sleeping, D in
 * the kernel…), its CPU time, and the kernel function and system call it waits in. Read twice a
 * second apart, the CPU time tells a process spinning in a loop from one blocked or idle.
 * @param {number | undefined} pid
 */
export function processStateOf(pid) {
  const read = (/** @type {string} */ file) => {
    try {
      return readFileSync(`/proc/${pid}/${file}`, 'utf8').trim();
    } catch {
      return '?';
    }
  };
  const stat = read('stat');
  return {
    state: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '?',
    cpuMs: cpuMsOf(pid),
    wchan: read('wchan'),
    syscall: read('syscall').split(' ')[0] ?? '?',
  };
}

/** @param {readonly number[]} sorted @param {number} p */
export const percentile = (sorted, p) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;

/**
 * The coordinator's structural counters from its `/metrics` text: protocol messages on agent sockets by
 * direction and type, and store transactions. Unlike CPU and wall times they do not move with the
 * machine's load, so a before/after of them says what changed.
 * @param {string} text Prometheus' text format
 */
export function wireCounters(text) {
  /** @type {Record<string, number>} */
  const messages = {};
  let transactions = 0;
  let upgradesRefused = 0;
  /** Pending sockets destroyed at the byte budgets (agentLimits.maxPendingBytes…), apart from the 503s. */
  let socketsCut = 0;
  for (const line of text.split('\n')) {
    const message = /^fleetpatch_websocket_messages_total\{direction="(\w+)",type="([\w.]+)"\} (\S+)$/.exec(line);
    if (message) messages[`${message[1]} ${message[2]}`] = Number(message[3]);
    const tx = /^fleetpatch_sqlite_transaction_duration_seconds_count\{[^}]*\} (\S+)$/.exec(line);
    if (tx) transactions += Number(tx[1]);
    const refused = /^fleetpatch_agent_upgrades_refused_total\{cap="(\w+)"\} (\S+)$/.exec(line);
    if (refused?.[1]?.startsWith('bytes')) socketsCut += Number(refused[2]);
    else if (refused) upgradesRefused += Number(refused[2]);
  }
  return { messages, transactions, upgradesRefused, socketsCut };
}

/**
 * What happened between two `wireCounters` readings, per host: messages in each direction, by type, and
 * transactions.
 * @param {{ messages: Record<string, number>, transactions: number }} before
 * @param {{ messages: Record<string, number>, transactions: number }} after
 * @param {number} hosts
 */
export function wirePerHost(before, after, hosts) {
  /** @type {Record<string, number>} */
  const byType = {};
  for (const [key, n] of Object.entries(after.messages)) {
    const delta = n - (before.messages[key] ?? 0);
    if (delta > 0) byType[key] = delta / hosts;
  }
  const total = (/** @type {string} */ direction) =>
    Object.entries(byType).reduce((sum, [key, n]) => (key.startsWith(`${direction} `) ? sum + n : sum), 0);
  return {
    messagesIn: total('received'),
    messagesOut: total('sent'),
    byType,
    transactions: (after.transactions - before.transactions) / hosts,
  };
}
