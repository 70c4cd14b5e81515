/**
 * A coordinator group in one process, for the review's race tests: each member is what a coordinator
 * process holds of a group — its own Store on the shared PostgreSQL database, a real CoordinatorGroup
 * (leases, step lock, outbox, presence, notifications), a real RolloutEngine wired as app.ts wires it —
 * with a fake hub in place of the WebSocket hub, and scripted agents that journal what they receive
 * and answer when the test says so. Timing is the real one (the group's heartbeats and NOTIFY), so a
 * test waits for conditions rather than for the engine to be idle.
 */
import {
  type CoordinatorMessage,
  type Hello,
  type OrderOutcome,
  type OrderResultBody,
  PROTOCOL_VERSION,
  storedPatch,
  systemClock,
} from '@fleetpatch/shared';
import { pino } from 'pino';
import { RolloutEngine } from '../../src/engine/rollout-engine.js';
import { CoordinatorGroup } from '../../src/group/coordinator-group.js';
import type { AgentHub } from '../../src/hub/agent-hub.js';
import { Store } from '../../src/store/store.js';
import { SAMPLE_PATCH_SPEC } from './sample-patch.js';
import { FACTS } from './simulated-fleet.js';

export const GROUP_PATCH_ID = 'pat_group';
const silent = pino({ level: 'silent' });

/** Polls `probe` until it is truthy (or throws after `ms`). */
export async function until<T>(probe: () => Promise<T> | T, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Entry {
  orderId: string;
  kind: 'apply' | 'revert';
  rolloutId: string | null;
  result: OrderResultBody | null;
}

/**
 * A scripted agent. Like the real one: it journals an order before acting and answers a known id from
 * its journal; it says `accepted` when it starts an apply; a cancel of an order it is working on stops
 * it (answered `cancelled`, nothing changed); a cancel of an order it does not know is a no-op (the
 * real agent's `OrderExecutor.cancel`).
 */
export class ScriptedAgent {
  /** Every message received, in order. */
  readonly received: CoordinatorMessage[] = [];
  readonly journal = new Map<string, Entry>();
  member: GroupMember | undefined;
  /** Whether the agent's file carries the change now. */
  changed = false;

  constructor(readonly id: string) {}

  receive(message: CoordinatorMessage): void {
    this.received.push(message);
    const member = this.member;
    if (!member) return;
    switch (message.type) {
      case 'order.apply':
      case 'order.revert': {
        const known = this.journal.get(message.orderId);
        if (known) {
          if (known.result) member.engine.onOrderResult(this.id, known.result);
          return;
        }
        this.journal.set(message.orderId, {
          orderId: message.orderId,
          kind: message.type === 'order.apply' ? 'apply' : 'revert',
          rolloutId: message.type === 'order.apply' ? message.rolloutId : null,
          result: null,
        });
        if (message.type === 'order.apply')
          member.engine.onOrderProgress(this.id, {
            type: 'order.progress',
            orderId: message.orderId,
            phase: 'accepted',
          });
        return;
      }
      case 'order.cancel': {
        const entry = this.journal.get(message.orderId);
        if (entry && entry.kind === 'apply' && entry.result === null) this.answer(entry, 'cancelled', false);
        return;
      }
      default:
        return;
    }
  }

  /** Apply orders received, in order. */
  applies(): Entry[] {
    return [...this.journal.values()].filter((e) => e.kind === 'apply');
  }

  openApply(): Entry | undefined {
    return this.applies().find((e) => e.result === null);
  }

  openRevert(): Entry | undefined {
    return [...this.journal.values()].find((e) => e.kind === 'revert' && e.result === null);
  }

  /** Finishes its open apply order: healthy carries the change. */
  finish(outcome: OrderOutcome = 'healthy'): string {
    const entry = this.openApply();
    if (!entry) throw new Error(`${this.id} holds no open apply`);
    this.answer(entry, outcome, outcome === 'healthy');
    return entry.orderId;
  }

  finishRevert(): void {
    const entry = this.openRevert();
    if (!entry) throw new Error(`${this.id} holds no open revert`);
    this.answer(entry, 'reverted', false);
  }

  private answer(entry: Entry, outcome: OrderOutcome, changed: boolean): void {
    if (entry.kind === 'apply') this.changed = changed;
    else if (outcome === 'reverted') this.changed = false;
    entry.result = {
      orderId: entry.orderId,
      outcome,
      changed: entry.kind === 'apply' ? changed : this.changed,
      finishedAt: new Date().toISOString(),
      ...(outcome === 'healthy' || outcome === 'reverted' ? {} : { errorCode: 'cancelled' as never }),
    };
    this.member?.engine.onOrderResult(this.id, entry.result);
  }

  hello(): Hello {
    return {
      type: 'hello',
      protocolVersion: PROTOCOL_VERSION,
      proof: 'sim',
      agentVersion: 'sim',
      labels: {},
      facts: { ...FACTS, hostname: this.id },
      orders: [...this.journal.values()].map((e) => ({
        orderId: e.orderId,
        phase: e.result ? ('done' as const) : ('accepted' as const),
        ...(e.result ? { result: e.result } : {}),
      })),
    };
  }
}

/** The part of AgentHub a group member uses, over scripted agents connected to this member. */
class FakeHub {
  readonly agents = new Map<string, ScriptedAgent>();
  isOnline(agentId: string): boolean {
    return this.agents.has(agentId);
  }
  send(agentId: string, message: CoordinatorMessage): boolean {
    const agent = this.agents.get(agentId);
    if (!agent) return false;
    // A socket delivers in order, after the current turn (as ws does).
    queueMicrotask(() => agent.receive(message));
    return true;
  }
  onlineIds(): string[] {
    return [...this.agents.keys()];
  }
  protocolVersionOf(agentId: string): number | undefined {
    return this.agents.has(agentId) ? PROTOCOL_VERSION : undefined;
  }
  awaitsResults(): boolean {
    return true;
  }
}

export interface MemberOptions {
  url: string;
  id: string;
  leaseMs: number;
  /**
   * The member's machine wall clock; Date.now unless said. Its engine runs on the group's clock (the
   * database's, as app.ts has it), so a skew here must change nothing the engine decides.
   */
  now?: () => number;
}

export class GroupMember {
  readonly hub = new FakeHub();
  private ticker: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    readonly id: string,
    readonly store: Store,
    readonly group: CoordinatorGroup,
    readonly engine: RolloutEngine,
  ) {}

  static async start(options: MemberOptions): Promise<GroupMember> {
    const store = await Store.openPostgres(options.url);
    const group = await CoordinatorGroup.join({
      url: options.url,
      coordinatorId: options.id,
      leaseMs: options.leaseMs,
      store,
      hub: new FakeHub() as unknown as AgentHub,
      log: silent,
      baseClock: { ...systemClock, now: options.now ?? (() => Date.now()) },
    });
    // The group's hub is the member's hub: rebuilt below with the member's own FakeHub.
    let engineRef: RolloutEngine | undefined;
    const engine = new RolloutEngine({
      store,
      channel: group.channel,
      driving: group.driving(
        (rolloutId) => engineRef?.wake(rolloutId),
        async (ids) => await engineRef?.takeOver(ids),
      ),
      stepGuard: group.stepLock,
      log: silent,
      clock: group.clock,
      resultsAwaited: () => true,
    });
    engineRef = engine;
    const member = new GroupMember(options.id, store, group, engine);
    // CoordinatorGroup keeps the hub it was given: point it (and its channel) at this member's hub.
    const hub = member.hub as unknown as AgentHub;
    (group as unknown as { options: { hub: AgentHub } }).options.hub = hub;
    (group.channel as unknown as { hub: AgentHub }).hub = hub;
    group.start();
    return member;
  }

  /** Ticks the engine as app.ts does (every `ms`). */
  startTicking(ms = 200): void {
    let ticking = false;
    this.ticker = setInterval(() => {
      if (ticking || this.closed) return;
      ticking = true;
      this.engine
        .tick()
        .catch(() => {})
        .finally(() => {
          ticking = false;
        });
    }, ms);
  }

  /** The agent connects here and says hello. */
  async connect(agent: ScriptedAgent): Promise<void> {
    agent.member?.hub.agents.delete(agent.id);
    if (agent.member) await agent.member.group.agentGone(agent.id);
    agent.member = this;
    this.hub.agents.set(agent.id, agent);
    await this.group.agentConnected(agent.id);
    this.engine.onAgentHello(agent.id, agent.hello());
  }

  /** An orderly stop: leases and agents handed over at once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    this.engine.stop();
    await this.group.leave().catch(() => {});
    await this.store.close();
  }

  /**
   * The process dies: nothing more runs here, nothing is released (its leases expire, its session
   * advisory lock goes with its connection).
   */
  async crash(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.ticker);
    this.engine.stop();
    const group = this.group as unknown as {
      heartbeat: NodeJS.Timeout;
      lockConnection: { close(): Promise<void> };
      notifications: { stop(): Promise<void> };
      tail: { stop(): void };
      outbox: { stop(): void };
    };
    clearInterval(group.heartbeat);
    group.tail.stop();
    group.outbox.stop();
    await group.notifications.stop().catch(() => {});
    await group.lockConnection.close().catch(() => {});
    for (const agent of this.hub.agents.values()) agent.member = undefined;
    this.hub.agents.clear();
    await this.store.close();
  }
}

/** Enrolls hosts (seen before: they may be canaries) and stores the patch. */
export async function seedGroup(store: Store, hostIds: readonly string[]): Promise<void> {
  const at = new Date().toISOString();
  await store.transaction(async () => {
    await store.patches.insert(
      storedPatch(SAMPLE_PATCH_SPEC, { id: GROUP_PATCH_ID, createdBy: 'alice', createdAt: at }),
    );
  });
  for (const id of hostIds) {
    await store.agents.enroll({ id, publicKey: 'A'.repeat(43), labels: {}, mayReplace: false }, at);
    await store.transaction(async () => await store.agents.recordSightings([[id, at]]));
  }
}
