#!/usr/bin/env node
// @ts-check
// One agent's CPU per file order (issue 16): a real `Agent` (connection, protocol, journal, policy, file
// driver; its journal and scratch root on tmpfs) in a child process of its own, against a stand-in
// coordinator in this process that challenges, welcomes, and then sends it file orders one after
// another, each acked when its result comes in, as the real coordinator does. The orders change one
// file back and forth between two contents, each expecting the other as its prior (the bench's patch,
// an order at a time). The first order is measured alone: its time from sent to result and the agent's
// CPU for it, what a host pays on the first order after its agent started (the code it runs not yet
// compiled). After `--warm-up` orders in all, the first among them (at least it: V8 compiling the order
// path), the agent's own CPU (process.cpuUsage, user + system) over `--orders` more is divided by their
// count.
// Each of `--runs` runs is a fresh agent and journal; the medians are the figures to compare.
//
// `--strace` runs once more with `strace -c -f` attached to the agent for the measured orders only,
// and prints its system calls per order (that run's CPU is strace's, not reported). `--cpu-prof DIR`
// writes two V8 profiles of each run's agent: over its first order (`agent-PID-first.cpuprofile`) and
// over its measured orders only (`agent-PID.cpuprofile`: no start-up, no warm-up); its CPU figures then
// include the profiler's cost. For `node scripts/profile-summary.mjs`.
//
// `--tmp DIR` puts the agent's journal and root under DIR (a tmpfs by default, where syncs cost nothing).
//
// usage: node scripts/agent-order-cpu.mjs [--orders 2000] [--warm-up 300] [--runs 5] [--strace] [--cpu-prof DIR] [--tmp DIR]
import { fork, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateAgentKeyPair, PROTOCOL_VERSION } from '@fleetpatch/shared';
import { WebSocketServer } from 'ws';
import { fileSystemOf, scratchBase } from './lib/bench-measures.mjs';
import { sampleFacts } from './lib/sample-specs.mjs';

/** The two contents the orders swap the file between: the bench's patch and its prior. */
const CONTENTS = ['listen = 8080\nworkers = 2\n', 'listen = 8080\nworkers = 4\n'];
const TARGET = '/etc/bench/app.conf';
const HOST_ID = 'cpu-1';
/** Long enough that no heartbeat falls in a measured stretch of a few seconds. */
const HEARTBEAT_MS = 60_000;
/** A pause before each CPU reading: the last ack's journal write has ended and nothing else runs. */
const QUIET_MS = 100;

if (process.argv[2] === 'agent') await runAgent(/** @type {AgentSpec} */ (JSON.parse(String(process.argv[3]))));
else await main();

/** @typedef {{ url: string, dataDir: string, rootDir: string, cpuProf?: string | undefined }} AgentSpec */
/**
 * The parent asks the agent process for its CPU so far; with --cpu-prof a profile being taken ends
 * there and is written, and one named `profileAs` (the file name's suffix) starts. The answer is the
 * CPU read before the profiler's work (`until`: where a stretch measured up to this ask ends) and after
 * it (`from`: where one measured from it begins), so that stopping, writing and starting a profile (tens
 * of milliseconds) falls in no stretch measured.
 * @typedef {{ type: 'cpu', profileAs?: string }} CpuAsk
 * @typedef {{ cpuUs: number, systemUs: number }} CpuReading
 * @typedef {{ until: CpuReading, from: CpuReading }} CpuAnswer
 */

/** This process's CPU so far, user and system (µs). @returns {CpuReading} */
function cpuReading() {
  const cpu = process.cpuUsage();
  return { cpuUs: cpu.user + cpu.system, systemUs: cpu.system };
}

/**
 * The child: one agent, answering `cpu` with its CPU so far (µs, see CpuAsk); its log silent, as the
 * bench's. With `cpuProf` each ask ends the profile being taken (written there) and may start the next.
 * @param {AgentSpec} spec
 */
async function runAgent(spec) {
  const { Agent, AgentConfigSchema } = await import('@fleetpatch/agent');
  const { pino } = await import('pino');
  const config = AgentConfigSchema.parse({
    coordinatorUrls: [spec.url],
    allowInsecure: true,
    hostId: HOST_ID,
    dataDir: spec.dataDir,
    rootDir: spec.rootDir,
    logLevel: 'silent',
    file: { allowedRoots: ['/etc'] },
    inventory: { enabled: false },
  });
  const agent = new Agent({
    config,
    log: pino({ level: 'silent' }),
    facts: sampleFacts(HOST_ID),
  });
  const profiler = spec.cpuProf === undefined ? undefined : new Session();
  if (profiler !== undefined) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
  }
  /** The profile being taken, by the name it will be written under. */
  let profiling = /** @type {string | undefined} */ (undefined);
  process.on('message', async (/** @type {CpuAsk} */ ask) => {
    if (ask?.type !== 'cpu') return;
    const until = cpuReading();
    if (profiler !== undefined && profiling !== undefined) {
      const { profile } = await profiler.post('Profiler.stop');
      writeFileSync(join(String(spec.cpuProf), `agent-${process.pid}${profiling}.cpuprofile`), JSON.stringify(profile));
      profiling = undefined;
    }
    if (profiler !== undefined && ask.profileAs !== undefined) {
      profiling = ask.profileAs;
      await profiler.post('Profiler.start');
    }
    process.send?.(/** @satisfies {CpuAnswer} */ ({ until, from: cpuReading() }));
  });
  process.on('disconnect', () => process.exit(0));
  await agent.start();
}

async function main() {
  const { values } = parseArgs({
    options: {
      orders: { type: 'string', default: '2000' },
      'warm-up': { type: 'string', default: '300' },
      runs: { type: 'string', default: '5' },
      strace: { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      tmp: { type: 'string' },
    },
  });
  const orders = Number.parseInt(String(values.orders), 10);
  const warmUp = Number.parseInt(String(values['warm-up']), 10);
  const runs = Number.parseInt(String(values.runs), 10);
  const base = scratchBase(values.tmp);
  // A tmpfs by default, where a sync costs nothing; --tmp puts the journal and the root on a disk.
  say(`the agent's journal and root under ${base}, on ${fileSystemOf(base)}`);
  const perOrder = [];
  /** @type {{ ms: number, cpuUs: number }[]} */
  const firsts = [];
  for (let run = 1; run <= runs; run++) {
    const { first, cpuUs, systemUs } = await runOnce({ orders, warmUp, base, cpuProf: values['cpu-prof'] });
    perOrder.push(cpuUs / orders);
    firsts.push(first);
    say(
      `run ${run}: ${(cpuUs / orders).toFixed(0)} µs of agent CPU per order (${(systemUs / orders).toFixed(0)} in the kernel; ${orders} orders after ${Math.max(warmUp, 1)}); its first order ${first.ms.toFixed(1)} ms from sent to result, ${first.cpuUs} µs of CPU`,
    );
  }
  const sorted = [...perOrder].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN;
  const byMs = [...firsts].sort((a, b) => a.ms - b.ms);
  const byCpu = [...firsts].sort((a, b) => a.cpuUs - b.cpuUs);
  const middle = Math.floor((runs - 1) / 2);
  if (runs > 0)
    say(
      `the first order: median ${byMs[middle]?.ms.toFixed(1)} ms from sent to result (min ${byMs[0]?.ms.toFixed(1)}, max ${byMs.at(-1)?.ms.toFixed(1)}), ${byCpu[middle]?.cpuUs} µs of agent CPU (min ${byCpu[0]?.cpuUs}, max ${byCpu.at(-1)?.cpuUs})`,
    );
  if (runs > 0)
    say(
      `median ${median.toFixed(0)} µs per order over ${runs} runs (min ${sorted[0]?.toFixed(0)}, max ${sorted.at(-1)?.toFixed(0)})`,
    );
  if (values.strace) {
    const { syscalls } = await runOnce({ orders, warmUp, base, strace: true });
    if (syscalls === undefined) throw new Error('strace wrote no summary');
    say(`strace -c -f over ${orders} orders: ${(syscalls.total / orders).toFixed(1)} system calls per order`);
    for (const [name, calls] of syscalls.byName) say(`  ${(calls / orders).toFixed(2).padStart(7)}  ${name}`);
  }
}

/** @param {string} line */
function say(line) {
  process.stdout.write(`${line}\n`);
}

/**
 * One fresh agent through `warmUp` + `orders` orders; its CPU over the last `orders`, or under
 * strace its system calls over them.
 * @param {{ orders: number, warmUp: number, base: string, strace?: boolean, cpuProf?: string | undefined }} options
 * @returns {Promise<{ first: { ms: number, cpuUs: number }, cpuUs: number, systemUs: number, syscalls?: { total: number, byName: [string, number][] } }>}
 */
async function runOnce({ orders, warmUp, base, strace = false, cpuProf }) {
  const scratch = mkdtempSync(join(base, 'fleetpatch-order-cpu-'));
  const dataDir = join(scratch, 'data');
  const rootDir = join(scratch, 'root');
  mkdirSync(join(rootDir, 'etc', 'bench'), { recursive: true, mode: 0o755 });
  writeFileSync(join(rootDir, TARGET), CONTENTS[0] ?? '', { mode: 0o644 });
  mkdirSync(dataDir, { mode: 0o700 });
  const pair = generateAgentKeyPair();
  writeFileSync(
    join(dataDir, 'credential.json'),
    JSON.stringify({ hostId: HOST_ID, ...pair, enrolledAt: new Date().toISOString() }),
    { mode: 0o600 },
  );
  const coordinator = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise((resolve) => coordinator.once('listening', resolve));
  const { port } = /** @type {import('node:net').AddressInfo} */ (coordinator.address());
  /** @type {AgentSpec} */
  const spec = { url: `ws://127.0.0.1:${port}`, dataDir, rootDir, cpuProf };
  if (cpuProf !== undefined) mkdirSync(cpuProf, { recursive: true });
  const agent = fork(fileURLToPath(import.meta.url), ['agent', JSON.stringify(spec)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const socket = await new Promise((resolve) => coordinator.once('connection', resolve));
    /** @type {((message: any) => void) | undefined} */
    let onResult;
    /** @type {() => void} */
    let welcomed = () => {};
    const hello = new Promise((resolve) => {
      welcomed = () => resolve(undefined);
    });
    socket.on('message', (/** @type {Buffer} */ data) => {
      const message = JSON.parse(String(data));
      if (message.type === 'hello') {
        socket.send(
          JSON.stringify({
            type: 'welcome',
            protocolVersion: PROTOCOL_VERSION,
            agentId: HOST_ID,
            heartbeatIntervalMs: HEARTBEAT_MS,
          }),
        );
        welcomed();
      } else if (message.type === 'order.result') onResult?.(message);
    });
    socket.send(JSON.stringify({ type: 'challenge', nonce: 'n'.repeat(43) }));
    await hello;

    /** Order `i` writes CONTENTS[(i + 1) % 2] over CONTENTS[i % 2]; resolves once its result is acked. */
    const order = (/** @type {number} */ i) =>
      new Promise((resolve, reject) => {
        const orderId = `ord-${i}`;
        onResult = (result) => {
          if (result.orderId !== orderId) return;
          if (result.outcome !== 'healthy') reject(new Error(`order ${orderId}: ${JSON.stringify(result)}`));
          socket.send(JSON.stringify({ type: 'order.ack', orderId, finishedAt: result.finishedAt }));
          resolve(undefined);
        };
        socket.send(JSON.stringify(orderApply(orderId, i)));
      });
    const cpuOfAgent = async (/** @type {string | undefined} */ profileAs = undefined) => {
      await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
      const reply = new Promise((resolve) => agent.once('message', resolve));
      agent.send(/** @satisfies {CpuAsk} */ ({ type: 'cpu', ...(profileAs === undefined ? {} : { profileAs }) }));
      return /** @type {CpuAnswer} */ (await reply);
    };

    // The first order of a fresh agent process, alone: what every host pays on its first order.
    const beforeFirst = await cpuOfAgent('-first');
    const sent = performance.now();
    await order(0);
    const firstMs = performance.now() - sent;
    const afterFirst = await cpuOfAgent();
    const first = { ms: firstMs, cpuUs: afterFirst.until.cpuUs - beforeFirst.from.cpuUs };
    // The first order is one of the warm-up's (at least it, whatever --warm-up says).
    const measuredFrom = Math.max(warmUp, 1);
    for (let i = 1; i < measuredFrom; i++) await order(i);
    const tracer = strace ? await attachStrace(/** @type {number} */ (agent.pid), join(scratch, 'strace.txt')) : null;
    const before = await cpuOfAgent('');
    for (let i = measuredFrom; i < measuredFrom + orders; i++) await order(i);
    const after = await cpuOfAgent();
    const syscalls = tracer ? await tracer.detach() : undefined;
    return {
      first,
      cpuUs: after.until.cpuUs - before.from.cpuUs,
      systemUs: after.until.systemUs - before.from.systemUs,
      ...(syscalls ? { syscalls } : {}),
    };
  } finally {
    const exited = new Promise((resolve) => agent.once('exit', resolve));
    agent.disconnect();
    await exited;
    coordinator.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * `strace -c -f` attached to every thread of `pid` (libuv's pool included) until `detach`, which
 * returns the calls it counted, by name, most first.
 * @param {number} pid
 * @param {string} output
 */
async function attachStrace(pid, output) {
  const tracer = spawn('strace', ['-c', '-f', '-p', String(pid), '-o', output], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  // strace says "Process N attached" for each thread once it traces it.
  await new Promise((resolve, reject) => {
    tracer.stderr.on('data', (chunk) => {
      stderr += String(chunk);
      if (stderr.includes('attached')) setTimeout(resolve, 200);
    });
    tracer.once('exit', (code) => reject(new Error(`strace exited ${code}: ${stderr}`)));
  });
  return {
    async detach() {
      const exited = new Promise((resolve) => tracer.once('exit', resolve));
      tracer.kill('SIGINT');
      await exited;
      /** @type {[string, number][]} */
      const byName = [];
      let total = 0;
      // `% time  seconds  usecs/call  calls  errors  syscall`; the errors column may be empty.
      for (const line of readFileSync(output, 'utf8').split('\n')) {
        const fields = line.trim().split(/\s+/);
        const name = fields.at(-1) ?? '';
        if (!/^\d/.test(fields[0] ?? '') || fields.length < 5) continue;
        const calls = Number(fields[3]);
        if (name === 'total') total = calls;
        else byName.push([name, calls]);
      }
      return { total, byName: byName.sort((a, b) => b[1] - a[1]) };
    },
  };
}

/**
 * The `order.apply` the coordinator sends for the bench's patch (no health checks, zero bake), with
 * the content swapped each order.
 * @param {string} orderId
 * @param {number} i
 */
function orderApply(orderId, i) {
  const prior = CONTENTS[i % 2] ?? '';
  return {
    type: 'order.apply',
    orderId,
    rolloutId: 'ro_cpu',
    patchId: 'pat_cpu',
    change: {
      kind: 'file',
      path: TARGET,
      content: CONTENTS[(i + 1) % 2],
      encoding: 'utf8',
      mode: '0644',
      owner: String(process.getuid?.() ?? 0),
      group: String(process.getgid?.() ?? 0),
      expectedPriorSha256: createHash('sha256').update(prior).digest('hex'),
    },
    health: { checks: [], intervalSeconds: 1, minHealthySeconds: 0, healthyDeadlineSeconds: 60 },
    failIfUnhealthyBefore: false,
    revertOnHealthFailure: true,
    bakeSeconds: 0,
  };
}
