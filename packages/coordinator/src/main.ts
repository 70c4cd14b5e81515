#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { loadCoordinatorConfig } from './config.js';

const USAGE = `usage: fleetpatch-coordinator [--config FILE] [--host HOST] [--port PORT] [--data-dir DIR] [--log-level LEVEL]

Environment: FLEETPATCH_CONFIG, FLEETPATCH_HOST, FLEETPATCH_PORT, FLEETPATCH_DATA_DIR,
FLEETPATCH_LOG_LEVEL, FLEETPATCH_ADMIN_TOKEN (adds an admin API token).`;

async function main(): Promise<void> {
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
  const log = pino({ level: config.logLevel, base: { service: 'coordinator' } });
  if (config.apiTokens.length === 0) {
    log.warn('no API tokens configured: every API call except /healthz will be refused (set FLEETPATCH_ADMIN_TOKEN)');
  }
  const app = await buildApp(config, { logger: log });
  const address = await app.listen({ host: config.host, port: config.port });
  // One machine-readable line so scripts and tests can find the port when it was 0.
  log.info({ address, port: (app.server.address() as { port: number }).port }, 'coordinator listening');

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

function parse() {
  return parseArgs({
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`fleetpatch-coordinator: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
