import { join } from 'node:path';
import { type CoordinatorMessage, type Facts, type Hello, PROTOCOL_VERSION } from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { type Clock, systemClock } from './clock.js';
import { type AgentConfig, agentSocketUrl } from './config.js';
import { CoordinatorConnection } from './coordinator-connection.js';
import { coordinatorTlsOptions } from './coordinator-tls.js';
import { AptDriver } from './drivers/apt-driver.js';
import { FileDriver } from './drivers/file-driver.js';
import { SystemHealthProbe } from './health/health-probe.js';
import { HealthRunner } from './health/health-runner.js';
import { Journal } from './journal.js';
import { type DriverSet, fitHealth, OrderExecutor } from './order-executor.js';

export const AGENT_VERSION = '0.1.0';

/** OrderProgressSchema's cap on health results. */
const MAX_PROGRESS_HEALTH = 64;

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  /** Facts to report; collected from the system by main.ts, injected so many agents can share one process. */
  facts: Facts;
  clock?: Clock;
  /** Test-only crash points (see OrderExecutor). */
  checkpoint?: (name: string) => void;
}

/**
 * One agent: journal, executor and connection. No process-global state, so a load test can run
 * thousands of them in one process.
 */
export class Agent {
  private journal: Journal | null = null;
  private executor: OrderExecutor | null = null;
  private connection: CoordinatorConnection | null = null;
  private state: 'idle' | 'running' | 'stopped' = 'idle';
  private pruneTimer: NodeJS.Timeout | null = null;

  constructor(private readonly options: AgentOptions) {}

  get connected(): boolean {
    return this.connection?.connected ?? false;
  }

  /** Recovers interrupted orders first, then dials the coordinator. */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`agent is ${this.state}`);
    this.state = 'running';
    const { config, log } = this.options;
    const clock = this.options.clock ?? systemClock;
    const journal = await Journal.open(config.dataDir);
    const resolveHostPath = (path: string) => join(config.rootDir, path);
    const drivers: DriverSet = {
      file: new FileDriver({ rootDir: config.rootDir, allowedRoots: config.file.allowedRoots }),
      ...(config.apt ? { package: new AptDriver(stripUndefined(config.apt)) } : {}),
    };
    const executor = new OrderExecutor({
      journal,
      drivers,
      health: new HealthRunner(new SystemHealthProbe({ resolveHostPath, clock }), clock),
      clock,
      log,
      allowedCommands: config.health.allowedCommands,
      events: {
        progress: (orderId, phase, message, health) =>
          this.connection?.send({
            type: 'order.progress',
            orderId,
            phase,
            ...(message ? { message: message.slice(0, 2000) } : {}),
            ...(health ? { health: fitHealth(health, MAX_PROGRESS_HEALTH) } : {}),
          }),
        result: (result) => this.connection?.send({ type: 'order.result', ...result }),
      },
      ...(this.options.checkpoint ? { checkpoint: this.options.checkpoint } : {}),
    });
    await executor.recover();
    await this.pruneJournal(journal);
    this.pruneTimer = setInterval(
      () => {
        this.pruneJournal(journal).catch((err: unknown) => log.warn({ err }, 'pruning the journal failed'));
      },
      24 * 3600 * 1000,
    );
    this.pruneTimer.unref();
    this.journal = journal;
    this.executor = executor;
    this.connection = new CoordinatorConnection({
      url: agentSocketUrl(config.coordinatorUrl),
      token: config.token as string,
      tls: coordinatorTlsOptions(config.tls),
      log,
      backoffBaseMs: config.backoffBaseMs,
      backoffMaxMs: config.backoffMaxMs,
      hello: () => this.hello(),
      onMessage: (message) => this.onMessage(message),
    });
    this.connection.start(() => journal.position);
  }

  /** Idempotent. Drains: running orders finish and report before the connection closes. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.executor?.stop();
    await this.connection?.stop();
  }

  private async pruneJournal(journal: Journal): Promise<void> {
    const clock = this.options.clock ?? systemClock;
    const removed = await journal.prune(this.options.config.journalRetentionDays * 24 * 3600 * 1000, clock.now());
    if (removed > 0) this.options.log.info({ removed }, 'pruned finished orders past the retention period');
  }

  private hello(): Hello {
    return {
      type: 'hello',
      protocolVersion: PROTOCOL_VERSION,
      agentVersion: AGENT_VERSION,
      labels: this.options.config.labels,
      facts: this.options.facts,
      orders: this.journal?.pendingReports() ?? [],
    };
  }

  /** Exhaustive: a new coordinator message type fails to compile until it is handled. */
  private onMessage(message: CoordinatorMessage): void {
    const executor = this.executor;
    if (!executor) return;
    const log = this.options.log;
    const fail = (err: unknown) => log.error({ err, type: message.type }, 'handling coordinator message failed');
    switch (message.type) {
      case 'welcome':
        return;
      case 'order.apply':
        executor.apply(message).catch(fail);
        return;
      case 'order.revert':
        executor.revert(message).catch(fail);
        return;
      case 'order.preflight':
        executor.preflight(message).catch(fail);
        return;
      case 'order.watch':
        executor.extendBake(message.orderId, message.seconds).catch(fail);
        return;
      case 'order.cancel':
        executor.cancel(message.orderId);
        return;
      case 'order.ack':
        executor.acknowledge(message.orderId, message.finishedAt).catch(fail);
        return;
      default: {
        const unreachable: never = message;
        log.warn({ message: unreachable }, 'unknown message');
      }
    }
  }
}

function stripUndefined<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>;
  };
}
