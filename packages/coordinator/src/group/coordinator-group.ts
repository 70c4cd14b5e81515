import { type Clock, systemClock } from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { DRIVEN_STATES, type RolloutDriving } from '../engine/engine-interfaces.js';
import type { AgentHub } from '../hub/agent-hub.js';
import type { PostgresBackend } from '../store/postgres/postgres-backend.js';
import type { Store } from '../store/store.js';
import { AgentOutbox } from './agent-outbox.js';
import { DatabaseClock } from './database-clock.js';
import { DedicatedConnection } from './dedicated-connection.js';
import { EngineStepLock } from './engine-step-lock.js';
import { EventTail } from './event-tail.js';
import { GroupAgentChannel } from './group-agent-channel.js';
import { GroupNotifications } from './group-notifications.js';
import { GroupPresence } from './group-presence.js';
import { NotifyChannel } from './notify-channels.js';
import { RolloutLeases } from './rollout-leases.js';

export interface CoordinatorGroupOptions {
  url: string;
  coordinatorId: string;
  leaseMs: number;
  store: Store;
  hub: AgentHub;
  log: Logger;
  /**
   * The member's machine clock (tests); the system's unless said. `clock` runs on its monotonic
   * reading and never reads its wall clock, which may be minutes off the other members'.
   */
  baseClock?: Clock;
}

/** The database's clock, in ms since the epoch: the group's one time (see DatabaseClock). */
const DATABASE_MS = 'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms';

function executorOf(store: Store) {
  return (store.backend as PostgresBackend).executor;
}

/** How often the outbox drops messages nobody came for. */
const OUTBOX_EXPIRY_MS = 60_000;

/**
 * One coordinator's membership of a group sharing one PostgreSQL: what it needs beyond the store.
 * - `stepLock`: the engine's steps one at a time across the group (EngineStepLock);
 * - `driving`: rollout leases with fencing tokens — one driver per rollout, taken over when it dies;
 * - `channel`: orders to agents connected anywhere (the socket here, else the outbox);
 * - presence: which agent is connected where, by heartbeat;
 * - the event tail: every event of the group on this coordinator's SSE stream.
 * NOTIFY only wakes: every reader also polls, every `heartbeatMs`.
 */
export class CoordinatorGroup {
  readonly channel: GroupAgentChannel;
  readonly stepLock: EngineStepLock;
  readonly leases: RolloutLeases;
  readonly presence: GroupPresence;
  readonly outbox: AgentOutbox;
  readonly tail: EventTail;
  private readonly notifications: GroupNotifications;
  private readonly lockConnection: DedicatedConnection;
  private readonly heartbeatMs: number;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastExpiry = 0;
  private delivering: Promise<void> | undefined;
  private deliverAgain = false;
  private onWake: (rolloutId: string) => void = () => {};
  private onTakeOver: (rolloutIds: readonly string[]) => Promise<void> = async () => {};

  private constructor(
    private readonly options: CoordinatorGroupOptions,
    /** The group's one time: the database's clock (see DatabaseClock). What this member's engine runs on. */
    readonly clock: DatabaseClock,
  ) {
    const executor = executorOf(options.store);
    this.heartbeatMs = Math.max(100, Math.floor(options.leaseMs / 3));
    this.lockConnection = new DedicatedConnection(options.url);
    this.stepLock = new EngineStepLock(this.lockConnection);
    this.leases = new RolloutLeases(executor, options.coordinatorId, options.leaseMs);
    this.presence = new GroupPresence(executor, options.coordinatorId, options.leaseMs);
    this.outbox = new AgentOutbox(executor, options.log);
    this.channel = new GroupAgentChannel(options.hub, this.presence, this.outbox);
    this.tail = new EventTail(options.store, options.log, this.heartbeatMs);
    this.notifications = new GroupNotifications(
      options.url,
      executor,
      {
        [NotifyChannel.wake]: (rolloutId) => this.onWake(rolloutId),
        [NotifyChannel.outbox]: () => this.deliverOutbox(),
        [NotifyChannel.events]: () => this.tail.poke(),
      },
      () => {
        this.tail.poke();
        this.deliverOutbox();
      },
      options.log,
    );
  }

  /** Joins the group: a member with no agent yet, listening, its event tail at the newest event. */
  static async join(options: CoordinatorGroupOptions): Promise<CoordinatorGroup> {
    if (options.store.backend.kind !== 'postgres') throw new Error('a coordinator group needs a PostgreSQL store');
    const executor = executorOf(options.store);
    const clock = await DatabaseClock.measure(async () => {
      const row = await executor.one<{ ms: number }>(DATABASE_MS);
      if (row === undefined) throw new Error('the database did not say what time it is');
      return row.ms;
    }, options.baseClock ?? systemClock);
    const group = new CoordinatorGroup(options, clock);
    await group.presence.join();
    await group.notifications.start();
    await group.tail.start();
    options.log.info(
      { coordinatorId: options.coordinatorId, leaseMs: options.leaseMs },
      'joined the coordinator group',
    );
    return group;
  }

  /**
   * What the engine asks about leases. `wake` is how another coordinator's wake-up reaches the engine,
   * `takeOver` how it learns that it drives rollouts it did not (the heartbeat took their leases).
   */
  driving(
    wake: (rolloutId: string) => void,
    takeOver: (rolloutIds: readonly string[]) => Promise<void>,
  ): RolloutDriving {
    this.onWake = wake;
    this.onTakeOver = takeOver;
    const { leases, notifications, options } = this;
    return {
      acquire: (ids) => leases.acquire(ids),
      drives: (id) => leases.drives(id),
      forget: (ids) => leases.forget(ids),
      confirm: (id) => leases.confirm(id),
      wakeDriver: (id) => {
        notifications
          .notify(NotifyChannel.wake, id)
          .catch((err: unknown) => options.log.warn({ err, rolloutId: id }, 'waking the rollout driver failed'));
      },
    };
  }

  /** Starts the heartbeat: presence, leases, the outbox sweep and expiry. */
  start(): void {
    // A beat that outlasts the interval (a slow database) is not overlapped by the next.
    let beating = false;
    this.heartbeat = setInterval(() => {
      if (beating) return;
      beating = true;
      void this.beat().finally(() => {
        beating = false;
      });
    }, this.heartbeatMs);
    this.heartbeat.unref();
  }

  /** An agent said hello here: it is ours now, and what waits for it in the outbox goes. */
  async agentConnected(agentId: string): Promise<void> {
    await this.presence.connected(agentId, this.options.hub.protocolVersionOf(agentId));
    this.deliverOutbox();
  }

  async agentGone(agentId: string): Promise<void> {
    await this.presence.disconnected(agentId);
  }

  /** Claims what the outbox holds for this coordinator's agents and sends it, in order (coalesced). */
  deliverOutbox(): void {
    if (this.delivering) {
      this.deliverAgain = true;
      return;
    }
    this.delivering = this.deliver()
      .catch((err: unknown) =>
        this.options.log.warn({ err }, 'delivering the agent outbox failed; the next beat retries'),
      )
      .finally(() => {
        this.delivering = undefined;
        if (this.deliverAgain) {
          this.deliverAgain = false;
          this.deliverOutbox();
        }
      });
  }

  /** At an orderly shutdown: another coordinator takes this one's rollouts and agents at once. */
  async leave(): Promise<void> {
    clearInterval(this.heartbeat);
    this.tail.stop();
    this.outbox.stop();
    await this.outbox.drain().catch(() => {});
    await this.leases.release().catch(() => {});
    await this.presence.leave().catch(() => {});
    await this.notifications.stop();
    await this.lockConnection.close();
  }

  private async deliver(): Promise<void> {
    const { hub } = this.options;
    for (;;) {
      const messages = await this.outbox.claim(hub.onlineIds());
      for (const { agentId, message } of messages) hub.send(agentId, message);
      if (messages.length < 5000) return;
    }
  }

  /**
   * Renews this coordinator's leases, takes those of rollouts whose driver is gone, and lets go of
   * finished ones. On the heartbeat, not the engine's tick: a tick waits for the engine step lock,
   * which a busy group may hold longer than a lease lasts.
   */
  private async keepLeases(): Promise<void> {
    const active = (await this.options.store.rollouts.inStates(DRIVEN_STATES)).map((rollout) => rollout.id);
    const taken = await this.leases.acquire(active);
    await this.leases.releaseExcept(active);
    if (taken.length === 0) return;
    // Not waited for: the resend is an engine step, which waits for the group's step lock, and a long
    // step elsewhere (a large start, a hello storm) would hold this beat — and with it the renewal of
    // this member's other leases and its presence — past a lease period: its rollouts would be taken
    // over, and its agents counted offline, while it is alive.
    this.onTakeOver(taken).catch((err: unknown) => {
      // Their orders were not resent: forgotten, the leases count as newly taken on the next beat.
      this.leases.forget(taken);
      this.options.log.warn({ err, rolloutIds: taken }, 'resending the orders of rollouts taken over failed; retrying');
    });
  }

  private async beat(): Promise<void> {
    try {
      const moved = await this.clock.remeasure();
      if (moved !== 0)
        this.options.log.info({ movedMs: Math.round(moved) }, "the database's clock moved: following it");
      await this.presence.heartbeat();
      await this.keepLeases();
      this.deliverOutbox();
      if (Date.now() - this.lastExpiry > OUTBOX_EXPIRY_MS) {
        this.lastExpiry = Date.now();
        await this.outbox.expire();
      }
    } catch (err) {
      this.options.log.warn({ err }, 'coordinator group heartbeat failed; retrying');
    }
  }
}
