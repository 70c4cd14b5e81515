// @ts-check
// A throwaway PostgreSQL 15 cluster: Debian's own binaries (`initdb`, `pg_ctl`), a cluster of its own
// in a temporary directory, never the package's service. Shared by the test suite
// (test/support/postgres-cluster.ts adds databases per test and the vitest hooks) and the bench
// (scripts/bench.mjs --store postgres). Whoever runs this is root (the tests, the bench) and PostgreSQL
// refuses to run as root (initdb exits "cannot be run as root"), so the cluster runs as Debian's
// dedicated `postgres` account through setpriv. It listens on a free port on 127.0.0.1 (no unix
// socket) with fsync on, as a real installation runs: the server's
// own durable path is the one exercised. (Where its directory is on a tmpfs — the bench's scratch,
// the test run's TMPDIR, test/support/scratch-tmpdir.ts — those fsyncs cost next to nothing.) A
// password (scram) guards it, as a real installation would be.
//
// An exit hook stops it and removes its directory if the process ends before `stop()` (an uncaught
// error, SIGTERM, SIGINT), so no `postgres` is left running. (A SIGKILLed process runs nothing: its
// cluster outlives it.)
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { appendFileSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** @import { AddressInfo } from 'node:net' */

export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';
/** Debian's postgresql-common creates this account; the cluster's files and processes are its. */
export const CLUSTER_USER = 'postgres';
/** The cluster's superuser, as the connection URLs name it. */
const SUPERUSER = 'fleetpatch';

/**
 * The uid and gid of account `name`, from /etc/passwd; undefined when there is none.
 * @param {string} name
 * @returns {{ uid: number, gid: number } | undefined}
 */
export function accountIds(name) {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const [, , uid, gid] = line?.split(':') ?? [];
  return uid === undefined || gid === undefined ? undefined : { uid: Number(uid), gid: Number(gid) };
}

/**
 * @typedef {object} RunningCluster
 * @property {string} dir The temporary directory holding its data and log.
 * @property {number} port
 * @property {(name: string) => string} urlOf The URL of database `name` (`postgres` is the maintenance one).
 * @property {() => void} restart Restarts the server (fast shutdown: every connection is cut), keeping its data and port.
 * @property {() => void} stop Stops the server (fast shutdown) and removes its directory; idempotent.
 */

/** A port free now on 127.0.0.1; PostgreSQL takes no port 0, so a lost race is retried by the caller. */
async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = /** @type {AddressInfo} */ (server.address());
  await new Promise((resolve) => server.close(() => resolve(undefined)));
  return port;
}

/**
 * Runs a PostgreSQL binary as the cluster's account; throws with its output when it fails.
 * @param {string} tool
 * @param {readonly string[]} args
 */
function asClusterUser(tool, args) {
  const result = spawnSync(
    'setpriv',
    clusterCommand(tool, args),
    // LC_ALL: initdb takes the cluster's default locale from the environment when not told.
    { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C.UTF-8' }, timeout: 120_000 },
  );
  if (result.status !== 0) {
    throw new Error(
      `${tool} ${args.join(' ')} failed (${result.status ?? result.signal}): ${result.stderr}${result.stdout}`,
    );
  }
}

/**
 * Initialises and starts a cluster; resolves once it accepts connections.
 * @param {{ stopOnSignal?: boolean, parent?: string }} [options] `stopOnSignal: false` for a caller with
 *   SIGTERM/SIGINT handlers of its own that tear down in order and stop the cluster last (the bench):
 *   the default handler re-raises the signal at once, which would kill that caller mid-teardown.
 *   `parent`: where its directory goes (the bench puts it on the tmpfs its SQLite coordinator uses).
 * @returns {Promise<RunningCluster>}
 */
export async function startCluster({ stopOnSignal = true, parent = tmpdir() } = {}) {
  const ids = accountIds(CLUSTER_USER);
  if (ids === undefined) throw new Error(`no "${CLUSTER_USER}" account`);
  const dir = mkdtempSync(join(parent, 'fleetpatch-pg-'));
  const data = join(dir, 'data');
  let running = false;
  /** @param {'fast' | 'immediate'} mode */
  const stopNow = (mode) => {
    if (running) spawnSync('setpriv', clusterCommand('pg_ctl', ['stop', '-D', data, '-m', mode, '-w', '-t', '60']));
    running = false;
    rmSync(dir, { recursive: true, force: true });
  };
  const cleanup = cleanupWhenTheProcessEnds(() => {
    if (running) stopDetached(data, dir);
    else rmSync(dir, { recursive: true, force: true });
  }, stopOnSignal);
  try {
    chownSync(dir, ids.uid, ids.gid);
    const password = randomBytes(18).toString('hex');
    const passwordFile = join(dir, 'password');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    chownSync(passwordFile, ids.uid, ids.gid);
    // Locale C: text sorts by code point, as SQLite's BINARY collation does.
    asClusterUser('initdb', [
      '-D',
      data,
      '-U',
      SUPERUSER,
      `--pwfile=${passwordFile}`,
      '--auth=scram-sha-256',
      '--encoding=UTF8',
      '--locale=C',
      '--no-instructions',
    ]);
    rmSync(passwordFile);
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      appendFileSync(
        join(data, 'postgresql.conf'),
        [
          '',
          `port = ${port}`,
          "listen_addresses = '127.0.0.1'",
          // No unix socket: everyone connects over TCP, and a socket's path (at most 107 bytes) would
          // fail the start of a cluster in a deep directory (a bench's --store-tmp under a test's scratch).
          "unix_socket_directories = ''",
          'fsync = on',
          'synchronous_commit = on',
          'full_page_writes = on',
          '',
        ].join('\n'),
      );
      try {
        asClusterUser('pg_ctl', ['start', '-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60']);
        running = true;
        break;
      } catch (err) {
        // Another process took the port between freePort() and the bind: try another (the later
        // `port` line in postgresql.conf wins).
        const log = readFileSync(join(dir, 'server.log'), 'utf8');
        if (attempt >= 3 || !/could not bind|Address already in use/.test(log)) throw err;
      }
    }
    return {
      dir,
      port,
      urlOf: (name) => `postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/${name}`,
      restart() {
        asClusterUser('pg_ctl', ['restart', '-D', data, '-m', 'fast', '-l', join(dir, 'server.log'), '-w', '-t', '60']);
      },
      stop() {
        cleanup.release();
        stopNow('fast');
      },
    };
  } catch (err) {
    cleanup.release();
    stopNow('immediate');
    throw err;
  }
}

/**
 * Runs `stop` if the process ends before the cluster was stopped: on exit (a test worker torn down
 * without its afterAll), and (`onSignals`) on SIGTERM or SIGINT, after which the signal is raised again
 * so the process still dies of it.
 * @param {() => void} stop
 * @param {boolean} onSignals
 * @returns {{ release(): void }}
 */
function cleanupWhenTheProcessEnds(stop, onSignals) {
  /** @param {NodeJS.Signals} signal */
  const onSignal = (signal) => {
    release();
    stop();
    process.kill(process.pid, signal);
  };
  const release = () => {
    process.off('exit', stop);
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
  process.on('exit', stop);
  if (onSignals) {
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  return { release };
}

/**
 * Stops the cluster and removes its directory from a process of its own, which outlives this one:
 * a test worker being torn down may be killed before a synchronous stop finished (it was, here).
 * @param {string} data
 * @param {string} dir
 */
function stopDetached(data, dir) {
  const script = 'setpriv "$@" stop -D "$DATA" -m immediate -w -t 60 >/dev/null 2>&1; rm -rf "$DIR"';
  const stopper = spawn('sh', ['-c', script, 'sh', ...clusterCommand('pg_ctl', [])], {
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DATA: data, DIR: dir },
  });
  stopper.unref();
}

/**
 * setpriv's arguments to run PostgreSQL binary `tool` as the cluster's account.
 * @param {string} tool
 * @param {readonly string[]} args
 */
function clusterCommand(tool, args) {
  return [
    `--reuid=${CLUSTER_USER}`,
    `--regid=${CLUSTER_USER}`,
    '--init-groups',
    '--',
    join(POSTGRES_BIN, tool),
    ...args,
  ];
}
