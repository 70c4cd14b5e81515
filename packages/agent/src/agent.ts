import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  type CoordinatorMessage,
  connectProofPayload,
  type Facts,
  HEALTH_TOLERANCE_PROTOCOL,
  HostIdSchema,
  type OrderReport,
  PROTOCOL_VERSION,
  signPayload,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { type AgentCredential, readCredential } from './agent-credential.js';
import { type Clock, systemClock } from './clock.js';
import { type AgentConfig, agentSocketUrl } from './config.js';
import { CoordinatorConnection, type HelloContent } from './coordinator-connection.js';
import { coordinatorTlsOptions, TlsRefusalLog } from './coordinator-tls.js';
import { AptDriver, DEFAULT_APT_STAGING_DIR } from './drivers/apt-driver.js';
import { FileDriver } from './drivers/file-driver.js';
import { EnrollmentRefused, EnrollmentUnanswered, enrollAndStore } from './enrollment-client.js';
import { realPathOf } from './fs/real-path.js';
import { SystemHealthProbe } from './health/health-probe.js';
import { HealthRunner } from './health/health-runner.js';
import { DpkgInventory } from './inventory/dpkg-inventory.js';
import { InventoryReporter } from './inventory/inventory-reporter.js';
import { orderRanDpkg } from './inventory/order-ran-dpkg.js';
import { StatusWatch } from './inventory/status-watch.js';
import { Journal } from './journal.js';
import { AgentMetrics, type OrderKind } from './metrics/agent-metrics.js';
import { MetricsTextfile } from './metrics/metrics-textfile.js';
import { type DriverSet, OrderExecutor } from './orders/order-executor.js';
import { AgentPolicy } from './policy/agent-policy.js';
import { AppliedSequences } from './policy/applied-sequences.js';
import { RefusalCounter } from './policy/refusal-counter.js';
import { SignedOrderCheck } from './policy/signed-order-check.js';
import { InstalledPackages } from './preconditions/installed-packages.js';
import { PreconditionChecker } from './preconditions/precondition-check.js';
import { ProgressCoalescer } from './progress-coalescer.js';
import { warmUpProtocol } from './protocol-warm-up.js';
import { ResultResend } from './result-resend.js';
import { AfterChange } from './services/after-change.js';
import { SystemdServiceManager } from './services/service-manager.js';
import { fitHelloReports, fitProgress } from './wire-fit.js';

export const AGENT_VERSION = '0.1.0';

/** Results sent again at one heartbeat, at most: a journal of many unacknowledged ones is paced, not poured out. */
const RESENDS_PER_HEARTBEAT = 64;
/** A result the coordinator keeps not acknowledging is tried again at most this many times less often than at first. */
const RESEND_BACKOFF_CAP = 16;

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  /** Facts to report; collected from the system by main.ts, injected so many agents can share one process. */
  facts: Facts;
  clock?: Clock;
  /** Test-only crash points: between the executor's steps and inside the journal's and file driver's writes. */
  checkpoint?: (name: string) => void;
}

/**
 * One agent: journal, executor and connection. No process-global state, so a load test can run
 * thousands of them in one process.
 */
export class Agent {
  private journal: Journal | null = null;
  private executor: OrderExecutor | null = null;
  private progress: ProgressCoalescer | null = null;
  private connection: CoordinatorConnection | null = null;
  private state: 'idle' | 'running' | 'stopped' = 'idle';
  private pruneTimer: NodeJS.Timeout | null = null;
  private credential: AgentCredential | null = null;
  private stopping: Promise<void> | null = null;
  /** Order ids whose results the last hello left out for room, oldest last. */
  private heldReports: string[] = [];
  private inventory: InventoryReporter | null = null;
  private statusWatch: StatusWatch | null = null;
  /** Only with `metrics.textfile` configured. */
  private metrics: AgentMetrics | null = null;
  private metricsFile: MetricsTextfile | null = null;
  /** Results sent and not yet acknowledged: when to send each again (see result-resend.ts). */
  private readonly resend: ResultResend;

  constructor(private readonly options: AgentOptions) {
    const base = options.config.resultResendMs;
    this.resend = new ResultResend(base, base * RESEND_BACKOFF_CAP);
  }

  /** When results were sent, on the clock durations are measured on: a step of the wall clock moves no resend. */
  private get now(): number {
    return (this.options.clock ?? systemClock).monotonicNow();
  }

  get connected(): boolean {
    return this.connection?.connected ?? false;
  }

  /** Recovers interrupted orders first, then dials the coordinator. */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`agent is ${this.state}`);
    this.state = 'running';
    const { config, log } = this.options;
    const clock = this.options.clock ?? systemClock;
    const { checkpoint } = this.options;
    const crashPoints = checkpoint ? { checkpoint } : {};
    const journal = await Journal.open(config.dataDir, crashPoints);
    this.startMetrics();
    const apt = config.apt ? aptDriverFor(config.apt) : undefined;
    const drivers: DriverSet = {
      file: new FileDriver({ rootDir: config.rootDir, allowedRoots: config.file.allowedRoots, ...crashPoints }),
      ...(apt ? { package: apt } : {}),
    };
    const policy = new AgentPolicy(config, {
      rootDir: config.rootDir,
      ownDirectories: ownDirectoriesOf(config),
      ...(apt ? { packageFacts: apt.packageFacts } : {}),
    });
    const health = new HealthRunner(new SystemHealthProbe({ rootDir: config.rootDir, policy, clock }), clock);
    // Package preconditions read the dpkg database the inventory reports (whether or not it is reported).
    const packages = new InstalledPackages({ root: dpkgRootOf(config) });
    const progress = new ProgressCoalescer((report) => this.connection?.send(report), config.progressCoalesceMs);
    this.progress = progress;
    const executor = new OrderExecutor({
      journal,
      drivers,
      health,
      preconditions: new PreconditionChecker({ health, policy, packages }),
      clock,
      log,
      policy,
      refusals: await RefusalCounter.open(config.dataDir),
      ...(config.signing
        ? {
            signing: new SignedOrderCheck(
              config.signing,
              await AppliedSequences.open(config.dataDir),
              () => this.credential?.hostId,
            ),
          }
        : {}),
      quota: config.journal,
      afterChange: afterChangeFor(config),
      events: {
        progress: (orderId, phase, message, health, failingPolls) =>
          progress.progress({
            type: 'order.progress',
            orderId,
            phase,
            ...fitProgress(message, health),
            // A field a protocol-1 coordinator (strict frames) would refuse: only to those that read it.
            ...(failingPolls !== undefined && (this.connection?.agreedProtocol ?? 0) >= HEALTH_TOLERANCE_PROTOCOL
              ? { failingPolls }
              : {}),
          }),
        result: (result) => {
          progress.finished(result.orderId);
          if (this.connection?.send({ type: 'order.result', ...result })) this.resend.sentAt(result.orderId, this.now);
          this.metrics?.orderFinished(result, clock.now());
          // A package order (or its revert) ran dpkg: report the packages now rather than after the
          // status file's debounce. A file order leaves them as they were (orderRanDpkg says why it matters).
          if (orderRanDpkg(journal, result.orderId)) void this.inventory?.refresh();
        },
      },
      ...crashPoints,
    });
    await executor.recover();
    this.startInventory();
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
    this.credential = await this.obtainCredential();
    if (this.state !== 'running') return;
    // Before the first order can arrive: its parse then does not build the parsers (see warmUpProtocol).
    warmUpProtocol();
    this.connection = new CoordinatorConnection({
      urls: config.coordinatorUrls.map(agentSocketUrl),
      agentId: () => (this.credential as AgentCredential).hostId,
      tls: coordinatorTlsOptions(config.tls),
      log,
      backoffBaseMs: config.backoffBaseMs,
      backoffMaxMs: config.backoffMaxMs,
      hello: (nonce) => this.hello(nonce),
      protocolVersions: { min: config.minProtocolVersion, max: PROTOCOL_VERSION },
      onRefused: async () => {
        const reread = await readCredential(config.dataDir);
        if (reread && reread.publicKey !== this.credential?.publicKey) {
          log.info({ hostId: reread.hostId }, 'the agent credential changed on disk: using the new one');
          this.credential = reread;
        }
      },
      onMessage: (message) => this.onMessage(message),
      onHeartbeat: () => this.resendUnacknowledged(),
    });
    this.connection.start(() => journal.position);
  }

  /**
   * Drains: running orders finish and report before the connection closes. Every call returns the
   * same drain (as BullMQ's close), so a second caller does not go on while orders still run.
   */
  stop(): Promise<void> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  private async drain(): Promise<void> {
    this.state = 'stopped';
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.statusWatch?.stop();
    await this.executor?.stop();
    this.progress?.close();
    await this.inventory?.stop();
    await this.connection?.stop();
    await this.metricsFile?.stop();
    // An ack's journal write may still be between its rename and its directory fsync: let it end.
    await this.journal?.settle();
  }

  /**
   * Reads the dpkg database in the background and from then on after every change of it; what is
   * read goes to the coordinator whenever a connection of protocol 3 or later is up.
   */
  private startInventory(): void {
    const { config, log } = this.options;
    if (!config.inventory.enabled) return;
    const dpkg = new DpkgInventory({ root: dpkgRootOf(config) });
    const inventory = new InventoryReporter({
      read: () => dpkg.read(),
      send: (message) => this.connection?.send(message) ?? false,
      log: log.child({ component: 'inventory' }),
    });
    this.statusWatch = new StatusWatch({
      statusFile: dpkg.statusFile,
      debounceMs: config.inventory.debounceMs,
      maxDelayMs: Math.max(30_000, config.inventory.debounceMs),
      onChange: () => void inventory.refresh(),
      log,
    });
    this.statusWatch.start();
    this.inventory = inventory;
    void inventory.refresh();
  }

  private startMetrics(): void {
    const { textfile, intervalSeconds } = this.options.config.metrics;
    if (!textfile) return;
    this.metrics = new AgentMetrics(AGENT_VERSION, () => this.connected);
    this.metricsFile = new MetricsTextfile(this.metrics, textfile, intervalSeconds * 1000, this.options.log);
    this.metricsFile.start();
  }

  private orderReceived(orderId: string, kind: OrderKind): void {
    this.metrics?.orderReceived(orderId, kind, (this.options.clock ?? systemClock).now());
  }

  private async pruneJournal(journal: Journal): Promise<void> {
    const clock = this.options.clock ?? systemClock;
    const removed = await journal.prune(this.options.config.journalRetentionDays * 24 * 3600 * 1000, clock.now());
    if (removed > 0) this.options.log.info({ removed }, 'pruned finished orders past the retention period');
  }

  /**
   * The credential in the data dir, or a new one enrolled with the join token. Enrolling retries while
   * the coordinator cannot be reached (agents may start first) but not when it refuses: a human must act.
   */
  private async obtainCredential(): Promise<AgentCredential> {
    const { config, log } = this.options;
    const existing = await readCredential(config.dataDir);
    if (existing) {
      if (config.hostId !== undefined && config.hostId !== existing.hostId) {
        throw new Error(`this agent is enrolled as ${existing.hostId}, not ${config.hostId} (${config.dataDir})`);
      }
      return existing;
    }
    if (!config.joinToken) {
      throw new Error(
        `not enrolled: no credential in ${config.dataDir}; give a join token (joinTokenFile or FLEETPATCH_JOIN_TOKEN)`,
      );
    }
    const hostId = config.hostId ?? this.options.facts.hostname;
    if (!HostIdSchema.safeParse(hostId).success) {
      throw new Error(`the hostname ${JSON.stringify(hostId)} is not a valid host id: set hostId`);
    }
    const refusals = new TlsRefusalLog(log);
    for (let attempt = 0; ; attempt++) {
      try {
        const enrolled = await enrollAndStore(config, config.joinToken, hostId);
        log.info(
          { hostId, labels: enrolled.result.labels, coordinator: enrolled.coordinatorUrl },
          'enrolled with the coordinator',
        );
        return enrolled.credential;
      } catch (err) {
        if (err instanceof EnrollmentRefused) {
          throw new Error(`enrollment refused by the coordinator (HTTP ${err.status}): ${err.message}`);
        }
        if (this.state !== 'running') throw err;
        // Full jitter, like the socket's reconnects: a fleet started at once does not enroll in step.
        const ceiling = Math.min(config.backoffMaxMs, config.backoffBaseMs * 2 ** Math.min(attempt, 10));
        const delay = Math.max(50, Math.floor(Math.random() * ceiling));
        // A refused certificate gets its own clear line (see coordinator-tls.ts), not a bare retry.
        const failures = err instanceof EnrollmentUnanswered ? err.failures : [{ coordinatorUrl: undefined, err }];
        const unexplained = failures.filter((failure) => !refusals.report(failure.err));
        if (unexplained.length > 0) {
          const errors = unexplained.map((f) => ({ coordinator: f.coordinatorUrl, err: (f.err as Error).message }));
          log.warn({ errors, retryInMs: delay }, 'enrollment failed; retrying');
        }
        // Not unref'd: while enrolling, this timer is all that keeps the agent process alive.
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  private hello(nonce: string): HelloContent {
    const credential = this.credential as AgentCredential;
    return {
      type: 'hello',
      proof: signPayload(credential.privateKey, connectProofPayload(credential.hostId, nonce)),
      agentVersion: AGENT_VERSION,
      labels: this.options.config.labels,
      facts: this.options.facts,
      orders: this.helloReports(),
    };
  }

  /** The reports that fit this hello; those held back are paged in as the coordinator acks (see onAck). */
  private helloReports(): OrderReport[] {
    const { sent, held } = fitHelloReports(this.journal?.pendingReports() ?? []);
    this.heldReports = held.map((r) => r.orderId);
    // A new connection: the results this hello carries wait for their acks from now.
    this.resend.clear();
    const now = this.now;
    for (const report of sent) if (report.result) this.resend.sentAt(report.orderId, now);
    if (held.length > 0)
      this.options.log.warn(
        { sent: sent.length, held: held.length },
        'hello carries part of the journal; the rest follows acks',
      );
    return sent;
  }

  /** One acknowledged result frees room for one held back: send the next still unacknowledged one. */
  private sendNextHeld(): void {
    while (this.heldReports.length > 0) {
      const orderId = this.heldReports.shift() as string;
      const entry = this.journal?.get(orderId);
      if (entry?.phase === 'done' && !entry.acked && entry.result) {
        if (this.connection?.send({ type: 'order.result', ...entry.result })) this.resend.sentAt(orderId, this.now);
        return;
      }
    }
  }

  /**
   * At a heartbeat: the results still unacknowledged long after they were sent go again (a report the
   * coordinator's store refused and dropped, an ack lost to its restart); see result-resend.ts.
   */
  private resendUnacknowledged(): void {
    for (const orderId of this.resend.due(this.now, RESENDS_PER_HEARTBEAT)) {
      const entry = this.journal?.get(orderId);
      if (entry?.phase !== 'done' || entry.acked || !entry.result) {
        this.resend.forget(orderId);
        continue;
      }
      this.options.log.info(
        { orderId, finishedAt: entry.result.finishedAt },
        'the coordinator has not acknowledged this result; sending it again',
      );
      this.connection?.send({ type: 'order.result', ...entry.result });
    }
  }

  /** Exhaustive: a new coordinator message type fails to compile until it is handled. */
  private onMessage(message: CoordinatorMessage): void {
    const executor = this.executor;
    if (!executor) return;
    const log = this.options.log;
    const fail = (err: unknown) => log.error({ err, type: message.type }, 'handling coordinator message failed');
    switch (message.type) {
      case 'challenge':
        return;
      case 'welcome':
        this.inventory?.connected();
        return;
      case 'inventory.request':
        this.inventory?.requested(message.reason);
        return;
      case 'order.apply':
        this.orderReceived(message.orderId, 'apply');
        executor.apply(message).catch(fail);
        return;
      case 'order.revert':
        this.orderReceived(message.orderId, 'revert');
        executor.revert(message).catch(fail);
        return;
      case 'order.preflight':
        this.orderReceived(message.orderId, 'preflight');
        executor.preflight(message).catch(fail);
        return;
      case 'order.watch':
        executor.extendBake(message.orderId, message.seconds).catch(fail);
        return;
      case 'order.cancel':
        executor.cancel(message.orderId);
        return;
      case 'order.ack':
        executor
          .acknowledge(message.orderId, message.finishedAt)
          .then(() => {
            // An ack of an earlier result of the order (a bake failure replaced it) leaves it pending.
            if (this.journal?.get(message.orderId)?.acked !== false) this.resend.forget(message.orderId);
            this.sendNextHeld();
          })
          .catch(fail);
        return;
      case 'unsupported':
        // The connection only sends what the agreed version has: a bug on one side, not a reason to hang up.
        log.warn({ inReplyTo: message.inReplyTo, reason: message.reason }, 'coordinator did not understand a message');
        return;
      default: {
        const unreachable: never = message;
        log.warn({ message: unreachable }, 'unknown message');
      }
    }
  }
}

/** The apt section minus what only the policy reads; the driver keeps its own name check as a second line. */
function aptDriverFor(apt: NonNullable<AgentConfig['apt']>): AptDriver {
  const { allowedSourcePackages, allowDowngrade: _policyOnly, ...options } = apt;
  // Packages allowed by their source are not in allowedPackages: the policy has judged them already.
  const { allowedPackages, ...rest } = stripUndefined(options);
  return new AptDriver(allowedSourcePackages?.length || !allowedPackages ? rest : { ...rest, allowedPackages });
}

function stripUndefined<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>;
  };
}

/** Restarts through systemctl as configured; stale processes from /proc (and needrestart where it is). */
function afterChangeFor(config: AgentConfig): AfterChange {
  const { services } = config;
  const needrestart = services.needrestart === 'auto' ? findNeedrestart() : null;
  return new AfterChange({
    services: new SystemdServiceManager({ systemctl: services.systemctl, timeoutMs: services.restartTimeoutMs }),
    procDir: services.procDir,
    root: config.apt?.root ?? '/',
    needrestart,
  });
}

/** needrestart is optional (Debian package `needrestart`): used when installed where Debian puts it. */
function findNeedrestart(): string[] | null {
  return existsSync('/usr/sbin/needrestart') ? ['/usr/sbin/needrestart'] : null;
}

/**
 * The agent's own directories, which no patch may change: its data (journal, credential) and apt's
 * staging, as configured and, where a symlink leads elsewhere, where they really are.
 */
function ownDirectoriesOf(config: AgentConfig): string[] {
  const dirs = [resolve(config.dataDir), resolve(config.apt?.stagingDir ?? DEFAULT_APT_STAGING_DIR)];
  return [...new Set(dirs.flatMap((dir) => [dir, realPathOf(dir)]))];
}

/** The dpkg root whose database the agent reads (inventory, package preconditions): `inventory.dpkgRoot`, else `apt.root`, else `/`. */
function dpkgRootOf(config: AgentConfig): string {
  return config.inventory.dpkgRoot ?? config.apt?.root ?? '/';
}
