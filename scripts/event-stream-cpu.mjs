#!/usr/bin/env node
// @ts-check
// What readers of a rollout's event stream cost the coordinator (issue 16): a real coordinator (its
// app, store and stream route; SQLite on tmpfs) in this process, K streams of one rollout read by K
// child processes, and N host events committed in bursts of 6 (a busy rollout's results: a rollout of
// 10,000 hosts puts ~20,000 host events on its trail). The coordinator's own CPU (process.cpuUsage) over
// the commits, and what each reader received, for: no stream open, K streams of every event
// (`hostEvents=all`, the dashboard's), and K streams that coalesce host events (`hostEvents=coalesced`,
// `rollout status --watch`'s). Each measurement is a process of its own, after a smaller unmeasured
// round; each of `--runs` rounds measures the three in turn; medians printed.
//
// usage: node scripts/event-stream-cpu.mjs [--streams 2] [--events 20000] [--runs 3]
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  EnrollResultSchema,
  enrollProofPayload,
  generateAgentKeyPair,
  JoinTokenCreatedSchema,
  loadPrivateKey,
  signPayload,
} from '@fleetpatch/shared';
import { pino } from 'pino';
import { buildApp } from '../packages/coordinator/dist/app.js';
import { CoordinatorConfigSchema } from '../packages/coordinator/dist/config.js';
import { scratchBase } from './lib/bench-measures.mjs';
import { samplePatch } from './lib/sample-specs.mjs';

const TOKEN = 'bench-admin-token-0123456789';
const BURST = 6;

// A reader: a child process that reads one stream and, asked, says how many bytes it got.
if (process.argv[2] === '--reader') {
  const [url] = process.argv.slice(3);
  let bytes = 0;
  get(/** @type {string} */ (url), { headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
    res.on('data', (/** @type {Buffer} */ chunk) => {
      bytes += chunk.length;
    });
    process.send?.('open');
  });
  process.on('message', () => process.send?.(bytes));
} else if (process.argv[2] === '--measure') {
  // One measurement in a process of its own (no heap left over from the others), after a smaller
  // unmeasured one: V8 compiling the commit and stream paths is not what is measured.
  const [streams, coalesced, events] = process.argv.slice(3);
  await measure(Number(streams), coalesced === 'true', Math.min(Number(events), 2000));
  process.send?.(await measure(Number(streams), coalesced === 'true', Number(events)));
} else {
  await main();
}

async function main() {
  const { values } = parseArgs({
    options: {
      streams: { type: 'string', default: '2' },
      events: { type: 'string', default: '20000' },
      runs: { type: 'string', default: '3' },
    },
  });
  const streams = Number.parseInt(values.streams ?? '', 10);
  const events = Number.parseInt(values.events ?? '', 10);
  const runs = Number.parseInt(values.runs ?? '', 10);
  if (![streams, events, runs].every((n) => Number.isInteger(n) && n > 0)) {
    process.stderr.write('usage: event-stream-cpu.mjs [--streams K] [--events N] [--runs R] (positive integers)\n');
    process.exit(2);
  }
  const modes = /** @type {const} */ (['none', 'all', 'coalesced']);
  /** @type {Record<string, { cpuMs: number[], bytes: number }>} */
  const results = { none: { cpuMs: [], bytes: 0 }, all: { cpuMs: [], bytes: 0 }, coalesced: { cpuMs: [], bytes: 0 } };
  for (let run = 0; run < runs; run++) {
    for (const mode of modes) {
      const child = fork(new URL(import.meta.url).pathname, [
        '--measure',
        String(mode === 'none' ? 0 : streams),
        String(mode === 'coalesced'),
        String(events),
      ]);
      const { cpuMs, bytes } = /** @type {{ cpuMs: number, bytes: number }} */ (
        await new Promise((resolve) => child.once('message', resolve))
      );
      await new Promise((resolve) => child.once('exit', resolve));
      const result = results[mode];
      if (result) {
        result.cpuMs.push(cpuMs);
        result.bytes = bytes;
      }
    }
  }
  const median = (/** @type {number[]} */ xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const base = median(results.none?.cpuMs ?? []);
  process.stdout.write(`${events} host events committed in bursts of ${BURST}; coordinator CPU, medians of ${runs}:\n`);
  for (const mode of modes) {
    const r = results[mode];
    if (!r) continue;
    const cpu = median(r.cpuMs);
    const label = mode === 'none' ? 'no stream open' : `${streams} streams, hostEvents=${mode}`;
    const extra =
      mode === 'none'
        ? ''
        : `; the streams' share ${cpu - base} ms = ${(((cpu - base) * 1000) / events / streams).toFixed(2)} µs per event per stream; ${r.bytes} bytes to each reader`;
    process.stdout.write(`  ${label}: ${cpu} ms (${r.cpuMs.join(', ')})${extra}\n`);
  }
}

/**
 * One measurement: a fresh coordinator and rollout, `streams` readers, `events` host events.
 * @param {number} streams @param {boolean} coalesced @param {number} events
 */
async function measure(streams, coalesced, events) {
  const dataDir = mkdtempSync(join(scratchBase(undefined), 'fleetpatch-event-stream-cpu-'));
  const app = await buildApp(
    CoordinatorConfigSchema.parse({ dataDir, apiTokens: [{ name: 'alice', token: TOKEN, role: 'admin' }] }),
    { logger: pino({ level: 'warn' }) },
  );
  try {
    const rolloutId = await rolloutOfOneHost(app);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = /** @type {import('node:net').AddressInfo} */ (app.server.address());
    const url = `http://127.0.0.1:${port}/v1/rollouts/${rolloutId}/events/stream${coalesced ? '?hostEvents=coalesced' : ''}`;
    const readers = [];
    for (let i = 0; i < streams; i++) {
      const reader = fork(new URL(import.meta.url).pathname, ['--reader', url]);
      await new Promise((resolve) => reader.once('message', resolve));
      readers.push(reader);
    }
    const { store } = app.fleet;
    const at = new Date().toISOString();
    const before = process.cpuUsage();
    for (let i = 0; i < events; i += BURST) {
      await store.transaction(async () => {
        for (let k = i; k < Math.min(i + BURST, events); k++) {
          await store.appendEvent(
            {
              rolloutId,
              hostId: `bench-${k}`,
              actor: 'system',
              type: 'host.healthy',
              fromState: 'applying',
              toState: 'healthy',
              data: { wave: 2 },
            },
            at,
          );
        }
      });
      // A turn of the loop now and then, as between the bursts of a real rollout's results.
      if (i % (BURST * 10) === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    // The last notices of a coalesced stream go out up to 250 ms after the last event.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const used = process.cpuUsage(before);
    const bytes = await Promise.all(
      readers.map(
        (reader) =>
          new Promise((resolve) => {
            reader.once('message', resolve);
            reader.send('bytes?');
          }),
      ),
    );
    for (const reader of readers) reader.kill();
    return { cpuMs: Math.round((used.user + used.system) / 1000), bytes: Number(bytes[0] ?? 0) };
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Enrols one host and creates a rollout of it, through the API, as an operator and an agent would. @param {import('fastify').FastifyInstance} app */
async function rolloutOfOneHost(app) {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const issued = await app.inject({
    method: 'POST',
    url: '/v1/join-tokens',
    headers: auth,
    payload: { hostId: 'web-1' },
  });
  const { token } = JoinTokenCreatedSchema.parse(issued.json());
  const pair = generateAgentKeyPair();
  const proof = signPayload(loadPrivateKey(pair.privateKeyPem), enrollProofPayload('web-1', pair.publicKey));
  const enrolled = await app.inject({
    method: 'POST',
    url: '/v1/enroll',
    headers: { authorization: `Bearer ${token}` },
    payload: { hostId: 'web-1', publicKey: pair.publicKey, proof },
  });
  EnrollResultSchema.parse(enrolled.json());
  const patch = await app.inject({
    method: 'POST',
    url: '/v1/patches',
    headers: auth,
    payload: samplePatch({ path: '/etc/app.conf', content: 'workers = 8\n' }),
  });
  const created = await app.inject({
    method: 'POST',
    url: '/v1/rollouts',
    headers: auth,
    payload: { patchId: patch.json().id, target: { all: true }, offline: { mode: 'wait' } },
  });
  if (created.statusCode !== 201) throw new Error(`rollout: ${created.statusCode} ${created.body}`);
  return created.json().rollout.id;
}
