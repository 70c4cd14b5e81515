/**
 * /metrics scraped from a real coordinator process while real agents run real rollouts: the numbers
 * move as things happen — agents connecting, waves and hosts finishing, a failure counted by its
 * code, messages and closes on the agent sockets, SQLite transactions — and no series names a host.
 * Each agent (configured in YAML) writes its own metrics as a node_exporter textfile; Prometheus'
 * own `promtool check metrics` accepts both expositions.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentProcess, waitFor } from '../scripts/lib/local-fleet.mjs';
import { sha256Of } from '../scripts/lib/sample-specs.mjs';
import { FleetHarness, sampleFilePatch } from './support/fleet-harness.js';
import { prometheus } from './support/prometheus-server.js';
import { itNeeding } from './support/requirements.js';

const HOSTS = ['metrics-1', 'metrics-2', 'metrics-3'];
const METRICS_TOKEN = 'e2e-metrics-scraper-token-01';
const PATH = '/etc/app/metrics.conf';

let work: string;
let fleet: FleetHarness;
const agents = new Map<string, AgentProcess>();

const rootOf = (host: string) => join(work, host, 'root');
const textfileDir = () => join(work, 'node-exporter-textfiles');
const textfileOf = (host: string) => join(textfileDir(), `fleetpatch_agent_${host}.prom`);

/** Every sample of the exposition, `name{labels}` → value. */
async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(`${fleet.coordinator.url}/metrics`, {
    headers: { authorization: `Bearer ${METRICS_TOKEN}` },
  });
  expect(res.status).toBe(200);
  return parseSamples(await res.text());
}

/** The samples of an exposition, `name{labels}` → value. */
function parseSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** Polls an agent's textfile until `holds` is true of it. */
function textfileUntil(host: string, what: string, holds: (m: Map<string, number>) => boolean) {
  return waitFor(
    what,
    async () => {
      const samples = parseSamples(await readFile(textfileOf(host), 'utf8').catch(() => ''));
      return holds(samples) ? samples : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

/** Polls /metrics until `holds` is true of a scrape; returns that scrape. */
function scrapeUntil(what: string, holds: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  return waitFor(
    what,
    async () => {
      const samples = await scrape();
      return holds(samples) ? samples : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

const value = (m: Map<string, number>, series: string) => m.get(series) ?? 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-metrics-'));
  fleet = await FleetHarness.start(join(work, 'coordinator'), {
    tickIntervalMs: 50,
    extraConfig: { metrics: { token: METRICS_TOKEN } },
  });
  await mkdir(textfileDir());
  for (const host of HOSTS) {
    await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
    // YAML, as under /etc/fleetpatch: the agent reads the file by its extension.
    const configFile = join(work, `${host}.yaml`);
    await writeFile(configFile, `metrics:\n  textfile: ${textfileOf(host)}\n  intervalSeconds: 1\n`);
    const joinToken = await fleet.register(host);
    agents.set(
      host,
      fleet.spawnAgent({ id: host, joinToken, configFile, dataDir: join(work, host, 'data'), rootDir: rootOf(host) }),
    );
  }
  await fleet.waitOnline(HOSTS);
});

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('GET /metrics during real rollouts', () => {
  it('refuses a scrape without the metrics token', async () => {
    const res = await fetch(`${fleet.coordinator.url}/metrics`);
    expect(res.status).toBe(401);
  });

  it('moves with a rollout: running while it bakes, then hosts, waves, orders and messages counted', async () => {
    const before = await scrapeUntil('three agents connected', (m) => value(m, 'fleetpatch_agents_connected') === 3);
    expect(value(before, 'fleetpatch_websocket_messages_total{direction="received",type="hello"}')).toBe(3);
    const transactionsBefore = value(
      before,
      'fleetpatch_sqlite_transaction_duration_seconds_count{outcome="committed"}',
    );

    const patchId = await fleet.createPatch(sampleFilePatch(PATH, 'metrics = on\n'));
    const rolloutId = await fleet.startRollout({
      patchId,
      target: { all: true },
      waves: [1, '100%'],
      maxFailures: 0,
      bakeSeconds: 3,
    });

    // During the canary's bake: the rollout is running and the canary wave has been measured.
    const baking = await scrapeUntil(
      'the canary wave passed while the rollout runs',
      (m) => value(m, 'fleetpatch_wave_duration_seconds_count{outcome="passed"}') === 1,
    );
    expect(value(baking, 'fleetpatch_rollouts{state="running"}')).toBe(1);
    expect(value(baking, 'fleetpatch_orders{state="healthy"}')).toBe(1);
    expect(value(baking, 'fleetpatch_orders{state="queued"}')).toBe(2);
    expect(value(baking, 'fleetpatch_host_duration_seconds_count{outcome="healthy"}')).toBe(1);

    const done = await fleet.waitForState(rolloutId, ['succeeded', 'halted']);
    expect(done.rollout.state).toBe('succeeded');
    const after = await scrapeUntil(
      'the rollout succeeded',
      (m) => value(m, 'fleetpatch_rollouts{state="succeeded"}') === 1,
    );
    expect(value(after, 'fleetpatch_rollouts{state="running"}')).toBe(0);
    expect(value(after, 'fleetpatch_orders{state="healthy"}')).toBe(3);
    expect(value(after, 'fleetpatch_wave_duration_seconds_count{outcome="passed"}')).toBe(2);
    expect(value(after, 'fleetpatch_host_duration_seconds_count{outcome="healthy"}')).toBe(3);
    expect(value(after, 'fleetpatch_host_duration_seconds_sum{outcome="healthy"}')).toBeGreaterThan(0);
    expect(value(after, 'fleetpatch_websocket_messages_total{direction="sent",type="order.apply"}')).toBe(3);
    expect(value(after, 'fleetpatch_websocket_messages_total{direction="received",type="order.result"}')).toBe(3);
    expect(value(after, 'fleetpatch_sqlite_transaction_duration_seconds_count{outcome="committed"}')).toBeGreaterThan(
      transactionsBefore + 10,
    );
    expect(
      value(after, 'fleetpatch_http_requests_total{method="POST",route="/v1/rollouts/:id/start",status="200"}'),
    ).toBe(1);

    // Each agent's own file says what it did: the canary's order, applied and healthy.
    const canary = await textfileUntil('metrics-1', 'the canary counted its order', (m) =>
      m.has('fleetpatch_agent_orders_total{kind="apply",outcome="healthy"}'),
    );
    expect(value(canary, 'fleetpatch_agent_orders_total{kind="apply",outcome="healthy"}')).toBe(1);
    expect(value(canary, 'fleetpatch_agent_order_duration_seconds_count{kind="apply",outcome="healthy"}')).toBe(1);
    expect(value(canary, 'fleetpatch_agent_connected')).toBe(1);

    // Bounded labels: no series names a host or a rollout.
    const series = [...after.keys()].join('\n');
    for (const host of HOSTS) expect(series).not.toContain(host);
    expect(series).not.toContain(rolloutId);
  });

  it('counts a failing host by its error code and the halted wave as failed', async () => {
    // Drift on metrics-1: the file is not what the patch expects, so the canary fails its precondition.
    await writeFile(join(rootOf('metrics-1'), '/etc/app/drift.conf'), 'edited by hand\n');
    const spec = sampleFilePatch('/etc/app/drift.conf', 'managed\n');
    const patchId = await fleet.createPatch({
      ...spec,
      change: { ...spec.change, expectedPriorSha256: sha256Of('what we expect\n') } as typeof spec.change,
    });
    const rolloutId = await fleet.startRollout({ patchId, target: { all: true }, waves: [1, '100%'], maxFailures: 0 });
    const halted = await fleet.waitForState(rolloutId, ['halted', 'succeeded']);
    expect(halted.rollout.state).toBe('halted');
    const after = await scrapeUntil('the halt counted', (m) => value(m, 'fleetpatch_rollouts{state="halted"}') === 1);
    expect(value(after, 'fleetpatch_host_failures_total{code="precondition_failed"}')).toBe(1);
    expect(value(after, 'fleetpatch_wave_duration_seconds_count{outcome="failed"}')).toBe(1);
    expect(value(after, 'fleetpatch_orders{state="failed"}')).toBe(1);
  });

  itNeeding([prometheus], "promtool check metrics accepts the coordinator's and an agent's exposition", async () => {
    const res = await fetch(`${fleet.coordinator.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    for (const exposition of [await res.text(), await readFile(textfileOf('metrics-1'), 'utf8')]) {
      // Exit 0: clean; 3: it parsed, with lint problems (printed one a line); anything else: malformed.
      const run = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
      expect([0, 3]).toContain(run.status);
      // prom-client's own Node gauges are named `…_total` (nodejs_active_handles_total): not ours to rename.
      const problems = `${run.stdout}${run.stderr}`
        .split('\n')
        .filter((line) => line !== '' && !/nodejs_active_\w+_total non-counter/.test(line));
      expect(problems).toEqual([]);
    }
  });

  it('an agent that stops is a close counted by its code, one agent fewer connected, and its file says so', async () => {
    const closesBefore = value(await scrape(), 'fleetpatch_websocket_closes_total{code="1000"}');
    await agents.get('metrics-3')?.stop();
    const after = await scrapeUntil('two agents connected', (m) => value(m, 'fleetpatch_agents_connected') === 2);
    expect(value(after, 'fleetpatch_websocket_closes_total{code="1000"}')).toBe(closesBefore + 1);
    // The last write, on the way out, says it is no longer connected; no temp file is left behind.
    const last = parseSamples(await readFile(textfileOf('metrics-3'), 'utf8'));
    expect(value(last, 'fleetpatch_agent_connected')).toBe(0);
    expect((await readdir(textfileDir())).filter((name) => name.includes('metrics-3'))).toEqual([
      'fleetpatch_agent_metrics-3.prom',
    ]);
  });
});
