#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { armedCrashPoints, armedPausePoints, crashingCheckpoint, pausingCheckpoint } from '@fleetpatch/shared';
import { pino } from 'pino';
import { Agent } from './agent.js';
import { type AgentConfig, isInsecureUrl, loadAgentConfig } from './config.js';
import { checkAgentConfig } from './config-check.js';
import { enrollAndStore } from './enrollment-client.js';
import { collectFacts } from './facts.js';

const USAGE = `usage: fleetpatch-agent [enroll] [--config FILE] [--coordinator URL]... [--host-id ID] [--join-token-file FILE]
                        [--data-dir DIR] [--root-dir DIR] [--label KEY=VALUE]... [--allow-root PATH]...
                        [--log-level LEVEL] [--ca-file FILE] [--allow-insecure] [--check-config]

The first start enrolls with the join token (fleetpatch join-token create) and keeps the agent's own
key in <data-dir>/credential.json (0600); later starts need no token. \`fleetpatch-agent enroll\` only
enrolls (a new key, kept once the coordinator accepts it) and exits: for a host being re-enrolled, a
running agent picks the new key up by itself. Secrets are never taken on the command line.
--check-config loads the configuration (YAML or JSON by its extension), checks that the agent can
start (enrolled, or a join token to enroll with), prints a summary and exits 0; otherwise it names
what is wrong and exits 2. Several --coordinator (or FLEETPATCH_COORDINATOR_URLS=URL,URL): the coordinators
of one group, tried in order; the agent moves to the next when one fails or drops it.

Environment: FLEETPATCH_AGENT_CONFIG, FLEETPATCH_COORDINATOR_URL(S), FLEETPATCH_HOST_ID, FLEETPATCH_JOIN_TOKEN,
FLEETPATCH_JOIN_TOKEN_FILE, FLEETPATCH_DATA_DIR, FLEETPATCH_LOG_LEVEL, FLEETPATCH_RECONNECT_MAX_MS (cap of
the reconnect backoff), FLEETPATCH_PROGRESS_COALESCE_MS (how long progress reports are held, 0: none),
FLEETPATCH_CA_FILE (CA trusted for the coordinator), FLEETPATCH_ALLOW_INSECURE=1
(permit http:// and ws://).`;

async function main(): Promise<void> {
  let config: AgentConfig;
  let command: 'run' | 'enroll' | 'check-config' = 'run';
  try {
    const { values, positionals } = parseArgs({
      options: {
        config: { type: 'string' },
        coordinator: { type: 'string', multiple: true },
        'host-id': { type: 'string' },
        'join-token-file': { type: 'string' },
        'data-dir': { type: 'string' },
        'root-dir': { type: 'string' },
        label: { type: 'string', multiple: true },
        'allow-root': { type: 'string', multiple: true },
        'log-level': { type: 'string' },
        'ca-file': { type: 'string' },
        'allow-insecure': { type: 'boolean' },
        'check-config': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length > 1 || (positionals[0] !== undefined && positionals[0] !== 'enroll')) {
      throw new Error(`unknown command: ${positionals.join(' ')}`);
    }
    if (positionals[0] === 'enroll') command = 'enroll';
    if (values['check-config']) command = 'check-config';
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
        ...(values.coordinator ? { coordinatorUrls: values.coordinator } : {}),
        ...(values['host-id'] ? { hostId: values['host-id'] } : {}),
        ...(values['join-token-file'] ? { joinTokenFile: values['join-token-file'] } : {}),
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

  if (command === 'check-config') {
    const { ok, text } = await checkAgentConfig(config);
    (ok ? process.stdout : process.stderr).write(text);
    process.exit(ok ? 0 : 2);
  }
  if (command === 'enroll') {
    await enrollOnly(config);
    return;
  }

  // Test-only: the crash-point matrix kills the agent at a named step to prove recovery.
  const crashAt = armedCrashPoints(process.env);
  const logOptions = { level: config.logLevel, base: { service: 'agent' } };
  // pino writes asynchronously by default, so a SIGKILL right after a log call loses the line; with
  // crash points armed, log synchronously so "test crash point reached" is on stdout before the kill.
  const log = crashAt.size > 0 ? pino(logOptions, pino.destination({ dest: 1, sync: true })) : pino(logOptions);
  const insecure = config.coordinatorUrls.filter(isInsecureUrl);
  if (insecure.length > 0) {
    log.warn(
      { coordinatorUrls: insecure },
      'allowInsecure: talking to the coordinator without TLS; the join token and every order cross the network in clear',
    );
  }
  // Test-only too: the fault suite stops the agent at a named step to fill its disk right there.
  const crash = crashingCheckpoint(crashAt, log);
  const pause = pausingCheckpoint(armedPausePoints(process.env), log);
  const checkpoint =
    crash && pause
      ? (name: string) => {
          pause(name);
          crash(name);
        }
      : (crash ?? pause);
  const agent = new Agent({ config, log, facts: collectFacts(), ...(checkpoint ? { checkpoint } : {}) });
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
  try {
    await agent.start();
  } catch (err) {
    if (stopping) return; // stopped while enrolling: the signal handler exits
    // Not enrolled, enrollment refused, an unreadable credential: a human must act; say what, not a stack.
    log.fatal({ err: (err as Error).message }, 'agent cannot start');
    process.stderr.write(`fleetpatch-agent: ${(err as Error).message}\n`);
    process.exit(1);
  }
  log.info({ dataDir: config.dataDir, rootDir: config.rootDir }, 'agent started');
}

/** `fleetpatch-agent enroll`: a new key, registered under the join token, written only once accepted. */
async function enrollOnly(config: AgentConfig): Promise<void> {
  if (!config.joinToken) {
    process.stderr.write('fleetpatch-agent enroll: give a join token (--join-token-file or FLEETPATCH_JOIN_TOKEN)\n');
    process.exit(2);
  }
  const hostId = config.hostId ?? collectFacts().hostname;
  try {
    const enrolled = await enrollAndStore(config, config.joinToken, hostId);
    process.stdout.write(
      `enrolled ${hostId}${enrolled.result.replaced ? ' (replacing its previous key)' : ''} at ${enrolled.coordinatorUrl}; credential in ${config.dataDir}\n`,
    );
  } catch (err) {
    process.stderr.write(`fleetpatch-agent enroll: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`fleetpatch-agent: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
