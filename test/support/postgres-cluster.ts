/**
 * A real PostgreSQL 15 for the store's tests: Debian's own binaries (`initdb`, `pg_ctl`), a cluster
 * of its own in a temporary directory, never the package's service. The tests run as root and
 * PostgreSQL refuses to (initdb exits "cannot be run as root"), so the cluster runs as Debian's
 * dedicated `postgres` account through setpriv. It listens on a free port on 127.0.0.1 (its unix
 * socket stays in the temporary directory) with fsync on: durability is what the product sells, so
 * the tests pay for it too. A password (scram) guards it, as a real installation would be.
 *
 * Whoever starts one stops it (the run's one cluster: its global setup, after the last file), and an
 * exit hook stops it and removes its directory if the process ends first (a failed hook, an uncaught
 * error), so no `postgres` is left running. Test files share the run's cluster (`runPostgresCluster`).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  accessSync,
  appendFileSync,
  chownSync,
  constants,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { type Availability, type Requirement, requirement, root } from './requirements.js';

export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';
/** Debian's postgresql-common creates this account; the cluster's files and processes are its. */
const CLUSTER_USER = 'postgres';
/** The cluster's superuser, as the connection URLs name it. */
const SUPERUSER = 'fleetpatch';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's test cluster's maintenance database (postgres-global-setup.ts); empty when no cluster runs. */
    postgresMaintenanceUrl: string;
  }
}

function postgresInstalled(): Availability {
  for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
    try {
      accessSync(join(POSTGRES_BIN, tool), constants.X_OK);
    } catch {
      return { available: false, reason: `${POSTGRES_BIN}/${tool} is missing (apt-get install postgresql)` };
    }
  }
  if (accountIds(CLUSTER_USER) === undefined) {
    return {
      available: false,
      reason: `no "${CLUSTER_USER}" account to run the cluster as (apt-get install postgresql)`,
    };
  }
  return { available: true };
}

/** Debian's PostgreSQL 15 binaries and its `postgres` account; the tests also need `root` to use it. */
export const postgresql: Requirement = requirement('PostgreSQL 15', postgresInstalled());
/** Everything a test that starts a cluster needs. */
export const postgresCluster: readonly Requirement[] = [root, postgresql];

function accountIds(name: string): { uid: number; gid: number } | undefined {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  const [, , uid, gid] = line?.split(':') ?? [];
  return uid === undefined || gid === undefined ? undefined : { uid: Number(uid), gid: Number(gid) };
}

/** What a test needs of a cluster: databases of its own on it. */
export interface PostgresDatabases {
  /** `postgres://fleetpatch:…@127.0.0.1:<port>/postgres`: the maintenance database. */
  readonly url: string;
  /** Creates an empty database (of its own for one test, unless `name` is given) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** The URL of database `name` on this cluster. */
  urlOf(name: string): string;
}

export interface PostgresCluster extends PostgresDatabases {
  /** The temporary directory holding its data, log and unix socket. */
  readonly dir: string;
  readonly port: number;
  /** Restarts the server (fast shutdown: every connection is cut), keeping its data and port. */
  restart(): void;
  /** Stops the server (fast shutdown) and removes its directory; idempotent. */
  stop(): Promise<void>;
}

/** Databases on the cluster whose maintenance database is `maintenanceUrl` (it holds the password). */
export function databasesOn(maintenanceUrl: string): PostgresDatabases {
  const urlOf = (name: string) => {
    const url = new URL(maintenanceUrl);
    url.pathname = `/${name}`;
    return url.toString();
  };
  return {
    url: maintenanceUrl,
    urlOf,
    async createDatabase(name = `test_${process.pid}_${randomBytes(6).toString('hex')}`) {
      // Random by default, not counted: every test file of the run makes its databases on this cluster.
      const client = new pg.Client({ connectionString: maintenanceUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return urlOf(name);
    },
  };
}

/** A port free now on 127.0.0.1; PostgreSQL takes no port 0, so a lost race is retried by the caller. */
async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs a PostgreSQL binary as the cluster's account; throws with its output when it fails. */
function asClusterUser(tool: string, args: readonly string[]): void {
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

/** Initialises and starts a cluster; resolves once it accepts connections. */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const ids = accountIds(CLUSTER_USER);
  if (ids === undefined) throw new Error(`no "${CLUSTER_USER}" account`);
  const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-pg-'));
  const data = join(dir, 'data');
  let running = false;
  const stopNow = (mode: 'fast' | 'immediate') => {
    if (running) spawnSync('setpriv', clusterCommand('pg_ctl', ['stop', '-D', data, '-m', mode, '-w', '-t', '60']));
    running = false;
    rmSync(dir, { recursive: true, force: true });
  };
  const cleanup = cleanupWhenTheProcessEnds(() => {
    if (running) stopDetached(data, dir);
    else rmSync(dir, { recursive: true, force: true });
  });
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
          `unix_socket_directories = '${dir}'`,
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
    let stopping: Promise<void> | undefined;
    return {
      ...databasesOn(`postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/postgres`),
      dir,
      port,
      restart() {
        asClusterUser('pg_ctl', ['restart', '-D', data, '-m', 'fast', '-l', join(dir, 'server.log'), '-w', '-t', '60']);
      },
      stop() {
        stopping ??= Promise.resolve().then(() => {
          cleanup.release();
          stopNow('fast');
        });
        return stopping;
      },
    };
  } catch (err) {
    cleanup.release();
    stopNow('immediate');
    throw err;
  }
}

/**
 * Runs `stop` if the test process ends before the cluster was stopped: on exit (a worker torn down
 * without its afterAll), and on SIGTERM or SIGINT, after which the signal is raised again so the
 * process still dies of it. (A SIGKILLed process runs nothing: its cluster outlives it.)
 */
function cleanupWhenTheProcessEnds(stop: () => void): { release(): void } {
  const onSignal = (signal: NodeJS.Signals) => {
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
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return { release };
}

/**
 * Stops the cluster and removes its directory from a process of its own, which outlives this one:
 * a test worker being torn down may be killed before a synchronous stop finished (it was, here).
 */
function stopDetached(data: string, dir: string): void {
  const script = 'setpriv "$@" stop -D "$DATA" -m immediate -w -t 60 >/dev/null 2>&1; rm -rf "$DIR"';
  const stopper = spawn('sh', ['-c', script, 'sh', ...clusterCommand('pg_ctl', [])], {
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DATA: data, DIR: dir },
  });
  stopper.unref();
}

function clusterCommand(tool: string, args: readonly string[]): string[] {
  return [
    `--reuid=${CLUSTER_USER}`,
    `--regid=${CLUSTER_USER}`,
    '--init-groups',
    '--',
    join(POSTGRES_BIN, tool),
    ...args,
  ];
}

/**
 * The run's one cluster, for a test file: test/support/postgres-global-setup.ts starts it once for
 * every project that lists it, and each file makes databases of its own on it. Starting a cluster
 * per file cost 5–20 s each (initdb, then the server's start), most of some files' run time.
 */
export function runPostgresCluster(): PostgresDatabases {
  const url = inject('postgresMaintenanceUrl');
  if (!url)
    throw new Error(
      "no PostgreSQL cluster for this run: the test file's vitest project must list test/support/postgres-global-setup.ts in globalSetup",
    );
  return databasesOn(url);
}

/** Exported for the helper's own test: whether any `postgres` process still runs from `dir`. */
export function postmasterRunningIn(dir: string): boolean {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').some((line) => line.includes(dir));
}
