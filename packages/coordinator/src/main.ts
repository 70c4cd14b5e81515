#!/usr/bin/env node
import { Server as TlsServer } from 'node:tls';
import { parseArgs } from 'node:util';
import { armedCrashPoints, crashingCheckpoint, isLoopbackHost } from '@fleetpatch/shared';
import { type Logger, pino } from 'pino';
import { buildApp } from './app.js';
import { loadCoordinatorConfig, storeDescription } from './config.js';
import { coordinatorConfigSummary } from './config-summary.js';
import { loadTlsCredentials, type TlsCredentials, type TlsFiles } from './tls-credentials.js';

/**
 * Connections the kernel holds for the coordinator to accept (it caps this at net.core.somaxconn, 4096
 * by default). Node's 511 overflowed when a fleet redialled at once: a connection the queue had no room
 * for lost its SYN and its agent waited out TCP's retransmit (1 s, then 3 s, 7 s) — ~100,000 overflows
 * and seconds of tail in a 10,000-agent reconnect on this machine.
 */
const LISTEN_BACKLOG = 4096;

const USAGE = `usage: fleetpatch-coordinator [--config FILE] [--host HOST] [--port PORT] [--data-dir DIR] [--log-level LEVEL]
                              [--check-config]
       fleetpatch-coordinator migrate-store --from sqlite:FILE --to postgres:URL

--check-config loads the configuration (file, YAML or JSON by its extension; environment; flags) and
the TLS files, prints what it would run with and exits 0, or names what is wrong and exits 2.

Environment: FLEETPATCH_CONFIG, FLEETPATCH_HOST, FLEETPATCH_PORT, FLEETPATCH_DATA_DIR,
FLEETPATCH_LOG_LEVEL, FLEETPATCH_ADMIN_TOKEN (adds an admin API token), FLEETPATCH_TLS_CERT_FILE,
FLEETPATCH_TLS_KEY_FILE (serve HTTPS/WSS; both files are re-read on SIGHUP), FLEETPATCH_STORE_URL
(postgres://…: a PostgreSQL store, shared by a group of coordinators), FLEETPATCH_COORDINATOR_ID (this
coordinator's name in the group).`;

async function main(): Promise<void> {
  if (process.argv[2] === 'migrate-store') {
    // Loaded only for the subcommand: the server itself does not load the PostgreSQL client.
    const { runMigrateStore } = await import('./migrate-store-command.js');
    // exitCode, not exit(): the summary on stdout is written out first.
    process.exitCode = await runMigrateStore(
      process.argv.slice(3),
      (text) => process.stdout.write(text),
      (text) => process.stderr.write(text),
    );
    return;
  }
  let args: ReturnType<typeof parse>;
  try {
    args = parse();
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (args.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let config: ReturnType<typeof loadCoordinatorConfig>;
  try {
    config = loadCoordinatorConfig({
      file: args.values.config ?? process.env.FLEETPATCH_CONFIG,
      env: process.env,
      flags: {
        ...(args.values.host ? { host: args.values.host } : {}),
        ...(args.values.port ? { port: args.values.port } : {}),
        ...(args.values['data-dir'] ? { dataDir: args.values['data-dir'] } : {}),
        ...(args.values['log-level'] ? { logLevel: args.values['log-level'] } : {}),
      },
    });
  } catch (err) {
    process.stderr.write(`fleetpatch-coordinator: ${(err as Error).message}\n`);
    process.exit(2);
  }
  let credentials: TlsCredentials | undefined;
  try {
    credentials = config.tls ? loadTlsCredentials(config.tls) : undefined;
  } catch (err) {
    process.stderr.write(`fleetpatch-coordinator: ${(err as Error).message}\n`);
    process.exit(2);
  }
  if (args.values['check-config']) {
    process.stdout.write(coordinatorConfigSummary(config, credentials, storeDescription(config)));
    return;
  }
  // Test-only: the coordinator crash matrix kills the coordinator at a named step to prove recovery.
  const crashAt = armedCrashPoints(process.env);
  const logOptions = { level: config.logLevel, base: { service: 'coordinator' } };
  // With crash points armed, log synchronously so "test crash point reached" is out before the kill.
  const log = crashAt.size > 0 ? pino(logOptions, pino.destination({ dest: 1, sync: true })) : pino(logOptions);
  if (config.apiTokens.length === 0) {
    log.warn('no API tokens configured: every API call except /healthz will be refused (set FLEETPATCH_ADMIN_TOKEN)');
  }
  if (credentials) logCertificate(log, credentials, 'serving TLS');
  else if (!isLoopbackHost(config.host)) {
    log.warn(
      { host: config.host },
      'serving plain HTTP on a non-loopback address: API tokens, join tokens and every order cross the network in clear (set tls.certFile and tls.keyFile)',
    );
  }
  const checkpoint = crashingCheckpoint(crashAt, log);
  const app = await buildApp(config, {
    logger: log,
    ...(checkpoint ? { checkpoint } : {}),
    ...(credentials ? { tls: { cert: credentials.cert, key: credentials.key } } : {}),
  });
  const address = await app.listen({ host: config.host, port: config.port, backlog: LISTEN_BACKLOG });
  // One machine-readable line so scripts and tests can find the port when it was 0 (and the scheme).
  log.info({ address, port: (app.server.address() as { port: number }).port }, 'coordinator listening');
  const tlsFiles = config.tls;
  process.on('SIGHUP', () => {
    // https.Server is a tls.Server; fastify's types only know the plain one.
    if (tlsFiles && app.server instanceof TlsServer) reloadCertificate(app.server, tlsFiles, log);
    else log.info('SIGHUP: TLS is off, nothing to reload');
  });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error('shutdown took over 10 s: exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * Swaps in the certificate and key now on disk for new connections; connected agents keep theirs. A
 * pair that does not load is refused and the running one kept, so a bad renewal never takes us down.
 */
function reloadCertificate(server: TlsServer, files: TlsFiles, log: Logger): void {
  let next: TlsCredentials;
  try {
    next = loadTlsCredentials(files);
  } catch (err) {
    log.error({ err, ...files }, 'TLS reload refused: still serving the previous certificate');
    return;
  }
  server.setSecureContext({ cert: next.cert, key: next.key });
  logCertificate(log, next, 'TLS certificate reloaded');
}

function logCertificate(log: Logger, credentials: TlsCredentials, message: string): void {
  const fields = { fingerprint256: credentials.fingerprint256, validTo: credentials.validTo };
  if (credentials.expired) log.warn(fields, `${message}: the certificate has EXPIRED, agents will refuse it`);
  else log.info(fields, message);
}

function parse() {
  return parseArgs({
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      'check-config': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`fleetpatch-coordinator: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
