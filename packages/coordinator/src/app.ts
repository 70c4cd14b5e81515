import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from '@fastify/type-provider-zod';
import { type Clock, CloseCode, HealthzSchema, systemClock } from '@fleetpatch/shared';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { AgentPresence } from './agents/agent-presence.js';
import { COORDINATOR_VERSION } from './build-version.js';
import { type CoordinatorConfig, databaseFile, storeDescription } from './config.js';
import type { AgentChannel } from './engine/engine-interfaces.js';
import { PreflightCollector } from './engine/preflight-collector.js';
import { RolloutDryRun } from './engine/rollout-dry-run.js';
import { type CoordinatorCrashPoint, RolloutEngine, type WaveGate } from './engine/rollout-engine.js';
import { SYSTEM } from './engine/rollout-transition.js';
import { RolloutView } from './engine/rollout-view.js';
import { AgentEnrollment } from './enrollment/agent-enrollment.js';
import type { CoordinatorGroup } from './group/coordinator-group.js';
import { groupCoordinatorId } from './group/coordinator-id.js';
import { watchCredentialChanges } from './group/credential-watch.js';
import { accessLog } from './http/access-log.js';
import { ApiAuth, sha256Hex } from './http/api-auth.js';
import { AuthFailureLimiter } from './http/auth-failure-limiter.js';
import { ERROR_RESPONSES, errorHandler, notFoundHandler } from './http/error-handler.js';
import { parseJsonBody } from './http/json-body.js';
import { DOCS_PATH, openApiDocument, operation } from './http/openapi-document.js';
import { pipeliningGuard } from './http/pipelining-guard.js';
import { RefusalAudit } from './http/refusal-audit.js';
import { routeAccess } from './http/route-access.js';
import { urlNulGuard } from './http/url-nul-guard.js';
import { AgentHub } from './hub/agent-hub.js';
import { InventorySync } from './inventory/inventory-sync.js';
import { InventoryView } from './inventory/inventory-view.js';
import { CoordinatorMetrics } from './metrics/coordinator-metrics.js';
import { metricsRoute } from './metrics/metrics-route.js';
import { RolloutEventMetrics } from './metrics/rollout-event-metrics.js';
import { WEBHOOK_FAILED_EVENT, webhookEventsFor } from './notify/webhook-events.js';
import { WebhookNotifier } from './notify/webhook-notifier.js';
import { PatchCatalog } from './patches/patch-catalog.js';
import { agentRoutes } from './routes/agent-routes.js';
import { auditRoutes } from './routes/audit-routes.js';
import { callerRoutes } from './routes/caller-routes.js';
import { dashboardRoutes } from './routes/dashboard-routes.js';
import { enrollmentRoutes } from './routes/enrollment-routes.js';
import { eventStreamRoutes } from './routes/event-stream-routes.js';
import { groupRoutes } from './routes/group-routes.js';
import { packageRoutes } from './routes/package-routes.js';
import { patchRoutes } from './routes/patch-routes.js';
import { rolloutRoutes } from './routes/rollout-routes.js';
import { canStartWave, validateWindow } from './schedule/maintenance-window.js';
import { WindowScheduler } from './schedule/window-scheduler.js';
import { runShutdownSteps } from './shutdown-steps.js';
import { Store } from './store/store.js';

/** What routes and socket handlers reach through `app.fleet`. */
export interface FleetServices {
  store: Store;
  engine: RolloutEngine;
  view: RolloutView;
  hub: AgentHub;
  /** How the engine reaches agents: the hub alone, or in a group the hub and the outbox (and who is online anywhere). */
  channel: AgentChannel;
  /** The group this coordinator is a member of, on a PostgreSQL store; null alone (SQLite). */
  group: CoordinatorGroup | null;
  /** Failed authentications per address; a self-authenticating route counts its own failures here. */
  authFailures: AuthFailureLimiter;
  patches: PatchCatalog;
  dryRun: RolloutDryRun;
  enrollment: AgentEnrollment;
  /** The package inventory and compliance views. */
  inventory: InventoryView;
}

declare module 'fastify' {
  interface FastifyInstance {
    fleet: FleetServices;
  }
}

export interface BuildAppOptions {
  logger: Logger;
  /** For tests: the clock every part of the coordinator reads instead of the system's. */
  clock?: Pick<Clock, 'now'> & Partial<Pick<Clock, 'monotonicNow'>>;
  waveGate?: WaveGate;
  /** Serve HTTPS (and WSS) with this certificate chain and key, PEM; main.ts reads and checks them. */
  tls?: { cert: string; key: string };
  /** Test-only crash points of the engine (see `EngineDeps.checkpoint`); main.ts wires FLEETPATCH_TEST_CRASH_AT. */
  checkpoint?: (name: CoordinatorCrashPoint) => void;
}

/**
 * Builds the coordinator: store, hub, engine and HTTP routes, wired together. It does not listen
 * (main.ts does). Closing the app closes, in reverse order, the ticker, the hub and the store.
 */
export async function buildApp(config: CoordinatorConfig, options: BuildAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger as FastifyBaseLogger,
    // WSS comes with it: the hub takes its upgrades from this same server.
    https: options.tls ? { cert: options.tls.cert, key: options.tls.key } : null,
    bodyLimit: config.bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: true }),
    // Errors the router raises before any route is chosen (a path parameter over maxParamLength, a
    // malformed URL) leave in the same shape as every other error.
    frameworkErrors: errorHandler,
  }).withTypeProvider<ZodTypeProvider>();
  // A request whose headers trickle in (slowloris, a slow agent upgrade) holds a socket: cut it at
  // the handshake timeout. Only the headers: a large body on a slow link is still allowed its time.
  // Node checks these timeouts once per connectionsCheckingInterval (30 s by default), hence 1 s; both
  // are read when the server starts listening, so setting them here works for HTTP and HTTPS alike.
  const server = app.server as { headersTimeout: number; connectionsCheckingInterval?: number };
  server.headersTimeout = config.agentLimits.handshakeTimeoutMs;
  server.connectionsCheckingInterval = Math.min(1000, config.agentLimits.handshakeTimeoutMs);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  // Our own JSON parser: it reads an empty body as none, and refuses (naming where) lone surrogates,
  // prototype keys and deep nesting, which JSON.parse lets through.
  // JSON is the one body the API reads: anything else is a 415, not a string handed to a schema.
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body.toString()));
    } catch (err) {
      done(err as Error, undefined);
    }
  });

  // The store the configuration names; a PostgreSQL one is migrated (under its lock) before use.
  const store =
    config.store.kind === 'postgres'
      ? await Store.openPostgres(config.store.url)
      : await Store.open(databaseFile(config));
  options.logger.info({ store: storeDescription(config) }, 'store open');
  app.addHook('onClose', async () => store.close());

  /** Work nobody waits for (a socket event's write, a listener's): a failure is logged, never unhandled. */
  const background = (work: Promise<unknown>, what: string): void => {
    work.catch((err: unknown) => options.logger.error({ err }, `${what} failed`));
  };

  // Metrics read live sources when scraped, and learn of transitions from the committed events.
  const metrics = new CoordinatorMetrics(
    {
      agentsConnected: (): number => hub.onlineCount(),
      rolloutsByState: () => store.stateCounts.rollouts(),
      ordersByState: () => store.stateCounts.hostRuns(),
    },
    COORDINATOR_VERSION,
  );
  store.observeTransactions((seconds, committed) => metrics.transactionFinished(seconds, committed));
  const eventMetrics = new RolloutEventMetrics(metrics, (rolloutId, hostId) => store.hostRuns.get(rolloutId, hostId));
  store.onEvent((event) => background(eventMetrics.onEvent(event), 'counting an event in the metrics'));

  const hub = new AgentHub({
    publicKeyOf: (agentId) => store.agents.publicKeyOf(agentId),
    log: options.logger.child({ component: 'hub' }),
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    limits: config.agentLimits,
    observer: metrics,
  });
  // On PostgreSQL the coordinator is a member of a group (one or more coordinators on the database):
  // leases say who drives which rollout, the outbox reaches agents connected to another member.
  const group =
    config.store.kind === 'postgres'
      ? await (await import('./group/coordinator-group.js')).CoordinatorGroup.join({
          url: config.store.url,
          coordinatorId: config.store.coordinatorId ?? groupCoordinatorId(config.port),
          leaseMs: config.store.leaseMs,
          store,
          hub,
          log: options.logger.child({ component: 'group' }),
        })
      : null;
  // A group's members run on the database's clock, the one time they all judge each other's instants
  // by (see DatabaseClock); a clock given for a test is what that test runs on.
  const clock = options.clock ?? group?.clock ?? systemClock;
  const channel: AgentChannel = group?.channel ?? hub;
  // The engine needs the scheduler to wake it, the scheduler needs the engine to wake: late-bound.
  let engineRef: RolloutEngine | null = null;
  const windows = new WindowScheduler({
    onOpen: (rolloutId) => engineRef?.wake(rolloutId),
    onCutoff: (rolloutId) => engineRef?.wake(rolloutId),
    log: options.logger,
  });
  const engine = new RolloutEngine({
    store,
    channel,
    ...(group
      ? {
          driving: group.driving(
            (rolloutId) => engineRef?.wake(rolloutId),
            async (rolloutIds) => await engineRef?.takeOver(rolloutIds),
          ),
          stepGuard: group.stepLock,
        }
      : {}),
    log: options.logger.child({ component: 'engine' }),
    clock,
    waveGate: options.waveGate ?? canStartWave,
    validateWindow,
    windows,
    minApprovals: config.minApprovals,
    promotion: config.promotion,
    requiredRecordFields: config.changeRecord.required,
    connectedAuditWindowMs: config.agentLimits.auditWindowMs,
    // Results come on this coordinator's own sockets, in a group too.
    resultsAwaited: () => hub.awaitsResults(),
    onReportDropped: (kind) => metrics.reportDropped(kind),
    reconnectGraceMs: config.reconnectGraceSeconds * 1000,
    ...(options.checkpoint ? { checkpoint: options.checkpoint } : {}),
  });
  engineRef = engine;
  await engine.resumeWindows();
  const preflights = new PreflightCollector(hub);

  const notifier = new WebhookNotifier({
    endpoints: config.webhooks,
    ...config.webhookDelivery,
    log: options.logger.child({ component: 'webhooks' }),
    // Given up after its retries: on the audit trail of the rollout it was about.
    onGiveUp: (failure) =>
      background(
        store.transaction(() =>
          store.appendEvent(
            { rolloutId: failure.rolloutId, actor: SYSTEM, type: WEBHOOK_FAILED_EVENT, data: { ...failure } },
            new Date(clock.now()).toISOString(),
          ),
        ),
        'recording a webhook given up',
      ),
  });
  // Without an endpoint there is no one to build them for: not a read and an object per audit row.
  if (config.webhooks.length > 0)
    store.onEvent((event) =>
      background(
        webhookEventsFor(store, event).then((webhooks) => {
          for (const webhook of webhooks) notifier.notify(webhook);
        }),
        'building webhook notifications',
      ),
    );
  // In a group, a key revoked or replaced at another coordinator cuts its session here too.
  if (group) watchCredentialChanges(store, hub, background);
  const presence = new AgentPresence(store, clock);
  const inventorySync = new InventorySync({
    store,
    channel: hub,
    clock,
    log: options.logger.child({ component: 'inventory' }),
  });
  hub.setHandlers({
    onHello: (agentId, hello) => {
      if (group) background(group.agentConnected(agentId), 'recording an agent connected to this coordinator');
      inventorySync.agentConnected(agentId);
      engine.onAgentHello(agentId, hello);
    },
    onProgress: (agentId, progress) => engine.onOrderProgress(agentId, progress),
    onResult: (agentId, result) => {
      if (!preflights.accept(agentId, result)) engine.onOrderResult(agentId, result);
    },
    onInventory: (agentId, report) => background(inventorySync.onReport(agentId, report), 'taking an inventory report'),
    onSeen: (agentId) => background(presence.seen(agentId), 'recording when an agent was seen'),
    onDisconnect: (agentId) => {
      if (group) background(group.agentGone(agentId), 'recording an agent gone from this coordinator');
      preflights.agentGone(agentId);
      inventorySync.agentGone(agentId);
      background(presence.disconnected(agentId), 'recording an agent gone');
    },
    onDuplicateRefused: (agentId, detail) =>
      background(presence.duplicateRefused(agentId, detail), 'recording a refused duplicate connection'),
  });
  app.server.on('upgrade', (request, socket, head) => hub.handleUpgrade(request, socket, head));

  // A tick that outlasts the interval is not overlapped by the next: that one is skipped.
  let ticking = false;
  const ticker = setInterval(() => {
    if (ticking) return;
    ticking = true;
    engine
      .tick()
      .catch((err: unknown) => options.logger.error({ err }, 'engine tick failed'))
      .finally(() => {
        ticking = false;
      });
  }, config.tickIntervalMs);
  ticker.unref();
  group?.start();
  // preClose, not onClose: the HTTP server cannot finish closing while agent sockets are open.
  app.addHook('preClose', () =>
    runShutdownSteps(
      [
        { name: 'ticker', close: () => clearInterval(ticker) },
        { name: 'windows', close: () => windows.stop() },
        { name: 'engine', close: () => engine.stop() },
        // Its leases and agents go at once (not after a lease period): the other members carry on.
        ...(group ? [{ name: 'group', close: () => group.leave() }] : []),
        { name: 'hub', close: () => hub.close() },
        // The last_seen of the agents the hub's close just let go.
        { name: 'presence', close: () => presence.flush() },
        // Inventory reports accepted but not written yet: written before the store closes.
        { name: 'inventory', close: async () => await inventorySync.flush() },
        { name: 'webhooks', close: () => notifier.stop() },
      ],
      options.logger,
    ),
  );

  const authFailures = new AuthFailureLimiter(config.authFailures, clock);
  const view = new RolloutView(
    store,
    (hostId) => channel.isOnline(hostId),
    (hostId) => channel.protocolVersionOf(hostId),
    (orderId) => engine.liveHealth.of(orderId),
    () => clock.now(),
  );
  app.decorate('fleet', {
    store,
    engine,
    view,
    hub,
    channel,
    group,
    authFailures,
    patches: new PatchCatalog(store, clock, {
      promotion: config.promotion,
      requiredRecordFields: config.changeRecord.required,
    }),
    dryRun: new RolloutDryRun({ store, view, preflights, clock }),
    enrollment: new AgentEnrollment({
      store,
      clock,
      disconnect: (agentId, reason) => hub.disconnect(agentId, CloseCode.unauthorized, reason),
      exclusive: (work) => engine.exclusive(work),
    }),
    inventory: new InventoryView(
      store,
      {
        isOnline: (hostId) => channel.isOnline(hostId),
        protocolVersionOf: (hostId) => channel.protocolVersionOf(hostId),
        isCurrent: (hostId) => inventorySync.isCurrent(hostId),
      },
      clock,
    ),
  } satisfies FleetServices);

  await app.register(pipeliningGuard, { maxOutstanding: config.maxPipelinedRequests, log: options.logger });
  await app.register(urlNulGuard);
  await app.register(routeAccess, {
    auth: new ApiAuth(config.apiTokens),
    authFailures,
    publicPrefixes: [DOCS_PATH],
  });
  await app.register(accessLog, { metrics, refusals: new RefusalAudit(store, config.refusalAudit, clock) });
  await app.register(metricsRoute, {
    metrics,
    tokenSha256: config.metrics.tokenSha256 ?? (config.metrics.token ? sha256Hex(config.metrics.token) : undefined),
    authFailures,
  });
  await app.register(openApiDocument);
  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: {
        ...operation('health', 'getHealth', 'Liveness, and how many agents are connected'),
        response: { 200: HealthzSchema, ...ERROR_RESPONSES },
      },
    },
    async () => ({ ok: true as const, agentsOnline: hub.onlineCount() }),
  );
  await app.register(agentRoutes, { prefix: '/v1' });
  await app.register(enrollmentRoutes, { prefix: '/v1' });
  await app.register(patchRoutes, { prefix: '/v1' });
  await app.register(rolloutRoutes, { prefix: '/v1' });
  await app.register(packageRoutes, { prefix: '/v1' });
  await app.register(eventStreamRoutes, { prefix: '/v1', limits: config.eventStreams });
  await app.register(auditRoutes, { prefix: '/v1' });
  await app.register(callerRoutes, { prefix: '/v1' });
  await app.register(groupRoutes, { prefix: '/v1' });
  await app.register(dashboardRoutes);
  return app;
}
