/**
 * Specification of the rollout lifecycle, by example: the real `RolloutEngine` over a real SQLite
 * `Store` (one file per test), a fake agent channel, a fake clock and small simulated agents that
 * journal the orders they receive and answer them when the test says so.
 *
 * The engine batches agent reports and advances on `setImmediate`; `settle()` lets those chains run
 * out, so nothing here sleeps or depends on timing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CoordinatorMessage,
  ErrorCode,
  type EventRecord,
  type Facts,
  FleetError,
  type Hello,
  type HostRunState,
  type MaintenanceWindow,
  type OrderOutcome,
  type OrderPhase,
  type OrderResultBody,
  PatchSchema,
  ROLLOUT_STATES,
  type RolloutRequestInput,
  RolloutRequestSchema,
  type RolloutState,
} from '@fleetpatch/shared';
import Database from 'better-sqlite3';
import { type Logger, pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RevertRunner } from '../src/engine/revert-runner.js';
import { type AgentChannel, RolloutEngine, type WaveGate, type WindowWatcher } from '../src/engine/rollout-engine.js';
import { VERB_TRANSITIONS, type Verb } from '../src/engine/rollout-states.js';
import { RolloutView } from '../src/engine/rollout-view.js';
import { canStartWave } from '../src/schedule/maintenance-window.js';
import type { HostRunRecord } from '../src/store/host-run-repository.js';
import type { RolloutRecord } from '../src/store/rollout-repository.js';
import { Store } from '../src/store/store.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

// ---- the world ---------------------------------------------------------------------------------

const log = pino({ level: 'silent' });
/** Monday 2030-01-07, noon UTC: outside the 02:00 maintenance window used below. */
const T0 = Date.parse('2030-01-07T12:00:00Z');
const SECOND = 1000;
const PATCH_ID = 'pat_spec';

const FACTS: Facts = {
  hostname: 'host',
  os: 'linux',
  distro: 'debian',
  release: '12',
  kernel: '6.1.0',
  arch: 'x86_64',
  cpus: 2,
  memoryBytes: 2 ** 31,
};

interface Sent {
  agentId: string;
  message: CoordinatorMessage;
  delivered: boolean;
}

/** What a simulated agent's journal holds about one order. */
interface JournalEntry {
  orderId: string;
  kind: 'apply' | 'revert';
  revertsOrderId: string | null;
  phase: OrderPhase;
  result: OrderResultBody | null;
  acked: boolean;
}

/** A tiny agent: journals every order it receives, answers only when told to, forgets nothing. */
class SimAgent {
  readonly journal = new Map<string, JournalEntry>();
  readonly cancels: string[] = [];
  /** Apply orders delivered again under an id the journal already knew. */
  redeliveries = 0;

  constructor(
    readonly id: string,
    readonly labels: Record<string, string>,
    readonly facts: Facts,
  ) {}

  /** The latest apply order this agent holds without a result. */
  openApply(): JournalEntry | undefined {
    return [...this.journal.values()].filter((e) => e.kind === 'apply' && e.result === null).at(-1);
  }

  openReverts(): JournalEntry[] {
    return [...this.journal.values()].filter((e) => e.kind === 'revert' && e.result === null);
  }

  /** The acks this agent got were lost (it crashed before writing them down). */
  forgetAcks(): void {
    for (const entry of this.journal.values()) entry.acked = false;
  }

  applyIds(): string[] {
    return [...this.journal.values()].filter((e) => e.kind === 'apply').map((e) => e.orderId);
  }

  hello(): Hello {
    return {
      type: 'hello',
      protocolVersion: 1,
      agentVersion: 'sim',
      labels: this.labels,
      facts: this.facts,
      orders: [...this.journal.values()]
        .filter((e) => !e.acked)
        .map((e) => ({ orderId: e.orderId, phase: e.phase, ...(e.result ? { result: e.result } : {}) })),
    };
  }
}

/** Records every watch and unwatch, as node-cron's scheduler would receive them. */
class FakeWindowWatcher implements WindowWatcher {
  readonly watching = new Map<string, MaintenanceWindow>();
  watch(rolloutId: string, window: MaintenanceWindow): void {
    this.watching.set(rolloutId, window);
  }
  unwatch(rolloutId: string): void {
    this.watching.delete(rolloutId);
  }
}

interface FleetOptions {
  waveGate?: WaveGate;
  /** Where the engine logs (silent unless a test reads the log). */
  log?: Logger;
}

/** A logger that keeps every line it writes, for tests that check what the engine logged. */
function capturingLog(): { log: Logger; lines: { level: number; msg: string; [key: string]: unknown }[] } {
  const lines: { level: number; msg: string }[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

const openFleets: Fleet[] = [];
afterEach(() => {
  for (const fleet of openFleets.splice(0)) fleet.close();
});

/** One coordinator (store + engine) over a temp SQLite file, its clock, and its simulated agents. */
class Fleet {
  readonly dir = mkdtempSync(join(tmpdir(), 'fleetpatch-engine-spec-'));
  readonly file = join(this.dir, 'fleetpatch.db');
  readonly agents = new Map<string, SimAgent>();
  readonly online = new Set<string>();
  readonly sent: Sent[] = [];
  readonly windows = new FakeWindowWatcher();
  /** Hosts whose frames are lost on the wire: the engine believes them sent, the agent never sees them. */
  readonly lostOnTheWire = new Set<string>();
  now = T0;
  /** Most apply orders ever held unanswered by agents at once (the engine's concurrency, seen from outside). */
  maxAppliesInFlight = 0;
  maxRevertsInFlight = 0;
  store: Store;
  engine: RolloutEngine;
  private generation = 0;

  constructor(private readonly options: FleetOptions = {}) {
    openFleets.push(this);
    this.store = Store.open(this.file);
    this.engine = this.newEngine();
    this.store.transaction(() => this.store.patches.insert(PATCH));
  }

  private newEngine(): RolloutEngine {
    const generation = this.generation;
    // A stopped engine's sockets died with it: whatever it still tries to send goes nowhere.
    const channel: AgentChannel = {
      send: (agentId, message) => (generation === this.generation ? this.deliver(agentId, message) : false),
      isOnline: (agentId) => generation === this.generation && this.online.has(agentId),
    };
    return new RolloutEngine({
      store: this.store,
      channel,
      log: this.options.log ?? log,
      clock: { now: () => this.now },
      windows: this.windows,
      ...(this.options.waveGate ? { waveGate: this.options.waveGate } : {}),
    });
  }

  /** The coordinator dies and a new process opens the same file; every agent socket is gone. */
  restart(): void {
    this.engine.stop();
    this.store.close();
    this.generation++;
    this.online.clear();
    this.windows.watching.clear();
    this.store = Store.open(this.file);
    this.engine = this.newEngine();
  }

  close(): void {
    this.engine.stop();
    this.store.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- fleet -----------------------------------------------------------------------------------

  /** Registers agents (as an admin would) and, unless `online: false`, connects them. */
  async addHosts(
    ids: readonly string[],
    options: { labels?: Record<string, string>; facts?: Partial<Facts>; online?: boolean } = {},
  ): Promise<void> {
    for (const id of ids) {
      const labels = options.labels ?? {};
      this.store.agents.enroll({ id, publicKey: 'A'.repeat(43), labels }, new Date(this.now).toISOString());
      this.agents.set(id, new SimAgent(id, labels, { ...FACTS, hostname: id, ...options.facts }));
      if (options.online !== false) await this.connect(id);
    }
  }

  /** The agent (re)connects and says hello with every journal entry the coordinator has not acked. */
  async connect(id: string): Promise<void> {
    this.online.add(id);
    this.engine.onAgentHello(id, this.agent(id).hello());
    await settle();
  }

  disconnect(id: string): void {
    this.online.delete(id);
  }

  agent(id: string): SimAgent {
    const agent = this.agents.get(id);
    if (!agent) throw new Error(`no simulated agent ${id}`);
    return agent;
  }

  private deliver(agentId: string, message: CoordinatorMessage): boolean {
    const lost = this.lostOnTheWire.has(agentId);
    const delivered = this.online.has(agentId) && !lost;
    this.sent.push({ agentId, message, delivered });
    const agent = this.agents.get(agentId);
    if (!delivered || !agent) return lost;
    switch (message.type) {
      case 'order.apply':
      case 'order.revert': {
        if (agent.journal.has(message.orderId)) {
          agent.redeliveries++;
          break;
        }
        agent.journal.set(message.orderId, {
          orderId: message.orderId,
          kind: message.type === 'order.apply' ? 'apply' : 'revert',
          revertsOrderId: message.type === 'order.revert' ? message.revertsOrderId : null,
          phase: message.type === 'order.apply' ? 'accepted' : 'reverting',
          result: null,
          acked: false,
        });
        this.maxAppliesInFlight = Math.max(this.maxAppliesInFlight, this.unanswered('apply'));
        this.maxRevertsInFlight = Math.max(this.maxRevertsInFlight, this.unanswered('revert'));
        break;
      }
      case 'order.cancel':
        agent.cancels.push(message.orderId);
        break;
      case 'order.ack': {
        const entry = agent.journal.get(message.orderId);
        if (entry?.result) entry.acked = true;
        break;
      }
      default:
        break;
    }
    return true;
  }

  private unanswered(kind: JournalEntry['kind']): number {
    let n = 0;
    for (const agent of this.agents.values()) {
      for (const entry of agent.journal.values()) if (entry.kind === kind && entry.result === null) n++;
    }
    return n;
  }

  // ---- what agents say -------------------------------------------------------------------------

  async progress(hostId: string, phase: OrderPhase): Promise<void> {
    const entry = this.mustOpenApply(hostId);
    entry.phase = phase;
    if (this.online.has(hostId))
      this.engine.onOrderProgress(hostId, { type: 'order.progress', orderId: entry.orderId, phase });
    await settle();
  }

  /**
   * The host finishes its open apply order and reports it. By default a healthy host carries the
   * change and a failed one has restored its snapshot (autoRevert host).
   */
  async finish(hostId: string, outcome: OrderOutcome = 'healthy', changed?: boolean): Promise<string> {
    const entry = this.mustOpenApply(hostId);
    this.report(hostId, entry, outcome, changed ?? (outcome === 'healthy' || outcome === 'revert_failed'));
    await settle();
    return entry.orderId;
  }

  /** Every host of `hostIds` that holds an open apply order finishes it healthy. */
  async finishAll(hostIds: readonly string[], outcome: OrderOutcome = 'healthy'): Promise<void> {
    for (const id of hostIds) if (this.agent(id).openApply()) await this.finish(id, outcome);
  }

  /** The host finishes its open revert order. */
  async finishRevert(hostId: string, outcome: 'reverted' | 'revert_failed' = 'reverted'): Promise<void> {
    const entry = this.agent(hostId).openReverts()[0];
    if (!entry) throw new Error(`${hostId} holds no revert order`);
    this.report(hostId, entry, outcome, outcome !== 'reverted');
    await settle();
  }

  /** A second report for an order already answered: the bake watch on the host saw health fail. */
  async reportAgain(hostId: string, orderId: string, outcome: OrderOutcome, changed: boolean): Promise<void> {
    const entry = this.agent(hostId).journal.get(orderId);
    if (!entry) throw new Error(`${hostId} never received ${orderId}`);
    this.report(hostId, entry, outcome, changed);
    await settle();
  }

  private report(hostId: string, entry: JournalEntry, outcome: OrderOutcome, changed: boolean): void {
    entry.phase = 'done';
    entry.acked = false;
    entry.result = {
      orderId: entry.orderId,
      outcome,
      changed,
      ...(outcome === 'healthy' || outcome === 'reverted' ? {} : { errorCode: ErrorCode.healthFailed }),
      finishedAt: new Date(this.now).toISOString(),
    };
    if (this.online.has(hostId)) this.engine.onOrderResult(hostId, entry.result);
  }

  private mustOpenApply(hostId: string): JournalEntry {
    const entry = this.agent(hostId).openApply();
    if (!entry) throw new Error(`${hostId} holds no open apply order`);
    return entry;
  }

  // ---- what people do --------------------------------------------------------------------------

  create(input: Partial<RolloutRequestInput> = {}, actor = 'alice'): RolloutRecord {
    const request = RolloutRequestSchema.parse({
      patchId: PATCH_ID,
      target: { all: true },
      requiredApprovals: 0,
      maxParallel: 100,
      ...input,
    });
    return this.engine.create(request, actor);
  }

  /** Creates (no approval needed) and starts a rollout as alice; returns its id. */
  async launch(input: Partial<RolloutRequestInput> = {}): Promise<string> {
    const { id } = this.create(input);
    this.engine.start(id, 'alice');
    await settle();
    return id;
  }

  /** Moves the clock and lets the engine's ticker run once. */
  async advance(ms: number): Promise<void> {
    this.now += ms;
    this.engine.tick();
    await settle();
  }

  // ---- what the store says ---------------------------------------------------------------------

  rollout(id: string): RolloutRecord {
    const rollout = this.store.rollouts.get(id);
    if (!rollout) throw new Error(`rollout ${id} is missing`);
    return rollout;
  }

  state(id: string): RolloutState {
    return this.rollout(id).state;
  }

  run(id: string, hostId: string): HostRunRecord {
    const run = this.store.hostRuns.get(id, hostId);
    if (!run) throw new Error(`${hostId} is not in rollout ${id}`);
    return run;
  }

  hostStates(id: string): Record<string, HostRunState> {
    return Object.fromEntries(this.store.hostRuns.forRollout(id).map((r) => [r.hostId, r.state]));
  }

  events(id: string): EventRecord[] {
    return this.store.events(id, 0, 100_000);
  }

  /** Messages of one type the engine tried to send, in order, optionally only those to one host. */
  sentOf<T extends CoordinatorMessage['type']>(
    type: T,
    hostId?: string,
  ): (Sent & { message: Extract<CoordinatorMessage, { type: T }> })[] {
    return this.sent.filter(
      (s): s is Sent & { message: Extract<CoordinatorMessage, { type: T }> } =>
        s.message.type === type && (hostId === undefined || s.agentId === hostId),
    );
  }

  /** Hosts that were sent an apply order, in order of first send. */
  appliedHosts(): string[] {
    return [...new Set(this.sentOf('order.apply').map((s) => s.agentId))];
  }

  /** Everything the database holds, as text: a refused verb must leave it exactly as it was. */
  dump(): string {
    const tables = ['rollouts', 'approvals', 'host_runs', 'events'];
    return JSON.stringify(tables.map((t) => this.store.db.prepare(`SELECT * FROM ${t} ORDER BY rowid`).all()));
  }
}

const PATCH = PatchSchema.parse({
  ...SAMPLE_PATCH_SPEC,
  id: PATCH_ID,
  createdBy: 'alice',
  createdAt: new Date(T0).toISOString(),
});

/** Lets every setImmediate chain the engine started (report batches, advances, revert sends) run out. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

function refusal(action: () => unknown): FleetError {
  try {
    action();
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('the action was accepted');
}

const hosts = (n: number, prefix = 'host') => Array.from({ length: n }, (_, i) => `${prefix}-${i + 1}`);

// ---- four eyes ---------------------------------------------------------------------------------

describe('approval (four eyes)', () => {
  it('refuses an approval by the person who created the rollout', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['web-1']);
    const { id, state } = fleet.create({ requiredApprovals: 1 }, 'alice');
    expect(state).toBe('awaiting_approval');

    const err = refusal(() => fleet.engine.approve(id, 'alice'));
    expect(err.code).toBe(ErrorCode.forbidden);
    expect(fleet.state(id)).toBe('awaiting_approval');
    expect(fleet.store.rollouts.approvals(id)).toEqual([]);
  });

  it('moves to scheduled once a second person approves', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['web-1']);
    const { id } = fleet.create({ requiredApprovals: 1 }, 'alice');

    expect(fleet.engine.approve(id, 'bob').state).toBe('scheduled');
    expect(fleet.store.rollouts.approvals(id).map((a) => a.approver)).toEqual(['bob']);
  });

  it('with requiredApprovals 2 needs two distinct approvers; the same one twice is a conflict', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['web-1']);
    const { id } = fleet.create({ requiredApprovals: 2 }, 'alice');

    expect(fleet.engine.approve(id, 'bob').state).toBe('awaiting_approval');
    const again = refusal(() => fleet.engine.approve(id, 'bob'));
    expect(again.code).toBe(ErrorCode.conflict);
    expect(fleet.state(id)).toBe('awaiting_approval');
    expect(fleet.engine.approve(id, 'carol').state).toBe('scheduled');
    expect(fleet.store.rollouts.approvals(id).map((a) => a.approver)).toEqual(['bob', 'carol']);
  });

  it('refuses to start before approval, naming the current state', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['web-1']);
    const { id } = fleet.create({ requiredApprovals: 1 }, 'alice');

    const err = refusal(() => fleet.engine.start(id, 'alice'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.details).toMatchObject({ rolloutId: id, state: 'awaiting_approval' });
    expect(fleet.state(id)).toBe('awaiting_approval');
    expect(fleet.sent).toEqual([]);
  });
});

// ---- illegal verbs -----------------------------------------------------------------------------

/** Drives a fresh rollout into `state` using only verbs and agent answers; returns its id. */
async function reach(fleet: Fleet, state: RolloutState): Promise<string> {
  await fleet.addHosts(['h-1', 'h-2']);
  const oneHost = { target: { hostIds: ['h-1'] } };
  switch (state) {
    case 'draft':
      return fleet.create({ draft: true }).id;
    case 'awaiting_approval':
      return fleet.create({ requiredApprovals: 1 }).id;
    case 'scheduled':
      return fleet.create().id;
    case 'running':
      return fleet.launch({ maxParallel: 1 });
    case 'paused': {
      const id = await fleet.launch({ maxParallel: 1 });
      fleet.engine.pause(id, 'alice');
      return id;
    }
    case 'aborted': {
      const { id } = fleet.create();
      fleet.engine.abort(id, 'alice', null);
      return id;
    }
    case 'halted': {
      const id = await fleet.launch(oneHost);
      await fleet.finish('h-1', 'failed');
      return id;
    }
    default: {
      const id = await fleet.launch(oneHost);
      await fleet.finish('h-1');
      if (state === 'succeeded') return id;
      fleet.engine.revert(id, 'alice');
      await settle();
      if (state === 'reverting') return id;
      await fleet.finishRevert('h-1', state === 'reverted' ? 'reverted' : 'revert_failed');
      return id;
    }
  }
}

function callVerb(fleet: Fleet, verb: Verb, id: string): void {
  switch (verb) {
    case 'submit':
      fleet.engine.submit(id, 'alice');
      return;
    case 'approve':
      fleet.engine.approve(id, 'bob');
      return;
    case 'start':
      fleet.engine.start(id, 'alice');
      return;
    case 'pause':
      fleet.engine.pause(id, 'alice');
      return;
    case 'resume':
      fleet.engine.resume(id, 'alice');
      return;
    case 'abort':
      fleet.engine.abort(id, 'alice', null);
      return;
    case 'retry':
      fleet.engine.retry(id, 'alice');
      return;
    case 'revert':
      fleet.engine.revert(id, 'alice');
      return;
  }
}

/** Every state: each one is reached by `reach()` below. */
const REACHABLE: readonly RolloutState[] = ROLLOUT_STATES;

const ILLEGAL = (Object.keys(VERB_TRANSITIONS) as Verb[]).flatMap((verb) =>
  REACHABLE.filter((state) => !(VERB_TRANSITIONS[verb].from as readonly RolloutState[]).includes(state)).map(
    (state) => ({ verb, state }),
  ),
);

describe('drafts', () => {
  it('a draft can be planned, then submitted for approval; it cannot be approved or started before', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const rollout = fleet.engine.create(
      RolloutRequestSchema.parse({ patchId: PATCH_ID, target: { all: true }, draft: true }),
      'alice',
    );
    expect(rollout.state).toBe('draft');
    expect(new RolloutView(fleet.store, () => true).plan(rollout.id).waveSizes).toEqual([1]);
    expect(() => fleet.engine.approve(rollout.id, 'bob')).toThrow(/cannot approve a rollout that is draft/);
    expect(() => fleet.engine.start(rollout.id, 'alice')).toThrow(/cannot start a rollout that is draft/);
    expect(fleet.engine.submit(rollout.id, 'alice').state).toBe('awaiting_approval');
    expect(fleet.engine.approve(rollout.id, 'bob').state).toBe('scheduled');
  });
});

describe('a verb from a state where it is illegal', () => {
  it('covers every verb with at least one illegal state', () => {
    expect(new Set(ILLEGAL.map((c) => c.verb))).toEqual(new Set(Object.keys(VERB_TRANSITIONS)));
  });

  it.each(ILLEGAL)(
    '$verb from $state is refused with illegal_transition and changes nothing',
    async ({ verb, state }) => {
      const fleet = new Fleet();
      const id = await reach(fleet, state);
      expect(fleet.state(id)).toBe(state);
      const before = fleet.dump();
      const events = fleet.events(id).length;
      const sent = fleet.sent.length;

      const err = refusal(() => callVerb(fleet, verb, id));
      await settle();

      expect(err.code).toBe(ErrorCode.illegalTransition);
      expect(err.details).toMatchObject({ rolloutId: id, state });
      expect(fleet.state(id)).toBe(state);
      expect(fleet.events(id)).toHaveLength(events);
      expect(fleet.dump()).toBe(before);
      expect(fleet.sent).toHaveLength(sent);
    },
  );

  it('promote outside a bake is refused too', async () => {
    const fleet = new Fleet();
    const id = await reach(fleet, 'running');
    const err = refusal(() => fleet.engine.promote(id, 'alice'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.details).toMatchObject({ state: 'running' });
  });
});

// ---- waves and concurrency ---------------------------------------------------------------------

describe('waves', () => {
  it('resolve as planned before anything runs (37 hosts, [1, "10%", "50%", "100%"] → [1, 3, 18, 15])', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(Array.from({ length: 37 }, (_, i) => `host-${String(i + 1).padStart(2, '0')}`));
    const { id } = fleet.create({ waves: [1, '10%', '50%', '100%'], maxFailures: 3 });
    const plan = new RolloutView(fleet.store, () => true).plan(id);
    expect(plan.frozen).toBe(false);
    expect(plan.waveSizes).toEqual([1, 3, 18, 15]);
    expect(plan.haltsOn).toBe('halts on the 4th failure');

    fleet.engine.start(id, 'alice');
    const frozen = new RolloutView(fleet.store, () => true).plan(id);
    expect(frozen.frozen).toBe(true);
    expect(frozen.waveSizes).toEqual([1, 3, 18, 15]);
    expect(frozen.waves.flatMap((w) => w.hosts)).toEqual(plan.waves.flatMap((w) => w.hosts));
  });

  it('run one after another: no host of the next wave gets an order before the current wave has passed', async () => {
    const fleet = new Fleet();
    const ids = hosts(5);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [1, 2, '100%'] });

    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await fleet.finish('host-1');
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    await fleet.finish('host-2');
    expect(fleet.appliedHosts()).toHaveLength(3);
    await fleet.finish('host-3');
    expect(fleet.appliedHosts()).toEqual(ids);
    await fleet.finishAll(ids);

    expect(fleet.state(id)).toBe('succeeded');
    const order = fleet
      .events(id)
      .filter((e) => e.type === 'host.dispatched' || e.type === 'wave.passed')
      .map((e) => (e.type === 'wave.passed' ? `passed:${e.data?.wave}` : `dispatch:${e.hostId}`));
    expect(order).toEqual([
      'dispatch:host-1',
      'passed:0',
      'dispatch:host-2',
      'dispatch:host-3',
      'passed:1',
      'dispatch:host-4',
      'dispatch:host-5',
      'passed:2',
    ]);
  });

  it('keep at most maxParallel hosts in flight, and a finished host frees its slot at once', async () => {
    const fleet = new Fleet();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 2 });

    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);
    await fleet.finish('host-2');
    // No tick, no clock: the freed slot is filled by the result itself.
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);

    while (fleet.state(id) === 'running') {
      const open = ids.find((h) => fleet.agent(h).openApply());
      if (!open) throw new Error('running with nothing in flight');
      await fleet.finish(open);
    }
    expect(fleet.state(id)).toBe('succeeded');
    expect(fleet.appliedHosts()).toEqual(ids);
    expect(fleet.maxAppliesInFlight).toBe(2);
  });
});

// ---- failure budget ----------------------------------------------------------------------------

describe('the failure budget', () => {
  it('as a count: halts when failures exceed it, not when they reach it', async () => {
    const fleet = new Fleet();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [4, '100%'], maxFailures: 1 });

    await fleet.finish('host-1', 'failed');
    expect(fleet.state(id)).toBe('running');
    await fleet.finish('host-2', 'failed');
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.rollout(id).stateReason).toBe('failure budget exceeded: 2 failed, 1 tolerated');
  });

  it('after a halt, in-flight hosts finish and are recorded, and nothing new is sent', async () => {
    const fleet = new Fleet();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [4, '100%'], maxFailures: 0 });
    await fleet.finish('host-1', 'failed');
    expect(fleet.state(id)).toBe('halted');
    const applies = fleet.sentOf('order.apply').length;

    await fleet.finish('host-2');
    await fleet.finish('host-3', 'failed');
    await fleet.advance(60 * SECOND);

    expect(fleet.hostStates(id)).toMatchObject({
      'host-1': 'failed',
      'host-2': 'healthy',
      'host-3': 'failed',
      'host-4': 'dispatched',
      'host-5': 'queued',
      'host-6': 'queued',
    });
    expect(fleet.run(id, 'host-2').changed).toBe(true);
    expect(fleet.sentOf('order.apply')).toHaveLength(applies);
    expect(fleet.state(id)).toBe('halted');
  });

  it('as a percent of the rollout: 25% of 8 hosts tolerates 2 and halts on the 3rd', async () => {
    const fleet = new Fleet();
    const ids = hosts(8);
    await fleet.addHosts(ids);
    const { id } = fleet.create({ waves: ['100%'], maxFailures: '25%' });
    expect(new RolloutView(fleet.store, () => true).plan(id).haltsOn).toBe('halts on the 3rd failure');
    fleet.engine.start(id, 'alice');
    await settle();

    await fleet.finish('host-1', 'failed');
    await fleet.finish('host-2', 'failed');
    expect(fleet.state(id)).toBe('running');
    await fleet.finish('host-3', 'failed');
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.rollout(id).stateReason).toBe('failure budget exceeded: 3 failed, 2 tolerated');
  });

  it('maxFailuresPerWave: each wave has its own limit, within the rollout budget', async () => {
    const fleet = new Fleet();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [3, '100%'], maxFailures: 10, maxFailuresPerWave: 1 });

    await fleet.finish('host-1', 'failed');
    await fleet.finishAll(['host-2', 'host-3']);
    expect(fleet.rollout(id).currentWave).toBe(1);
    expect(fleet.state(id)).toBe('running');

    await fleet.finish('host-4', 'failed');
    expect(fleet.state(id)).toBe('running');
    await fleet.finish('host-5', 'failed');
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.rollout(id).stateReason).toBe('wave 2 failure budget exceeded: 2 failed, 1 tolerated');
  });

  it('maxFailures 0 halts on the first failure', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], maxFailures: 0 });
    await fleet.finish('host-1', 'failed');
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.appliedHosts()).toEqual(['host-1']);
  });
});

// ---- bake --------------------------------------------------------------------------------------

describe('bake', () => {
  it('the next wave starts only after bakeSeconds', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60 });
    await fleet.finish('host-1');
    expect(fleet.rollout(id).bakeUntil).toBe(T0 + 60 * SECOND);
    expect(new RolloutView(fleet.store, () => true).status(id).waves[0]?.phase).toBe('baking');

    await fleet.advance(59 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await fleet.advance(1 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    expect(fleet.rollout(id).currentWave).toBe(1);
  });

  it("tells the wave's healthy hosts to keep watching their health for the whole bake", async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60 });
    await fleet.finish('host-1');
    const [watch] = fleet.sentOf('order.watch', 'host-1');
    expect(watch?.message).toEqual({
      type: 'order.watch',
      orderId: fleet.run(id, 'host-1').orderId,
      seconds: 60,
    });
    expect(fleet.sentOf('order.watch')).toHaveLength(1);
  });

  it('promote ends the bake early', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 3600 });
    await fleet.finish('host-1');

    fleet.engine.promote(id, 'bob');
    await settle();

    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    expect(fleet.events(id).find((e) => e.type === 'rollout.promoted')).toMatchObject({
      actor: 'bob',
      data: { wave: 0 },
    });
  });

  it('a failure reported during the bake counts against the budget and halts', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60, maxFailures: 0 });
    const orderId = await fleet.finish('host-1');
    expect(fleet.run(id, 'host-1').state).toBe('healthy');

    // The agent's bake watch saw health fail after it had reported healthy, and reverted itself.
    await fleet.reportAgain('host-1', orderId, 'failed', false);

    expect(fleet.run(id, 'host-1')).toMatchObject({ state: 'failed', countedFailure: true, changed: false });
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.events(id).find((e) => e.type === 'host.failed')?.data).toMatchObject({ during: 'bake' });
    await fleet.advance(120 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
  });
});

// ---- offline hosts and deadlines ---------------------------------------------------------------

describe('offline hosts', () => {
  it('policy skip: the host is skipped, not counted as a failure, and stays in the report', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    await fleet.addHosts(['host-3'], { online: false });
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, offline: { mode: 'skip' } });
    await fleet.finishAll(['host-1', 'host-2']);

    expect(fleet.state(id)).toBe('succeeded');
    expect(fleet.run(id, 'host-3')).toMatchObject({ state: 'skipped', countedFailure: false, errorCode: 'offline' });
    expect(fleet.sentOf('order.apply', 'host-3')).toEqual([]);
  });

  it('policy fail: the host fails and counts against the budget', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    await fleet.addHosts(['host-2'], { online: false });
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, offline: { mode: 'fail' } });

    expect(fleet.run(id, 'host-2')).toMatchObject({ state: 'failed', countedFailure: true, errorCode: 'offline' });
    expect(fleet.state(id)).toBe('halted');
  });

  it('policy wait: the order is kept and sent, with the same id, when the agent says hello', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1'], { online: false });
    const id = await fleet.launch({ waves: ['100%'], offline: { mode: 'wait', deliveryDeadlineSeconds: 300 } });
    const orderId = fleet.run(id, 'host-1').orderId;
    expect(orderId).not.toBeNull();
    expect(fleet.run(id, 'host-1').state).toBe('dispatched');
    expect(fleet.sentOf('order.apply').filter((s) => s.delivered)).toEqual([]);

    await fleet.advance(200 * SECOND);
    await fleet.connect('host-1');

    const delivered = fleet.sentOf('order.apply', 'host-1').filter((s) => s.delivered);
    expect(delivered.map((s) => s.message.orderId)).toEqual([orderId]);
    await fleet.finish('host-1');
    expect(fleet.state(id)).toBe('succeeded');
  });

  it('policy wait: a host not reached within deliveryDeadlineSeconds is timed_out', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    await fleet.addHosts(['host-3'], { online: false });
    const id = await fleet.launch({
      waves: ['100%'],
      maxFailures: 1,
      hostTimeoutSeconds: 3600,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 30 },
    });
    await fleet.finishAll(['host-1', 'host-2']);
    expect(fleet.state(id)).toBe('running');

    await fleet.advance(30 * SECOND);
    expect(fleet.run(id, 'host-3').state).toBe('dispatched');
    await fleet.advance(1 * SECOND);

    expect(fleet.run(id, 'host-3')).toMatchObject({ state: 'timed_out', countedFailure: true });
    expect(fleet.run(id, 'host-3').reason).toMatch(/not delivered within 30s/);
    expect(fleet.state(id)).toBe('succeeded');
  });

  it('hostTimeoutSeconds: a host with no result in time is timed_out and its order is cancelled', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 120, maxFailures: 0 });
    await fleet.progress('host-1', 'applying');
    const orderId = fleet.run(id, 'host-1').orderId;

    await fleet.advance(120 * SECOND);
    expect(fleet.run(id, 'host-1').state).toBe('applying');
    await fleet.advance(1 * SECOND);

    expect(fleet.run(id, 'host-1')).toMatchObject({ state: 'timed_out', errorCode: 'timed_out', countedFailure: true });
    expect(fleet.agent('host-1').cancels).toEqual([orderId]);
    expect(fleet.state(id)).toBe('halted');
  });
});

// ---- abort and retry ---------------------------------------------------------------------------

describe('abort', () => {
  it('is sticky: in-flight hosts get order.cancel, nothing new is sent, resume is refused', async () => {
    const fleet = new Fleet();
    const ids = hosts(4);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 2 });
    const inFlight = ['host-1', 'host-2'].map((h) => fleet.run(id, h).orderId);

    fleet.engine.abort(id, 'carol', 'wrong ticket');
    await settle();

    expect(fleet.state(id)).toBe('aborted');
    expect(fleet.rollout(id).stateReason).toBe('wrong ticket');
    expect([...fleet.agent('host-1').cancels, ...fleet.agent('host-2').cancels]).toEqual(inFlight);

    // host-1 had already finished when the cancel arrived; host-2 stopped.
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'cancelled');
    await fleet.advance(3600 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);
    expect(fleet.hostStates(id)).toEqual({
      'host-1': 'healthy',
      'host-2': 'cancelled',
      'host-3': 'queued',
      'host-4': 'queued',
    });

    const err = refusal(() => fleet.engine.resume(id, 'alice'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.details).toMatchObject({ state: 'aborted' });
    expect(fleet.state(id)).toBe('aborted');
  });

  it('retry requeues failed, timed_out, cancelled and skipped hosts with new order ids and runs again', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2', 'host-3', 'host-4']);
    await fleet.addHosts(['host-5'], { online: false });
    const id = await fleet.launch({
      waves: ['100%'],
      maxFailures: 10,
      hostTimeoutSeconds: 60,
      offline: { mode: 'skip', deliveryDeadlineSeconds: 300 },
    });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'failed');
    await fleet.progress('host-3', 'applying');
    fleet.engine.abort(id, 'alice', null);
    await fleet.finish('host-4', 'cancelled');
    await fleet.advance(61 * SECOND); // host-3 does not answer the cancel in time
    await fleet.finish('host-3', 'cancelled', false); // its late answer: the order is settled
    expect(fleet.hostStates(id)).toEqual({
      'host-1': 'healthy',
      'host-2': 'failed',
      'host-3': 'timed_out',
      'host-4': 'cancelled',
      'host-5': 'skipped',
    });
    const before = Object.fromEntries(
      ['host-1', 'host-2', 'host-3', 'host-4'].map((h) => [h, fleet.run(id, h).orderId]),
    );

    await fleet.connect('host-5');
    fleet.engine.retry(id, 'bob');
    await settle();

    expect(fleet.state(id)).toBe('running');
    expect(fleet.run(id, 'host-1').orderId).toBe(before['host-1']); // healthy: left alone
    for (const h of ['host-2', 'host-3', 'host-4']) {
      const again = fleet.run(id, h);
      expect(again.state).toBe('dispatched');
      expect(again.orderId).not.toBe(before[h]);
      expect(fleet.agent(h).applyIds()).toEqual([before[h], again.orderId]);
    }
    expect(fleet.run(id, 'host-5').state).toBe('dispatched');
    expect(fleet.events(id).find((e) => e.type === 'rollout.running' && e.actor === 'bob')?.data).toMatchObject({
      requeued: ['host-2', 'host-3', 'host-4', 'host-5'],
    });

    await fleet.finishAll(['host-2', 'host-3', 'host-4', 'host-5']);
    expect(fleet.state(id)).toBe('succeeded');
    expect(fleet.store.hostRuns.failures(id)).toBe(0);
  });

  it('retry leaves a timed_out host whose agent is offline as it is (still counted), says why, and records its late result', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1, hostTimeoutSeconds: 60 });
    await fleet.finish('host-1', 'failed');
    await fleet.progress('host-2', 'applying');
    const oldOrder = fleet.run(id, 'host-2').orderId;
    fleet.disconnect('host-2'); // partitioned while applying: it may yet carry the change
    await fleet.advance(61 * SECOND);
    expect(fleet.run(id, 'host-2').state).toBe('timed_out');
    expect(fleet.state(id)).toBe('halted');

    fleet.engine.retry(id, 'bob');
    await settle();

    expect(fleet.run(id, 'host-1').state).toBe('dispatched');
    expect(fleet.run(id, 'host-2')).toMatchObject({ state: 'timed_out', orderId: oldOrder, countedFailure: true });
    expect(fleet.store.hostRuns.failures(id)).toBe(1);
    expect(fleet.events(id).find((e) => e.type === 'rollout.running' && e.actor === 'bob')?.data).toEqual({
      requeued: ['host-1'],
      notRequeued: [{ hostId: 'host-2', reason: expect.stringMatching(/has not answered/) }],
    });

    // Its old order did apply; the result arrives with its hello and is recorded, not dropped.
    await fleet.finish('host-2', 'healthy', true);
    await fleet.connect('host-2');
    expect(fleet.run(id, 'host-2')).toMatchObject({ state: 'timed_out', orderId: oldOrder, changed: true });
    expect(fleet.events(id).filter((e) => e.type === 'host.late_result' && e.hostId === 'host-2')).toHaveLength(1);
  });

  it('retry requeues a timed_out host once its earlier order has answered (here: the cancel its hello brought)', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, hostTimeoutSeconds: 60 });
    fleet.disconnect('host-1');
    await fleet.advance(61 * SECOND);
    expect(fleet.state(id)).toBe('halted');
    await fleet.connect('host-1'); // its hello lists the order unfinished: it is told to cancel it

    fleet.engine.retry(id, 'bob');
    await settle();
    expect(fleet.run(id, 'host-1').state).toBe('timed_out'); // not yet: the order has not answered

    await fleet.finish('host-1', 'cancelled', false);
    fleet.engine.retry(id, 'bob');
    await settle();
    expect(fleet.run(id, 'host-1').state).toBe('dispatched');
    await fleet.finish('host-1');
    expect(fleet.state(id)).toBe('succeeded');
  });

  it('a host that stays online but times out is not re-ordered before its first order answers, so a revert still finds its change', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, hostTimeoutSeconds: 60 });
    await fleet.progress('host-1', 'verifying');
    await fleet.advance(61 * SECOND);
    expect(fleet.state(id)).toBe('halted');
    fleet.engine.retry(id, 'bob');
    await settle();
    expect(fleet.run(id, 'host-1').state).toBe('timed_out');

    await fleet.finish('host-1', 'healthy', true); // it had finished just before the cancel landed
    expect(fleet.run(id, 'host-1')).toMatchObject({ state: 'timed_out', changed: true });
    fleet.engine.abort(id, 'alice', null);
    fleet.engine.revert(id, 'alice');
    await settle();
    expect(fleet.sentOf('order.revert', 'host-1')).toHaveLength(1);
  });

  it('retry requeues a timed_out host whose order never reached it (its hello does not list the order)', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1'], { online: false });
    const id = await fleet.launch({
      waves: ['100%'],
      maxFailures: 0,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 60 },
    });
    await fleet.advance(61 * SECOND);
    expect(fleet.run(id, 'host-1').state).toBe('timed_out');
    expect(fleet.state(id)).toBe('halted');
    await fleet.connect('host-1');
    fleet.engine.retry(id, 'bob');
    await settle();
    expect(fleet.run(id, 'host-1').state).toBe('dispatched');
    await fleet.finish('host-1');
    expect(fleet.state(id)).toBe('succeeded');
  });

  it('retry is refused while a host of the rollout is reverting, and allowed once the revert is in', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, autoRevert: 'wave' });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'failed');
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.run(id, 'host-1').state).toBe('reverting');
    const before = fleet.dump();

    const err = refusal(() => fleet.engine.retry(id, 'bob'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.message).toMatch(/while 1 host\(s\) of this rollout are reverting/);
    expect(fleet.dump()).toBe(before);

    await fleet.finishRevert('host-1');
    await fleet.finish('host-3');
    await fleet.finishRevert('host-3');
    fleet.engine.retry(id, 'bob');
    await settle();
    expect(fleet.state(id)).toBe('running');
  });

  it('abort is sticky across a disconnect: an order the agent still works on is cancelled when it says hello', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'snapshotted');
    const orderId = fleet.run(id, 'host-1').orderId as string;
    fleet.disconnect('host-1');

    fleet.engine.abort(id, 'carol', null);
    await settle();
    expect(fleet.agent('host-1').cancels).toEqual([]); // the cancel went nowhere

    await fleet.connect('host-1');
    expect(fleet.agent('host-1').cancels).toEqual([orderId]);
  });

  it('abort is sticky across a coordinator crash too, and a timed-out order is cancelled again on hello', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 2, maxFailures: 10, hostTimeoutSeconds: 60 });
    await fleet.progress('host-1', 'applying');
    fleet.disconnect('host-1');
    await fleet.advance(30 * SECOND);
    await fleet.finish('host-2'); // frees its slot: host-3 gets its order 30 s after host-1
    await fleet.advance(31 * SECOND); // host-1 times out; the cancel sent then goes nowhere
    expect(fleet.run(id, 'host-1').state).toBe('timed_out');
    await fleet.progress('host-3', 'applying');
    const orders = ['host-1', 'host-3'].map((h) => fleet.run(id, h).orderId);
    fleet.lostOnTheWire.add('host-3');
    fleet.engine.abort(id, 'carol', null); // host-3's cancel is lost as the coordinator dies
    fleet.restart();
    fleet.lostOnTheWire.clear();

    await fleet.connect('host-1');
    await fleet.connect('host-3');
    expect(fleet.agent('host-1').cancels).toEqual([orders[0]]);
    expect(fleet.agent('host-3').cancels).toEqual([orders[1]]);
  });

  it('a halted rollout lets its in-flight hosts finish: no cancel when one says hello', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0 });
    await fleet.progress('host-2', 'applying');
    fleet.disconnect('host-2');
    await fleet.finish('host-1', 'failed');
    expect(fleet.state(id)).toBe('halted');

    await fleet.connect('host-2');
    expect(fleet.agent('host-2').cancels).toEqual([]);
    await fleet.finish('host-2');
    expect(fleet.run(id, 'host-2').state).toBe('healthy');
  });
});

// ---- revert ------------------------------------------------------------------------------------

describe('revert', () => {
  it('of a whole rollout sends order.revert to every changed host, at most revertParallel at once, and ends reverted', async () => {
    const fleet = new Fleet();
    const ids = hosts(5);
    await fleet.addHosts(ids);
    await fleet.addHosts(['host-6'], { online: false });
    const id = await fleet.launch({
      waves: [1, '100%'],
      maxFailures: 2,
      revertParallel: 2,
      offline: { mode: 'skip', deliveryDeadlineSeconds: 300 },
    });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'failed'); // restored its own snapshot: nothing to revert
    await fleet.finishAll(ids);
    expect(fleet.state(id)).toBe('succeeded');

    fleet.engine.revert(id, 'alice');
    await settle();
    expect(fleet.state(id)).toBe('reverting');
    expect(fleet.sentOf('order.revert')).toHaveLength(2);

    while (fleet.state(id) === 'reverting') {
      const next = ids.find((h) => fleet.agent(h).openReverts().length > 0);
      if (!next) throw new Error('reverting with no revert in flight');
      await fleet.finishRevert(next);
    }

    expect(fleet.state(id)).toBe('reverted');
    expect(fleet.maxRevertsInFlight).toBe(2);
    const reverts = fleet.sentOf('order.revert');
    expect(reverts.map((s) => s.agentId).sort()).toEqual(['host-1', 'host-3', 'host-4', 'host-5']);
    for (const { agentId, message } of reverts) expect(message.revertsOrderId).toBe(fleet.run(id, agentId).orderId);
    expect(fleet.hostStates(id)).toMatchObject({ 'host-2': 'failed', 'host-6': 'skipped' });
  });

  it('ends revert_failed when a host fails to revert, and never retries it by itself', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finishAll(['host-1', 'host-2']);
    fleet.engine.revert(id, 'alice');
    await settle();

    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-2', 'revert_failed');
    expect(fleet.state(id)).toBe('revert_failed');
    expect(fleet.run(id, 'host-2')).toMatchObject({ state: 'revert_failed', changed: true });

    await fleet.advance(3600 * SECOND);
    await fleet.connect('host-2');
    expect(fleet.sentOf('order.revert', 'host-2')).toHaveLength(1);
    expect(fleet.state(id)).toBe('revert_failed');
  });

  it('a host that never answers its revert order is revert_failed after hostTimeoutSeconds; a late success still counts', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 60 });
    await fleet.finishAll(['host-1']);
    fleet.engine.revert(id, 'alice');
    await settle();
    expect(fleet.run(id, 'host-1').state).toBe('reverting');

    await fleet.advance(61 * SECOND);
    expect(fleet.run(id, 'host-1')).toMatchObject({ state: 'revert_failed', errorCode: 'revert_failed' });
    expect(fleet.state(id)).toBe('revert_failed');

    await fleet.finishRevert('host-1');
    expect(fleet.run(id, 'host-1')).toMatchObject({ state: 'reverted', changed: false });
    expect(fleet.state(id)).toBe('reverted');
  });

  it('an explicit revert of a revert_failed rollout tries the failed host again', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    fleet.engine.revert(id, 'alice');
    await settle();
    await fleet.finishRevert('host-1', 'revert_failed');
    expect(fleet.state(id)).toBe('revert_failed');

    fleet.engine.revert(id, 'alice');
    await settle();
    expect(fleet.state(id)).toBe('reverting');
    expect(fleet.sentOf('order.revert', 'host-1')).toHaveLength(2);
    await fleet.finishRevert('host-1');
    expect(fleet.state(id)).toBe('reverted');
  });

  it('of a whole rollout also tries a host whose own self-revert failed', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1 });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'revert_failed'); // health failed and its snapshot did not restore
    expect(fleet.state(id)).toBe('succeeded');
    expect(fleet.run(id, 'host-2')).toMatchObject({ state: 'revert_failed', changed: true });

    fleet.engine.revert(id, 'alice');
    await settle();
    expect(
      fleet
        .sentOf('order.revert')
        .map((s) => s.agentId)
        .sort(),
    ).toEqual(['host-1', 'host-2']);
    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-2');
    expect(fleet.state(id)).toBe('reverted');
  });

  it('of one host reverts only that host and leaves the rollout as it was', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2', 'host-3']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finishAll(['host-1', 'host-2', 'host-3']);

    fleet.engine.revertHost(id, 'host-2', 'bob');
    await settle();

    const reverts = fleet.sentOf('order.revert');
    expect(reverts.map((s) => [s.agentId, s.message.revertsOrderId])).toEqual([
      ['host-2', fleet.run(id, 'host-2').orderId],
    ]);
    await fleet.finishRevert('host-2');
    expect(fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'reverted', 'host-3': 'healthy' });
    expect(fleet.run(id, 'host-2').changed).toBe(false);
    expect(fleet.state(id)).toBe('succeeded');
    expect(fleet.events(id).find((e) => e.type === 'host.revert_requested')).toMatchObject({
      actor: 'bob',
      hostId: 'host-2',
    });
  });

  it('of one host holds its wave open: the rollout succeeds only once that revert is in', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    fleet.engine.revertHost(id, 'host-1', 'bob');
    await settle();

    await fleet.finish('host-2');
    await fleet.advance(10 * SECOND);
    expect(fleet.run(id, 'host-1').state).toBe('reverting');
    expect(fleet.state(id)).toBe('running');
    expect(fleet.events(id).some((e) => e.type === 'wave.passed')).toBe(false);

    await fleet.finishRevert('host-1');
    expect(fleet.state(id)).toBe('succeeded');
    expect(fleet.hostStates(id)).toEqual({ 'host-1': 'reverted', 'host-2': 'healthy' });
  });

  it('never sends a revert order whose transaction rolled back', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    const runner = new RevertRunner({
      store: fleet.store,
      channel: {
        send: (agentId, message) => void fleet.sent.push({ agentId, message, delivered: false }) || true,
        isOnline: () => true,
      },
      clock: { now: () => fleet.now },
      windows: undefined,
      isStopped: () => false,
    });

    expect(() =>
      fleet.store.transaction(() => {
        runner.dispatch(fleet.run(id, 'host-1'));
        throw new Error('SQLITE_FULL: database or disk is full');
      }),
    ).toThrow(/disk is full/);
    await settle();
    expect(fleet.sentOf('order.revert')).toEqual([]);
    expect(fleet.run(id, 'host-1')).toMatchObject({ state: 'healthy', revertOrderId: null });

    fleet.store.transaction(() => runner.dispatch(fleet.run(id, 'host-1')));
    expect(fleet.sentOf('order.revert').map((s) => s.message.revertsOrderId)).toEqual([
      fleet.run(id, 'host-1').orderId,
    ]);
  });

  it('of one host is refused when the host carries no change', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1 });
    await fleet.finish('host-1', 'failed');
    expect(refusal(() => fleet.engine.revertHost(id, 'host-1', 'bob')).code).toBe(ErrorCode.illegalTransition);
    expect(refusal(() => fleet.engine.revertHost(id, 'host-9', 'bob')).code).toBe(ErrorCode.notFound);
  });
});

// ---- autoRevert scopes -------------------------------------------------------------------------

describe('autoRevert on halt', () => {
  async function haltInSecondWave(scope: 'none' | 'host' | 'wave' | 'rollout'): Promise<{ fleet: Fleet; id: string }> {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(5));
    const id = await fleet.launch({ waves: [2, '100%'], maxFailures: 0, autoRevert: scope });
    await fleet.finishAll(['host-1', 'host-2']);
    await fleet.finish('host-3');
    await fleet.finish('host-4');
    await fleet.finish('host-5', 'failed');
    return { fleet, id };
  }

  it('wave: reverts the healthy hosts of the halted wave, and only those', async () => {
    const { fleet, id } = await haltInSecondWave('wave');
    expect(fleet.state(id)).toBe('halted');
    expect(
      fleet
        .sentOf('order.revert')
        .map((s) => s.agentId)
        .sort(),
    ).toEqual(['host-3', 'host-4']);
    await fleet.finishRevert('host-3');
    await fleet.finishRevert('host-4');
    expect(fleet.hostStates(id)).toEqual({
      'host-1': 'healthy',
      'host-2': 'healthy',
      'host-3': 'reverted',
      'host-4': 'reverted',
      'host-5': 'failed',
    });
    expect(fleet.state(id)).toBe('halted');
  });

  it('wave: a host of the halted wave that finishes healthy after the halt is reverted too', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, autoRevert: 'wave' });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'failed');
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.sentOf('order.revert').map((s) => s.agentId)).toEqual(['host-1']);

    await fleet.finish('host-3'); // was in flight at the halt

    expect(fleet.sentOf('order.revert').map((s) => s.agentId)).toEqual(['host-1', 'host-3']);
    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-3');
    expect(fleet.store.hostRuns.forRollout(id).filter((r) => r.changed)).toEqual([]);
  });

  it('rollout: moves to reverting and reverts every changed host of every wave', async () => {
    const { fleet, id } = await haltInSecondWave('rollout');
    expect(fleet.state(id)).toBe('reverting');
    expect(
      fleet
        .sentOf('order.revert')
        .map((s) => s.agentId)
        .sort(),
    ).toEqual(['host-1', 'host-2', 'host-3', 'host-4']);
    for (const h of ['host-1', 'host-2', 'host-3', 'host-4']) await fleet.finishRevert(h);

    expect(fleet.state(id)).toBe('reverted');
    expect(
      fleet
        .events(id)
        .filter((e) => e.type.startsWith('rollout.') && e.toState !== null)
        .map((e) => `${e.fromState ?? ''}→${e.toState}`),
    ).toEqual(['→scheduled', 'scheduled→running', 'running→halted', 'halted→reverting', 'reverting→reverted']);
  });

  it('rollout: the halt and the move to reverting are one commit, so a crash right after the halt still reverts', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, autoRevert: 'rollout' });
    await fleet.finish('host-1');
    // The coordinator dies as soon as the halt is on disk.
    fleet.store.onEvent((event) => {
      if (event.type === 'rollout.halted') fleet.restart();
    });
    await fleet.finish('host-2', 'failed');

    expect(fleet.state(id)).toBe('reverting');
    for (const h of hosts(3)) await fleet.connect(h);
    await fleet.advance(SECOND);
    expect(fleet.sentOf('order.revert').map((s) => s.agentId)).toEqual(['host-1']);
    expect(fleet.agent('host-3').cancels).toEqual([fleet.run(id, 'host-3').orderId]); // in flight at the halt
    await fleet.finishRevert('host-1');
    await fleet.finish('host-3', 'cancelled');
    expect(fleet.state(id)).toBe('reverted');
  });

  it.each(['host', 'none'] as const)('%s: reverts nothing more', async (scope) => {
    const { fleet, id } = await haltInSecondWave(scope);
    await fleet.advance(3600 * SECOND);
    expect(fleet.state(id)).toBe('halted');
    expect(fleet.sentOf('order.revert')).toEqual([]);
    expect(fleet.sentOf('order.apply').every((s) => s.message.revertOnHealthFailure === (scope === 'host'))).toBe(true);
  });
});

// ---- targets -----------------------------------------------------------------------------------

describe('targets', () => {
  async function mixedFleet(): Promise<Fleet> {
    const fleet = new Fleet();
    await fleet.addHosts(['web-1', 'web-2'], { labels: { role: 'web', env: 'prod' } });
    await fleet.addHosts(['web-3'], { labels: { role: 'web', env: 'prod', tier: 'legacy' } });
    await fleet.addHosts(['web-4'], { labels: { role: 'web', env: 'staging' }, facts: { distro: 'ubuntu' } });
    await fleet.addHosts(['db-1'], { labels: { role: 'db', env: 'prod' }, facts: { distro: 'ubuntu' } });
    await fleet.addHosts(['new-1'], { labels: { role: 'web', env: 'prod' }, online: false }); // never said hello: no facts
    return fleet;
  }
  const planned = (fleet: Fleet, id: string) =>
    new RolloutView(fleet.store, () => true)
      .plan(id)
      .waves.flatMap((w) => w.hosts)
      .sort();

  it('labels are all-of, excludeLabels any-of', async () => {
    const fleet = await mixedFleet();
    const { id } = fleet.create({
      target: { labels: { role: 'web', env: 'prod' }, excludeLabels: { tier: 'legacy' } },
    });
    expect(planned(fleet, id)).toEqual(['new-1', 'web-1', 'web-2']);
    const { id: both } = fleet.create({
      target: { labels: { role: 'web' }, excludeLabels: { tier: 'legacy', env: 'staging' } },
    });
    expect(planned(fleet, both)).toEqual(['new-1', 'web-1', 'web-2']);
  });

  it('facts select only hosts that reported matching facts', async () => {
    const fleet = await mixedFleet();
    const { id } = fleet.create({ target: { facts: { distro: 'ubuntu' } } });
    expect(planned(fleet, id)).toEqual(['db-1', 'web-4']);
    const { id: debian } = fleet.create({ target: { facts: { distro: 'debian' }, labels: { env: 'prod' } } });
    expect(planned(fleet, debian)).toEqual(['web-1', 'web-2', 'web-3']);
  });

  it('are frozen at start: an agent registered afterwards is not added', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['web-1', 'web-2'], { labels: { role: 'web' } });
    const id = await fleet.launch({ target: { labels: { role: 'web' } }, waves: [1, '100%'] });
    await fleet.addHosts(['web-3'], { labels: { role: 'web' } });

    await fleet.finishAll(['web-1']);
    await fleet.finishAll(['web-2']);

    expect(fleet.state(id)).toBe('succeeded');
    expect(Object.keys(fleet.hostStates(id))).toEqual(['web-1', 'web-2']);
    expect(fleet.rollout(id).hostCount).toBe(2);
    expect(fleet.sentOf('order.apply', 'web-3')).toEqual([]);
  });

  it('unknown host ids are refused at create, and nothing is written', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['web-1']);
    const before = fleet.dump();
    const err = refusal(() => fleet.create({ target: { hostIds: ['web-1', 'web-9', 'wbe-1'] } }));
    expect(err.code).toBe(ErrorCode.validationFailed);
    expect(err.details).toMatchObject({ unknown: ['web-9', 'wbe-1'] });
    expect(fleet.dump()).toBe(before);
  });
});

// ---- maintenance windows -----------------------------------------------------------------------

describe('maintenance window', () => {
  /** 02:00–03:00 UTC daily; no wave starts after 02:45. */
  const WINDOW: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 15 };
  const OPENS = Date.parse('2030-01-08T02:00:00Z');
  const CUTOFF = Date.parse('2030-01-08T02:45:00Z');
  const NEXT_OPENS = Date.parse('2030-01-09T02:00:00Z');

  async function windowed(input: Partial<RolloutRequestInput> = {}): Promise<{ fleet: Fleet; id: string }> {
    const fleet = new Fleet({ waveGate: canStartWave });
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], window: WINDOW, ...input });
    return { fleet, id };
  }

  it('started outside the window: paused as "maintenance window closed", nothing sent', async () => {
    const { fleet, id } = await windowed();
    expect(fleet.state(id)).toBe('paused');
    expect(fleet.rollout(id).stateReason).toBe('maintenance window closed');
    expect(fleet.sentOf('order.apply')).toEqual([]);
    expect(fleet.events(id).at(-1)).toMatchObject({ type: 'rollout.paused', actor: 'system', fromState: 'running' });
  });

  it('is watched from creation, so node-cron can wake the engine when it opens', async () => {
    const fleet = new Fleet({ waveGate: canStartWave });
    await fleet.addHosts(hosts(1));
    const { id } = fleet.create({ window: WINDOW, requiredApprovals: 1 });
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);
  });

  it('once the clock is inside the window, a tick resumes it and it dispatches', async () => {
    const { fleet, id } = await windowed();
    fleet.now = OPENS;
    fleet.engine.tick();
    await settle();
    expect(fleet.state(id)).toBe('running');
    expect(fleet.appliedHosts()).toEqual(hosts(3));
    expect(fleet.events(id).find((e) => e.type === 'rollout.running' && e.actor === 'system')).toMatchObject({
      fromState: 'paused',
      data: { reason: 'maintenance window open' },
    });
  });

  it('at the cutoff: in-flight hosts finish, then it pauses; the next window resumes it by itself', async () => {
    const { fleet, id } = await windowed({ maxParallel: 2 });
    fleet.now = OPENS;
    fleet.engine.wake(id);
    await settle();
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);

    fleet.now = CUTOFF;
    await fleet.finish('host-1');
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);
    expect(fleet.state(id)).toBe('running');
    await fleet.finish('host-2');
    expect(fleet.state(id)).toBe('paused');
    expect(fleet.rollout(id).stateReason).toBe('maintenance window closed');
    expect(fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'healthy', 'host-3': 'queued' });

    await fleet.advance(NEXT_OPENS - 1 - fleet.now);
    expect(fleet.state(id)).toBe('paused');
    await fleet.advance(1);
    expect(fleet.state(id)).toBe('running');
    expect(fleet.appliedHosts()).toEqual(hosts(3));
    await fleet.finish('host-3');
    expect(fleet.state(id)).toBe('succeeded');
  });

  it('a pause by a person is not undone when a window opens', async () => {
    const { fleet, id } = await windowed();
    fleet.now = OPENS;
    fleet.engine.tick();
    await settle();
    await fleet.finishAll(['host-1']);
    fleet.engine.pause(id, 'alice');
    await fleet.advance(24 * 3600 * SECOND);
    expect(fleet.state(id)).toBe('paused');
    expect(fleet.rollout(id).stateReason).toBe('paused by operator');
  });

  it('survives a restart: the watch is re-armed and the rollout resumes in its window', async () => {
    const { fleet, id } = await windowed();
    expect(fleet.state(id)).toBe('paused');
    fleet.restart();
    for (const h of hosts(3)) await fleet.connect(h);

    fleet.engine.resumeWindows();
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);
    fleet.now = OPENS;
    fleet.engine.wake(id); // what node-cron does when the window opens
    await settle();

    expect(fleet.state(id)).toBe('running');
    expect(fleet.appliedHosts()).toEqual(hosts(3));
  });
});

// ---- start times -------------------------------------------------------------------------------

describe('startAt', () => {
  it('an approved rollout waits in scheduled until startAt, then the ticker starts it as system', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(2));
    const startAt = T0 + 3600 * SECOND;
    const { id } = fleet.create({ waves: ['100%'], requiredApprovals: 1, startAt: new Date(startAt).toISOString() });
    fleet.engine.approve(id, 'bob');

    await fleet.advance(3599 * SECOND);
    expect(fleet.state(id)).toBe('scheduled');
    expect(fleet.sent).toEqual([]);

    await fleet.advance(1 * SECOND);
    expect(fleet.state(id)).toBe('running');
    expect(fleet.events(id).find((e) => e.type === 'rollout.running')).toMatchObject({
      actor: 'system',
      fromState: 'scheduled',
    });
    expect(fleet.appliedHosts()).toEqual(hosts(2));
  });
});

// ---- crash safety ------------------------------------------------------------------------------

describe('crash safety', () => {
  it('an order committed but never delivered is sent on hello with the same id', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1']);
    // The process dies between committing the order and the frame reaching host-1.
    fleet.lostOnTheWire.add('host-1');
    const id = await fleet.launch({ waves: ['100%'] });
    const orderId = fleet.run(id, 'host-1').orderId;
    expect(orderId).not.toBeNull();
    expect(fleet.agent('host-1').journal.size).toBe(0);

    fleet.restart();
    fleet.lostOnTheWire.clear();
    await fleet.connect('host-1');

    expect(fleet.agent('host-1').applyIds()).toEqual([orderId]);
    await fleet.finish('host-1');
    expect(fleet.state(id)).toBe('succeeded');
  });

  it('an order the agent already journals is not sent again; its result from hello is recorded once', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'] });
    fleet.restart();
    // While the coordinator is down, host-1 finishes and host-2 keeps applying; they report on reconnect.
    await fleet.finish('host-1');
    await fleet.progress('host-2', 'applying');
    const applies = fleet.sentOf('order.apply').length;

    await fleet.connect('host-1');
    await fleet.connect('host-2');
    // The ack was lost on the way: host-1 reports the same result in its next hello.
    fleet.agent('host-1').forgetAcks();
    await fleet.connect('host-1');

    expect(fleet.sentOf('order.apply')).toHaveLength(applies);
    expect(fleet.run(id, 'host-1').state).toBe('healthy');
    expect(fleet.events(id).filter((e) => e.type === 'host.healthy' && e.hostId === 'host-1')).toHaveLength(1);
    expect(fleet.sentOf('order.ack', 'host-1').length).toBeGreaterThan(0);
    await fleet.finish('host-2');
    expect(fleet.state(id)).toBe('succeeded');
  });

  it('a result for an unknown order that says the host changed is acked, and logged as an error', async () => {
    const { log: captured, lines } = capturingLog();
    const fleet = new Fleet({ log: captured });
    await fleet.addHosts(['host-1']);
    const finishedAt = new Date(fleet.now).toISOString();
    fleet.engine.onOrderResult('host-1', { orderId: 'ord_ghost1', outcome: 'healthy', changed: true, finishedAt });
    fleet.engine.onOrderResult('host-1', { orderId: 'ord_ghost2', outcome: 'failed', changed: false, finishedAt });
    await settle();

    expect(fleet.sentOf('order.ack', 'host-1').map((s) => s.message.orderId)).toEqual(['ord_ghost1', 'ord_ghost2']);
    const errors = lines.filter((l) => l.level >= 50);
    expect(errors).toEqual([
      expect.objectContaining({
        orderId: 'ord_ghost1',
        msg: expect.stringContaining('host reports a change the coordinator has no record of'),
      }),
    ]);
  });

  it('a batch of reports that fails to commit (SQLITE_BUSY) is logged and recorded again, not lost nor fatal', async () => {
    const { log: captured, lines } = capturingLog();
    const fleet = new Fleet({ log: captured });
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    // Another writer holds the database; the engine gives up at once instead of waiting.
    fleet.store.db.pragma('busy_timeout = 0');
    const other = new Database(fleet.file);
    other.exec('BEGIN IMMEDIATE');
    try {
      await fleet.finish('host-1');
      expect(lines.some((l) => l.level >= 50 && /recording agent reports failed/.test(l.msg))).toBe(true);
      expect(fleet.run(id, 'host-1').state).toBe('dispatched');
      expect(fleet.sentOf('order.ack')).toEqual([]); // nothing acked: the agent keeps the result
    } finally {
      other.exec('COMMIT');
      other.close();
    }

    await vi.waitFor(() => expect(fleet.state(id)).toBe('succeeded'), { timeout: 5000, interval: 50 });
    expect(fleet.run(id, 'host-1').state).toBe('healthy');
    expect(fleet.events(id).filter((e) => e.type === 'host.healthy')).toHaveLength(1);
    expect(fleet.sentOf('order.ack', 'host-1')).toHaveLength(1);
  });

  it('the next wave never starts early: a restart during the bake waits the bake out', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 600 });
    await fleet.finish('host-1');
    await fleet.advance(300 * SECOND);
    fleet.restart();
    for (const h of hosts(3)) await fleet.connect(h);

    await fleet.advance(299 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await fleet.advance(1 * SECOND);
    expect(fleet.appliedHosts()).toEqual(hosts(3));
    await fleet.finishAll(hosts(3));
    await fleet.advance(600 * SECOND); // the last wave bakes too
    expect(fleet.state(id)).toBe('succeeded');
  });

  /** One rollout, step by step; the coordinator is restarted after step `k` and must carry on. */
  const STEPS: { name: string; run: (fleet: Fleet, id: () => string) => Promise<void> }[] = [
    {
      name: 'start',
      run: async (fleet) => {
        await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60, maxFailures: 0 });
      },
    },
    { name: 'canary applying', run: (fleet) => fleet.progress('host-1', 'applying') },
    { name: 'canary healthy', run: async (fleet) => void (await fleet.finish('host-1')) },
    { name: 'bake over', run: (fleet) => fleet.advance(61 * SECOND) },
    { name: 'host-2 healthy', run: async (fleet) => void (await fleet.finish('host-2')) },
    { name: 'host-3 healthy', run: async (fleet) => void (await fleet.finish('host-3')) },
    { name: 'last bake over', run: (fleet) => fleet.advance(61 * SECOND) },
  ];

  it.each(STEPS.map((step, k) => ({ k, after: step.name })))(
    'a restart after "$after" neither repeats nor loses anything',
    async ({ k }) => {
      const fleet = new Fleet();
      const ids = hosts(3);
      await fleet.addHosts(ids);
      let rolloutId = '';
      const id = () => rolloutId;
      for (const [i, step] of STEPS.entries()) {
        await step.run(fleet, id);
        rolloutId ||= fleet.store.rollouts.list(1)[0]?.id ?? '';
        if (i === k) {
          fleet.restart();
          for (const h of ids) await fleet.connect(h);
        }
      }

      expect(fleet.state(rolloutId)).toBe('succeeded');
      for (const h of ids) {
        expect(fleet.agent(h).applyIds(), `${h} got one apply order id`).toHaveLength(1);
        expect(fleet.agent(h).redeliveries, `${h} was re-sent an order it already had`).toBe(0);
        expect(fleet.events(rolloutId).filter((e) => e.type === 'host.healthy' && e.hostId === h)).toHaveLength(1);
      }
      const dispatchOrder = fleet
        .events(rolloutId)
        .filter((e) => e.type === 'host.dispatched' || e.type === 'wave.passed')
        .map((e) => e.type);
      expect(dispatchOrder).toEqual([
        'host.dispatched',
        'wave.passed',
        'host.dispatched',
        'host.dispatched',
        'wave.passed',
      ]);
    },
  );
});

// ---- audit -------------------------------------------------------------------------------------

describe('audit', () => {
  it('every verb appends an event with the actor and the from/to states, in seq order', async () => {
    const fleet = new Fleet();
    await fleet.addHosts(hosts(2));
    const { id } = fleet.create({ waves: [1, '100%'], requiredApprovals: 1, maxFailures: 0 }, 'alice');
    fleet.engine.approve(id, 'bob');
    fleet.engine.start(id, 'alice');
    await settle();
    fleet.engine.pause(id, 'carol');
    fleet.engine.resume(id, 'dave');
    await settle();
    await fleet.finish('host-1', 'failed');
    fleet.engine.retry(id, 'erin');
    await settle();
    await fleet.finish('host-1');
    await fleet.finish('host-2');
    fleet.engine.revert(id, 'frank');
    await settle();
    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-2');

    const events = fleet.events(id);
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);

    const rolloutEvents = events
      .filter((e) => e.type.startsWith('rollout.'))
      .map((e) => [e.type, e.actor, e.fromState, e.toState]);
    expect(rolloutEvents).toEqual([
      ['rollout.created', 'alice', null, 'awaiting_approval'],
      ['rollout.approved', 'bob', null, null],
      ['rollout.scheduled', 'bob', 'awaiting_approval', 'scheduled'],
      ['rollout.running', 'alice', 'scheduled', 'running'],
      ['rollout.paused', 'carol', 'running', 'paused'],
      ['rollout.running', 'dave', 'paused', 'running'],
      ['rollout.halted', 'system', 'running', 'halted'],
      ['rollout.running', 'erin', 'halted', 'running'],
      ['rollout.succeeded', 'system', 'running', 'succeeded'],
      ['rollout.reverting', 'frank', 'succeeded', 'reverting'],
      ['rollout.reverted', 'system', 'reverting', 'reverted'],
    ]);
    // What agents report is recorded under the agent's name.
    for (const e of events.filter((e) => e.type === 'host.healthy' || e.type === 'host.reverted')) {
      expect(e.actor).toBe(e.hostId);
    }
  });
});
