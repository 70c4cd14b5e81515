#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Agent } from './agent.js';
import { type AgentConfig, isInsecureUrl, loadAgentConfig } from './config.js';
import { collectFacts } from './facts.js';

const USAGE = `usage: fleetpatch-agent [--config FILE] [--coordinator URL] [--token TOKEN | --token-file FILE]
                        [--data-dir DIR] [--root-dir DIR] [--label KEY=VALUE]... [--allow-root PATH]...
                        [--log-level LEVEL] [--ca-file FILE] [--allow-insecure]

Environment: FLEETPATCH_AGENT_CONFIG, FLEETPATCH_COORDINATOR_URL, FLEETPATCH_AGENT_TOKEN, FLEETPATCH_AGENT_TOKEN_FILE,
FLEETPATCH_DATA_DIR, FLEETPATCH_LOG_LEVEL, FLEETPATCH_RECONNECT_MAX_MS (cap of the reconnect backoff),
FLEETPATCH_CA_FILE (CA trusted for the coordinator), FLEETPATCH_ALLOW_INSECURE=1 (permit http:// and ws://).`;

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    const { values } = parseArgs({
      options: {
        config: { type: 'string' },
        coordinator: { type: 'string' },
        token: { type: 'string' },
        'token-file': { type: 'string' },
        'data-dir': { type: 'string' },
        'root-dir': { type: 'string' },
        label: { type: 'string', multiple: true },
        'allow-root': { type: 'string', multiple: true },
        'log-level': { type: 'string' },
        'ca-file': { type: 'string' },
        'allow-insecure': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      return;
    }
    const labels: Record<string, string> = {};
    for (const pair of values.label ?? []) {
      const eq = pair.indexOf('=');
      if (eq <= 0) throw new Error(`--label takes KEY=VALUE, got "${pair}"`);
      labels[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
    config = loadAgentConfig({
      file: values.config ?? process.env.FLEETPATCH_AGENT_CONFIG,
      env: process.env,
      flags: {
        ...(values.coordinator ? { coordinatorUrl: values.coordinator } : {}),
        ...(values.token ? { token: values.token } : {}),
        ...(values['token-file'] ? { tokenFile: values['token-file'] } : {}),
        ...(values['data-dir'] ? { dataDir: values['data-dir'] } : {}),
        ...(values['root-dir'] ? { rootDir: values['root-dir'] } : {}),
        ...(values['log-level'] ? { logLevel: values['log-level'] } : {}),
        labels,
        ...(values['allow-root'] ? { allowedRoots: values['allow-root'] } : {}),
        ...(values['ca-file'] ? { caFile: values['ca-file'] } : {}),
        ...(values['allow-insecure'] ? { allowInsecure: true } : {}),
      },
    });
  } catch (err) {
    process.stderr.write(`fleetpatch-agent: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }

  // Test-only: the crash-point matrix kills the agent at a named step to prove recovery.
  const crashAt = new Set((process.env.FLEETPATCH_TEST_CRASH_AT ?? '').split(',').filter(Boolean));
  const logOptions = { level: config.logLevel, base: { service: 'agent' } };
  // pino writes asynchronously by default, so a SIGKILL right after a log call loses the line; with
  // crash points armed, log synchronously so "test crash point reached" is on stdout before the kill.
  const log = crashAt.size > 0 ? pino(logOptions, pino.destination({ dest: 1, sync: true })) : pino(logOptions);
  if (isInsecureUrl(config.coordinatorUrl)) {
    log.warn(
      { coordinatorUrl: config.coordinatorUrl },
      'allowInsecure: talking to the coordinator without TLS; the agent token and every order cross the network in clear',
    );
  }
  const agent = new Agent({
    config,
    log,
    facts: await collectFacts(),
    ...(crashAt.size > 0
      ? {
          checkpoint: (name: string) => {
            if (!crashAt.has(name)) return;
            log.warn({ checkpoint: name }, 'test crash point reached: SIGKILL');
            process.kill(process.pid, 'SIGKILL');
          },
        }
      : {}),
  });
  await agent.start();
  log.info({ dataDir: config.dataDir, rootDir: config.rootDir }, 'agent started');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now; interrupted orders are recovered at the next start');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal }, 'agent stopping: letting running orders finish');
    setTimeout(() => {
      log.warn('orders still running after 60 s: exiting; they are recovered at the next start');
      process.exit(1);
    }, 60_000).unref();
    agent.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`fleetpatch-agent: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
