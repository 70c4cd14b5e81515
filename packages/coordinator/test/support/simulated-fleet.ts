import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CoordinatorMessage,
  ErrorCode,
  type EventRecord,
  type Facts,
  type HealthCheckResult,
  type HostRunState,
  type InstalledPackage,
  inventoryDigest,
  type OrderOutcome,
  type OrderPhase,
  type RolloutRequestInput,
  RolloutRequestSchema,
  type RolloutState,
  storedPatch,
} from '@fleetpatch/shared';
import pg from 'pg';
import { type Logger, pino } from 'pino';
import { runPostgresCluster } from '../../../../test/support/postgres-cluster.js';
import { FLEET_TEMPLATE_DATABASE } from '../../../../test/support/postgres-global-setup.js';
import type { MetricQuery } from '../../src/analysis/prometheus-query.js';
import {
  type AgentChannel,
  type CoordinatorCrashPoint,
  RolloutEngine,
  type RolloutEngineOptions,
  type WaveGate,
} from '../../src/engine/rollout-engine.js';
import type { HostRunRecord } from '../../src/store/host-run-repository.js';
import { PostgresBackend } from '../../src/store/postgres/postgres-backend.js';
import type { RolloutRecord } from '../../src/store/rollout-repository.js';
import { Store } from '../../src/store/store.js';
import { FakeClock } from './fake-clock.js';
import { FakeWindowWatcher } from './fake-window-watcher.js';
import { SAMPLE_PATCH_SPEC } from './sample-patch.js';
import { type JournalEntry, SimulatedAgent } from './simulated-agent.js';

/** Monday 2030-01-07, noon UTC: outside the 02:00 maintenance window the window specification uses. */
export const T0 = Date.parse('2030-01-07T12:00:00Z');
export const SECOND = 1000;
export const PATCH_ID = 'pat_spec';

/** `n` host names: host-1, host-2, … */
export const hosts = (n: number, prefix = 'host') => Array.from({ length: n }, (_, i) => `${prefix}-${i + 1}`);

export const FACTS: Facts = {
  hostname: 'host',
  os: 'linux',
  distro: 'debian',
  release: '12',
  kernel: '6.1.0',
  arch: 'x86_64',
  cpus: 2,
  memoryBytes: 2 ** 31,
};

const PATCH = storedPatch(SAMPLE_PATCH_SPEC, {
  id: PATCH_ID,
  createdBy: 'alice',
  createdAt: new Date(T0).toISOString(),
});

export interface SentMessage {
  agentId: string;
  message: CoordinatorMessage;
  delivered: boolean;
}

/** A restarted engine's reconnect grace unless a test says otherwise: the coordinator's default. */
export const RESTART_GRACE_MS = 60_000;

export interface SimulatedFleetOptions {
  waveGate?: WaveGate;
  /** The engine's reconnect grace after a `restart()` (default RESTART_GRACE_MS, the coordinator's 60 s). */
  reconnectGraceMs?: number;
  /** Where the engine logs (silent unless a test reads the log). */
  log?: Logger;
  /** The clock's start; T0 unless said. */
  start?: number;
  /** Called for every apply order the engine sends, before it is delivered (the property test's checks). */
  onApplySent?: (agentId: string, orderId: string, rolloutId: string) => void;
  /** The engine's test crash points (see `EngineDeps.checkpoint`). */
  checkpoint?: (name: CoordinatorCrashPoint) => void;
  /** What metric analyses are answered (a test's script); none are declared unless a test does. */
  metricQuery?: MetricQuery;
  /** The coordinator's promotion order (staging before production); none unless a test says. */
  promotion?: RolloutEngineOptions['promotion'];
  /** Change record fields the coordinator requires; none unless a test says. */
  requiredRecordFields?: RolloutEngineOptions['requiredRecordFields'];
  /** Whether an order still owes its result (the hub's count in production); always, unless a test says. */
  resultsAwaited?: RolloutEngineOptions['resultsAwaited'];
  /** Told of each report the engine drops after the store refused it (the coordinator's metric). */
  onReportDropped?: RolloutEngineOptions['onReportDropped'];
}

const silent = pino({ level: 'silent' });
const openFleets = new Set<SimulatedFleet>();

/** Closes the fleets a test left open: after each test, by the projects' setup file (`close-after-each-test.ts`). */
export async function closeOpenFleets(): Promise<void> {
  await Promise.all([...openFleets].map((fleet) => fleet.close()));
}

/**
 * The store every fleet runs on: SQLite, or PostgreSQL in the `coordinator-postgres` project
 * (vitest.config.ts sets FLEETPATCH_TEST_STORE, and its global setup starts the cluster).
 */
export const STORE_KIND = process.env.FLEETPATCH_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';

/**
 * One coordinator (the real `RolloutEngine` over a real `Store`: SQLite in a temp file, or a PostgreSQL database of its own), its fake clock,
 * channel and window watcher, and simulated agents that journal the orders they receive and answer
 * them when the test says so. The one simulated fleet of the engine's specification and property tests.
 *
 * Methods that make the engine work (`connect`, `finish`, `advance`, …) wait with `engine.whenIdle()`,
 * so nothing here sleeps or depends on timing.
 */
export class SimulatedFleet {
  readonly dir = mkdtempSync(join(tmpdir(), 'fleetpatch-engine-spec-'));
  readonly file = join(this.dir, 'fleetpatch.db');
  readonly agents = new Map<string, SimulatedAgent>();
  readonly sent: SentMessage[] = [];
  readonly windows = new FakeWindowWatcher();
  readonly clock: FakeClock;
  /** Hosts whose frames are lost on the wire: the engine believes them sent, the agent never sees them. */
  readonly lostOnTheWire = new Set<string>();
  /** Most apply orders ever held unanswered by agents at once (the engine's concurrency, seen from outside). */
  maxAppliesInFlight = 0;
  maxRevertsInFlight = 0;
  store!: Store;
  engine!: RolloutEngine;
  /** Bumped by each restart: a stopped engine's late sends go nowhere. */
  generation = 0;
  /** The fleet's own PostgreSQL database when the tests run on PostgreSQL; undefined on SQLite. */
  private postgresUrl: string | undefined;
  private closing: Promise<void> | undefined;

  /** A fleet on a fresh store holding PATCH: a new SQLite file, or a new PostgreSQL database. */
  static async open(options: SimulatedFleetOptions = {}): Promise<SimulatedFleet> {
    const fleet = new SimulatedFleet(options);
    if (STORE_KIND === 'postgres') fleet.postgresUrl = await createFleetDatabase();
    fleet.store = await fleet.openStore();
    fleet.engine = fleet.newEngine();
    await fleet.store.transaction(async () => await fleet.store.patches.insert(PATCH));
    return fleet;
  }

  private constructor(private readonly options: SimulatedFleetOptions) {
    openFleets.add(this);
    this.clock = new FakeClock(options.start ?? T0);
  }

  get now(): number {
    return this.clock.ms;
  }

  set now(ms: number) {
    this.clock.ms = ms;
  }

  private newEngine(): RolloutEngine {
    const generation = this.generation;
    // A stopped engine's sockets died with it: whatever it still tries to send goes nowhere.
    const channel: AgentChannel = {
      send: (agentId, message) => (generation === this.generation ? this.deliver(agentId, message) : false),
      isOnline: (agentId) => generation === this.generation && this.agents.get(agentId)?.online === true,
      protocolVersionOf: (agentId) => {
        const agent = this.agents.get(agentId);
        return generation === this.generation && agent?.online ? agent.protocolVersion : undefined;
      },
    };
    return new RolloutEngine({
      store: this.store,
      channel,
      log: this.options.log ?? silent,
      clock: this.clock,
      windows: this.windows,
      ...(this.options.waveGate ? { waveGate: this.options.waveGate } : {}),
      ...(this.options.checkpoint ? { checkpoint: this.options.checkpoint } : {}),
      ...(this.options.metricQuery ? { metricQuery: this.options.metricQuery } : {}),
      promotion: this.options.promotion,
      ...(this.options.requiredRecordFields ? { requiredRecordFields: this.options.requiredRecordFields } : {}),
      ...(this.options.resultsAwaited ? { resultsAwaited: this.options.resultsAwaited } : {}),
      ...(this.options.onReportDropped ? { onReportDropped: this.options.onReportDropped } : {}),
      // A restarted coordinator waits for its agents as a real one does (reconnectGraceSeconds); the first
      // engine's hosts are connected by the test as it goes, so it judges at once.
      ...(this.generation > 0 ? { reconnectGraceMs: this.options.reconnectGraceMs ?? RESTART_GRACE_MS } : {}),
    });
  }

  /** The coordinator dies at some instruction and a new process opens the same file; every socket is gone. */
  async restart(): Promise<void> {
    this.engine.stop();
    const closed = this.store.close();
    this.generation++;
    for (const agent of this.agents.values()) agent.online = false;
    this.windows.watching.clear();
    await closed;
    this.store = await this.openStore();
    this.engine = this.newEngine();
  }

  /** Stops the engine and closes the store; idempotent (the fleets left open are closed after each test). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      openFleets.delete(this);
      this.engine.stop();
      try {
        await this.store.close();
      } finally {
        rmSync(this.dir, { recursive: true, force: true });
        if (this.postgresUrl !== undefined) dropFleetDatabase(this.postgresUrl);
      }
    })();
    return this.closing;
  }

  /**
   * The real store on a real file, or the fleet's PostgreSQL database. A simulated crash drops the
   * process, not the OS page cache, so fsync on every SQLite commit buys nothing here and costs most
   * of the run time. (The PostgreSQL cluster keeps fsync: it is shared by the whole run.)
   */
  private async openStore(): Promise<Store> {
    if (this.postgresUrl !== undefined) return await Store.openPostgres(this.postgresUrl);
    const store = await Store.open(this.file);
    store.db.pragma('synchronous = OFF');
    return store;
  }

  // ---- fleet -----------------------------------------------------------------------------------

  /**
   * Registers agents with `labels` fixed (as an admin's join token would) and, unless `online: false`,
   * connects them. Each agent reports `reportedLabels` in its hello: `labels` unless said otherwise.
   */
  async addHosts(
    ids: readonly string[],
    options: {
      labels?: Record<string, string>;
      reportedLabels?: Record<string, string>;
      facts?: Partial<Facts>;
      /** false: offline now, though it has connected before (a canary may still be planned on it). */
      online?: boolean;
      /** Enrolled, but its agent never connected: never made a canary. */
      neverConnected?: boolean;
    } = {},
  ): Promise<void> {
    for (const id of ids) {
      const labels = options.labels ?? {};
      const at = new Date(this.now).toISOString();
      await this.store.agents.enroll({ id, publicKey: 'A'.repeat(43), labels, mayReplace: false }, at);
      if (options.neverConnected !== true)
        await this.store.transaction(async () => await this.store.agents.recordSightings([[id, at]]));
      const reported = options.reportedLabels ?? labels;
      this.agents.set(id, new SimulatedAgent(id, reported, { ...FACTS, hostname: id, ...options.facts }));
      if (options.online !== false && options.neverConnected !== true) await this.connect(id);
    }
  }

  /** The agent (re)connects and says hello with every journal entry the coordinator has not acked. */
  async connect(id: string): Promise<void> {
    this.hello(id);
    await this.engine.whenIdle();
  }

  /** The agent (re)connects and says hello, listing only the entries whose bit is set in `mask`. */
  hello(id: string, mask = -1): void {
    const agent = this.agent(id);
    agent.online = true;
    this.engine.onAgentHello(id, agent.hello(mask));
  }

  disconnect(id: string): void {
    this.agent(id).online = false;
  }

  agent(id: string): SimulatedAgent {
    const agent = this.agents.get(id);
    if (!agent) throw new Error(`no simulated agent ${id}`);
    return agent;
  }

  private deliver(agentId: string, message: CoordinatorMessage): boolean {
    const agent = this.agents.get(agentId);
    const lost = this.lostOnTheWire.has(agentId);
    const delivered = agent?.online === true && !lost;
    if (message.type === 'order.apply') this.options.onApplySent?.(agentId, message.orderId, message.rolloutId);
    this.sent.push({ agentId, message, delivered });
    if (!delivered || !agent) return lost;
    const known = agent.receive(message);
    // A re-delivered id is answered from the journal, never run again.
    if (known?.result) this.engine.onOrderResult(agentId, known.result);
    this.maxAppliesInFlight = Math.max(this.maxAppliesInFlight, this.unanswered('apply'));
    this.maxRevertsInFlight = Math.max(this.maxRevertsInFlight, this.unanswered('revert'));
    return true;
  }

  private unanswered(kind: JournalEntry['kind']): number {
    let n = 0;
    for (const agent of this.agents.values()) n += agent.unanswered(kind);
    return n;
  }

  // ---- what agents say -------------------------------------------------------------------------

  async progress(hostId: string, phase: OrderPhase): Promise<void> {
    const entry = this.mustOpenApply(hostId);
    entry.phase = phase;
    if (this.agent(hostId).online)
      this.engine.onOrderProgress(hostId, { type: 'order.progress', orderId: entry.orderId, phase });
    await this.engine.whenIdle();
  }

  /**
   * One health poll of the host's latest apply order (open, or healthy and baking) reported as its
   * agent does: `order.progress` in phase verifying with the results, `failingPolls` when given
   * (protocol 5; an older agent sends none). `checks` maps a check name to what it saw: `true` passes.
   */
  async healthPoll(hostId: string, checks: Record<string, true | string>, failingPolls?: number): Promise<void> {
    const entry = this.agent(hostId).latestApply();
    if (!entry) throw new Error(`${hostId} holds no apply order`);
    const at = new Date(this.now).toISOString();
    const health = Object.entries(checks).map(([check, seen]) => ({
      check,
      kind: 'http',
      ok: seen === true,
      observed: seen === true ? 'HTTP 200' : seen,
      at,
    }));
    if (this.agent(hostId).online)
      this.engine.onOrderProgress(hostId, {
        type: 'order.progress',
        orderId: entry.orderId,
        phase: 'verifying',
        health,
        ...(failingPolls === undefined ? {} : { failingPolls }),
      });
    await this.engine.whenIdle();
  }

  /**
   * The host finishes its open apply order and reports it. By default a healthy host carries the
   * change and a failed one has restored its snapshot (autoRevert host).
   */
  async finish(hostId: string, outcome: OrderOutcome = 'healthy', changed?: boolean): Promise<string> {
    const entry = this.mustOpenApply(hostId);
    this.report(hostId, entry, outcome, changed ?? (outcome === 'healthy' || outcome === 'revert_failed'));
    await this.engine.whenIdle();
    return entry.orderId;
  }

  /** Every host of `hostIds` that holds an open apply order finishes it healthy. */
  async finishAll(hostIds: readonly string[], outcome: OrderOutcome = 'healthy'): Promise<void> {
    for (const id of hostIds) if (this.agent(id).openApply()) await this.finish(id, outcome);
  }

  /** The host finishes its open revert order. */
  async finishRevert(hostId: string, outcome: 'reverted' | 'revert_failed' = 'reverted'): Promise<void> {
    this.report(hostId, this.mustOpenRevert(hostId), outcome, outcome !== 'reverted');
    await this.engine.whenIdle();
  }

  /**
   * The host refuses its open apply order before running it, as a real agent does: `failed`, nothing
   * changed, `policy_denied` with `reason` (a signed-order refusal starts with its code: `tampered: …`).
   */
  async refuse(hostId: string, reason: string): Promise<string> {
    const entry = this.mustOpenApply(hostId);
    this.report(hostId, entry, 'failed', false, { errorCode: ErrorCode.policyDenied, reason });
    await this.engine.whenIdle();
    return entry.orderId;
  }

  /**
   * The host refuses its open revert order as a real agent does: `revert_failed`, `changed: false`
   * (though the host still carries the apply's change), `policy_denied` with `reason`.
   */
  async refuseRevert(hostId: string, reason: string): Promise<string> {
    const entry = this.mustOpenRevert(hostId);
    this.report(hostId, entry, 'revert_failed', false, { errorCode: ErrorCode.policyDenied, reason });
    await this.engine.whenIdle();
    return entry.orderId;
  }

  /** A second report for an order already answered: the bake watch on the host saw health fail. */
  async reportAgain(hostId: string, orderId: string, outcome: OrderOutcome, changed: boolean): Promise<void> {
    const entry = this.agent(hostId).journal.get(orderId);
    if (!entry) throw new Error(`${hostId} never received ${orderId}`);
    this.report(hostId, entry, outcome, changed);
    await this.engine.whenIdle();
  }

  /** The agent records a result in its journal and reports it now if connected (else in its next hello). */
  report(
    hostId: string,
    entry: JournalEntry,
    outcome: OrderOutcome,
    changed: boolean,
    error: { errorCode: ErrorCode; reason?: string } | undefined = outcome === 'healthy' || outcome === 'reverted'
      ? undefined
      : { errorCode: ErrorCode.healthFailed },
    health?: HealthCheckResult[],
  ): void {
    entry.phase = 'done';
    entry.acked = false;
    entry.result = {
      orderId: entry.orderId,
      outcome,
      changed,
      ...error,
      ...(health ? { health } : {}),
      finishedAt: new Date(this.now).toISOString(),
    };
    if (this.agent(hostId).online) this.engine.onOrderResult(hostId, entry.result);
  }

  private mustOpenRevert(hostId: string): JournalEntry {
    const entry = this.agent(hostId).openReverts()[0];
    if (!entry) throw new Error(`${hostId} holds no revert order`);
    return entry;
  }

  /** The host's open apply order, for a test that reports on it by hand; throws when it holds none. */
  mustOpenApply(hostId: string): JournalEntry {
    const entry = this.agent(hostId).openApply();
    if (!entry) throw new Error(`${hostId} holds no open apply order`);
    return entry;
  }

  // ---- what people do --------------------------------------------------------------------------

  /** The host's package inventory as the coordinator stores what its agent reported. */
  async reportInventory(hostId: string, packages: readonly InstalledPackage[]): Promise<void> {
    const at = new Date(this.now).toISOString();
    await this.store.transaction(
      async () => await this.store.inventory.replace(hostId, packages, inventoryDigest(packages), at),
    );
  }

  async create(input: Partial<RolloutRequestInput> = {}, actor = 'alice'): Promise<RolloutRecord> {
    const request = RolloutRequestSchema.parse({
      patchId: PATCH_ID,
      target: { all: true },
      requiredApprovals: 0,
      maxParallel: 100,
      ...input,
    });
    return await this.engine.create(request, actor);
  }

  /** Creates (no approval needed) and starts a rollout as alice; returns its id. */
  async launch(input: Partial<RolloutRequestInput> = {}): Promise<string> {
    const { id } = await this.create(input);
    await this.engine.start(id, 'alice');
    await this.engine.whenIdle();
    return id;
  }

  /** Moves the clock and lets the engine's ticker run once. */
  async advance(ms: number): Promise<void> {
    this.now += ms;
    await this.engine.tick();
    await this.engine.whenIdle();
  }

  // ---- what the store says ---------------------------------------------------------------------

  async rollout(id: string): Promise<RolloutRecord> {
    const rollout = await this.store.rollouts.get(id);
    if (!rollout) throw new Error(`rollout ${id} is missing`);
    return rollout;
  }

  async state(id: string): Promise<RolloutState> {
    return (await this.rollout(id)).state;
  }

  async run(id: string, hostId: string): Promise<HostRunRecord> {
    const run = await this.store.hostRuns.get(id, hostId);
    if (!run) throw new Error(`${hostId} is not in rollout ${id}`);
    return run;
  }

  async hostStates(id: string): Promise<Record<string, HostRunState>> {
    return Object.fromEntries((await this.store.hostRuns.forRollout(id)).map((r) => [r.hostId, r.state]));
  }

  async events(id: string): Promise<EventRecord[]> {
    return await this.store.events(id, 0, 100_000);
  }

  /** Messages of one type the engine tried to send, in order, optionally only those to one host. */
  sentOf<T extends CoordinatorMessage['type']>(
    type: T,
    hostId?: string,
  ): (SentMessage & { message: Extract<CoordinatorMessage, { type: T }> })[] {
    return this.sent.filter(
      (s): s is SentMessage & { message: Extract<CoordinatorMessage, { type: T }> } =>
        s.message.type === type && (hostId === undefined || s.agentId === hostId),
    );
  }

  /** Hosts that were sent an apply order, in order of first send. */
  appliedHosts(): string[] {
    return [...new Set(this.sentOf('order.apply').map((s) => s.agentId))];
  }

  /** The database edited by hand (or restored from an older backup): `sql` run outside the engine, on either store. */
  async editByHand(sql: string): Promise<void> {
    if (this.store.backend instanceof PostgresBackend) await this.store.backend.executor.query(sql);
    else this.store.db.exec(sql);
  }

  /** Everything the database holds, as text: a refused verb must leave it exactly as it was. */
  async dump(tables: readonly string[] = ['rollouts', 'approvals', 'host_runs', 'events']): Promise<string> {
    if (this.store.backend instanceof PostgresBackend) {
      const executor = this.store.backend.executor;
      // No rowid on every table: rows in the order of their text, which is total for distinct rows.
      const rows = await Promise.all(tables.map((t) => executor.query(`SELECT * FROM ${t} AS r ORDER BY r::text`)));
      return JSON.stringify(rows);
    }
    return JSON.stringify(tables.map((t) => this.store.db.prepare(`SELECT * FROM ${t} ORDER BY rowid`).all()));
  }
}

/**
 * A PostgreSQL database of the fleet's own, copied from the global setup's migrated template. As
 * with SQLite's `synchronous = OFF` above: a simulated crash loses no page cache, so waiting for
 * each commit's WAL flush buys nothing here.
 *
 * Each copy is made one fleet ahead: the next fleet's database is created, and connected to once
 * (which writes the relation-cache file every later connection to it reads), while this fleet's
 * test runs. A copy and its first connection took ~0.3 s, most of a short test's time, and ~325
 * tests open a fleet on PostgreSQL. No test has used the database it gets.
 */
export function createFleetDatabase(): Promise<string> {
  const url = nextFleetDatabase ?? copyFleetTemplate();
  nextFleetDatabase = copyFleetTemplate();
  // Made ahead for a fleet that may never come (the file's last test): its failure is that fleet's to see.
  nextFleetDatabase.catch(() => undefined);
  return url;
}
let nextFleetDatabase: Promise<string> | undefined;

/**
 * A closed fleet's database goes, in the background (the drop waits for a checkpoint): kept, the
 * run's ~400 copies of ~7.5 MB held ~3.9 GB at its peak, in memory where the run's files are on a
 * tmpfs (test/support/scratch-tmpdir.ts). A drop that fails leaves a database the cluster's end removes.
 */
function dropFleetDatabase(url: string): void {
  const name = new URL(url).pathname.slice(1);
  drops = drops
    .then(async () => {
      const client = new pg.Client({ connectionString: runPostgresCluster().url });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    })
    .catch(() => undefined);
}
let drops: Promise<void> = Promise.resolve();

async function copyFleetTemplate(): Promise<string> {
  const cluster = runPostgresCluster();
  const name = `fleet_${process.pid}_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name} TEMPLATE ${FLEET_TEMPLATE_DATABASE}`);
    await client.query(`ALTER DATABASE ${name} SET synchronous_commit = off`);
  } finally {
    await client.end();
  }
  const url = cluster.urlOf(name);
  const first = new pg.Client({ connectionString: url });
  await first.connect();
  await first.end();
  return url;
}
