// @ts-check
// Starts real fleetpatch processes on 127.0.0.1 — a coordinator and agents — for the demo, the
// end-to-end tests and the benchmark. Plain ESM so scripts and vitest can both import it; typed in
// JSDoc against the shared schemas' types, so `tsc` checks it and its callers alike.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';

/**
 * @import { ChildProcess } from 'node:child_process'
 * @import { Interface } from 'node:readline'
 * @import { AgentList, JoinTokenCreated, RolloutState, RolloutStatus } from '@fleetpatch/shared'
 */

/**
 * @typedef {object} ApiTokenConfig
 * @property {string} name
 * @property {string} token
 * @property {'viewer' | 'operator' | 'approver' | 'admin'} role
 */

/**
 * @typedef {object} CoordinatorProcess
 * @property {string} url
 * @property {number} port
 * @property {ChildProcess} child
 * @property {string[]} logs stdout lines (pino JSON) and stderr chunks, newest last, capped.
 * @property {() => Promise<void>} stop Graceful SIGTERM.
 * @property {() => Promise<void>} kill SIGKILL: a crash.
 */

/**
 * @typedef {object} AgentExit
 * @property {number | null} code
 * @property {NodeJS.Signals | null} signal
 */

/**
 * @typedef {object} AgentProcess
 * @property {ChildProcess} child
 * @property {string[]} logs
 * @property {Promise<AgentExit>} exited Resolves once the process has exited, however it ended.
 * @property {() => Promise<void>} stop
 * @property {() => Promise<void>} kill
 */

/**
 * A JSON client of the coordinator API. `get`/`post` answer the parsed body as `T`: name the
 * shared type of the route's response schema (`RolloutStatus`, `AgentList`, `EventPage`, …).
 * @typedef {object} ApiClient
 * @property {<T = unknown>(path: string) => Promise<T>} get
 * @property {<T = unknown>(path: string, body?: unknown) => Promise<T>} post
 * @property {(method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<Response>} raw
 */

/** Thrown by ApiClient calls on a non-2xx answer. */
export class ApiError extends Error {
  /**
   * @param {string} message
   * @param {number} status
   * @param {unknown} body
   */
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const COORDINATOR_BIN = join(repo, 'packages/coordinator/dist/bin/fleetpatch-coordinator.js');
export const AGENT_BIN = join(repo, 'packages/agent/dist/bin/fleetpatch-agent.js');
/** tsc's output, unbundled: the same code, each module its own file (a CPU profile then names them). */
export const COORDINATOR_UNBUNDLED = join(repo, 'packages/coordinator/dist/main.js');

/**
 * Polls `probe` until it returns a truthy value or the deadline passes (then throws with `what`).
 * @template T
 * @param {string} what
 * @param {() => T | Promise<T>} probe
 * @param {{ timeoutMs?: number, intervalMs?: number }} [options]
 * @returns {Promise<NonNullable<T>>}
 */
export async function waitFor(what, probe, { timeoutMs = 20_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  /** @type {unknown} */
  let lastError;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${/** @type {Error} */ (lastError).message}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * @param {ChildProcess} child
 * @param {string} name
 * @param {string[]} logLines
 * @returns {Interface}
 */
function track(child, name, logLines) {
  const lines = createInterface({ input: /** @type {NodeJS.ReadableStream} */ (child.stdout) });
  lines.on('line', (line) => {
    logLines.push(line);
    if (logLines.length > 2000) logLines.shift();
  });
  child.stderr?.on('data', (chunk) => logLines.push(`[${name} stderr] ${chunk.toString().trimEnd()}`));
  return lines;
}

/**
 * @param {ChildProcess} child
 * @param {NodeJS.Signals} [signal]
 */
async function stopChild(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The coordinator's reconnect grace here (see startCoordinator). */
const RECONNECT_GRACE_SECONDS = 3;

/**
 * Starts a coordinator on an ephemeral port. `apiTokens` are written to its config file.
 * Resolves once it listens; `.kill()` is a SIGKILL (crash), `.stop()` a graceful SIGTERM.
 * @param {object} options
 * @param {string} options.dataDir
 * @param {ApiTokenConfig[]} options.apiTokens
 * @param {number} [options.port]
 * @param {number} [options.tickIntervalMs]
 * @param {number} [options.heartbeatIntervalMs]
 * @param {Record<string, unknown>} [options.extraConfig]
 * @param {Record<string, string>} [options.env]
 * @param {string[]} [options.wrap] A command the coordinator runs inside, e.g. strace (see startAgent).
 * @param {string} [options.bin] The program to run: the bundled coordinator unless told otherwise.
 * @returns {Promise<CoordinatorProcess>}
 */
export async function startCoordinator({
  dataDir,
  apiTokens,
  port = 0,
  tickIntervalMs = 100,
  heartbeatIntervalMs = 1000,
  extraConfig = {},
  env = {},
  wrap = [],
  bin = COORDINATOR_BIN,
}) {
  await mkdir(dataDir, { recursive: true });
  const configFile = join(dataDir, 'coordinator.json');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(
    configFile,
    JSON.stringify({
      port,
      dataDir,
      apiTokens,
      tickIntervalMs,
      heartbeatIntervalMs,
      // The agents startAgent starts come back within a second of a drop (FLEETPATCH_RECONNECT_MAX_MS):
      // a restarted coordinator waits 3 s for them, not the 60 s a fleet on the default 30 s backoff needs.
      reconnectGraceSeconds: RECONNECT_GRACE_SECONDS,
      logLevel: 'info',
      ...extraConfig,
    }),
  );
  // A restart on a fixed port can find it briefly taken (by a socket of a test running beside it):
  // try again for a few seconds rather than fail on EADDRINUSE.
  for (let attempt = 1; ; attempt++) {
    const started = await spawnCoordinator(bin, configFile, env, wrap);
    if (started.ok) return started.coordinator;
    if (port === 0 || attempt >= 20 || !started.logs.some((l) => l.includes('EADDRINUSE'))) throw started.error;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * @param {string} bin
 * @param {string} configFile
 * @param {Record<string, string>} env
 * @param {string[]} wrap
 * @returns {Promise<{ ok: true, coordinator: CoordinatorProcess } | { ok: false, error: unknown, logs: string[] }>}
 */
async function spawnCoordinator(bin, configFile, env, wrap) {
  const [command = process.execPath, ...commandArgs] = [...wrap, process.execPath, bin, '--config', configFile];
  const child = spawn(command, commandArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  /** @type {string[]} */
  const logs = [];
  const lines = track(child, 'coordinator', logs);
  /** @type {Promise<{ port: number, address: unknown }>} */
  const listening = new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      if (line.includes('"coordinator listening"')) resolve(JSON.parse(line));
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`coordinator exited early (${code ?? signal}):\n${logs.join('\n')}`)),
    );
  });
  let actualPort;
  let scheme;
  try {
    const line = await listening;
    actualPort = line.port;
    scheme = String(line.address).startsWith('https:') ? 'https' : 'http';
  } catch (error) {
    return { ok: false, error, logs };
  }
  const url = `${scheme}://127.0.0.1:${actualPort}`;
  return {
    ok: true,
    coordinator: {
      url,
      port: actualPort,
      child,
      logs,
      stop: () => stopChild(child),
      kill: () => stopChild(child, 'SIGKILL'),
    },
  };
}

/**
 * Issues a single-use join token for one host with `labels` fixed (the admin's API client `api`):
 * what an agent needs to enroll the first time it starts.
 * @param {ApiClient} api
 * @param {string} hostId
 * @param {Record<string, string>} [labels]
 * @returns {Promise<string>}
 */
export async function issueJoinToken(api, hostId, labels = {}) {
  /** @type {JoinTokenCreated} */
  const { token } = await api.post('/v1/join-tokens', { hostId, labels, uses: 1 });
  return token;
}

/**
 * Starts one agent process confined to `rootDir`, as `hostId`. Its first start enrolls with
 * `joinToken` (passed in the environment, never argv); later starts use the key in `dataDir`. A plain
 * http:// coordinator (these are loopback or test-namespace links) gets `--allow-insecure` unless
 * `allowInsecure` says otherwise.
 * @param {object} options
 * @param {string} options.coordinatorUrl
 * @param {string[]} [options.moreCoordinatorUrls] Further coordinators of its group, tried in turn after `coordinatorUrl`.
 * @param {boolean} [options.allowInsecure] Pass --allow-insecure; defaults to true for an http:// or ws:// coordinatorUrl.
 * @param {string} options.hostId
 * @param {string} [options.joinToken] Used on the first start only, to enroll; passed in the environment.
 * @param {string} options.dataDir
 * @param {string} options.rootDir
 * @param {Record<string, string>} [options.labels]
 * @param {string[]} [options.allowRoots]
 * @param {string} [options.configExtra] Path of a JSON agent config file, passed as FLEETPATCH_AGENT_CONFIG.
 * @param {Record<string, string>} [options.env]
 * @param {string[]} [options.wrap] A command the agent runs inside, e.g. ['ip', 'netns', 'exec', 'host-1'].
 * @returns {AgentProcess}
 */
export function startAgent({
  coordinatorUrl,
  moreCoordinatorUrls = [],
  allowInsecure = /^(?:http|ws):/.test(coordinatorUrl),
  hostId,
  joinToken,
  dataDir,
  rootDir,
  labels = {},
  allowRoots = ['/etc', '/opt'],
  configExtra,
  env = {},
  wrap = [],
}) {
  const args = [
    AGENT_BIN,
    '--coordinator',
    coordinatorUrl,
    '--host-id',
    hostId,
    '--data-dir',
    dataDir,
    '--root-dir',
    rootDir,
  ];
  for (const url of moreCoordinatorUrls) args.push('--coordinator', url);
  for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
  for (const root of allowRoots) args.push('--allow-root', root);
  if (allowInsecure) args.push('--allow-insecure');
  // A short reconnect cap keeps tests that restart the coordinator quick; production caps at 30 s.
  /** @type {NodeJS.ProcessEnv} */
  const childEnv = { ...process.env, FLEETPATCH_RECONNECT_MAX_MS: '1000', ...env };
  if (joinToken) childEnv.FLEETPATCH_JOIN_TOKEN = joinToken;
  if (configExtra) childEnv.FLEETPATCH_AGENT_CONFIG = configExtra;
  // `wrap` runs the agent inside something, e.g. ['ip', 'netns', 'exec', 'host-1'] for a test host.
  const [command = process.execPath, ...commandArgs] = [...wrap, process.execPath, ...args];
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  /** @type {string[]} */
  const logs = [];
  track(child, 'agent', logs);
  /** @type {Promise<AgentExit>} */
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, logs, exited, stop: () => stopChild(child), kill: () => stopChild(child, 'SIGKILL') };
}

/**
 * A tiny JSON client for the coordinator API. Throws with the server's error body on non-2xx. `ca`
 * (PEM) trusts a private CA for an https:// coordinator: through undici, as Node 20's fetch takes none.
 * @param {string} baseUrl
 * @param {string} token
 * @param {{ ca?: string }} [options]
 * @returns {ApiClient}
 */
export function apiClient(baseUrl, token, { ca } = {}) {
  const dispatcher = ca ? new UndiciAgent({ connect: { ca } }) : undefined;
  const fetch = dispatcher
    ? /** @param {string} url @param {RequestInit} init */ (url, init) => undiciFetch(url, { ...init, dispatcher })
    : globalThis.fetch;
  /**
   * @template T
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   * @returns {Promise<T>}
   */
  async function call(method, path, body) {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) {
      throw new ApiError(`${method} ${path} → ${res.status}: ${json?.error?.message ?? text}`, res.status, json);
    }
    return json;
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body ?? {}),
    raw: (method, path, body, headers = {}) =>
      fetch(`${baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
  };
}

/**
 * Waits until the rollout's state is one of `states`; returns its status.
 * @param {Pick<ApiClient, 'get'>} api
 * @param {string} rolloutId
 * @param {readonly RolloutState[]} states
 * @param {number} [timeoutMs]
 * @returns {Promise<RolloutStatus>}
 */
export async function waitForRolloutState(api, rolloutId, states, timeoutMs = 60_000) {
  /** @type {RolloutStatus | undefined} */
  let last;
  try {
    return await waitFor(
      `rollout ${rolloutId} to reach ${states.join('|')}`,
      async () => {
        /** @type {RolloutStatus} */
        const status = await api.get(`/v1/rollouts/${rolloutId}`);
        last = status;
        return states.includes(status.rollout.state) ? status : undefined;
      },
      { timeoutMs, intervalMs: 50 },
    );
  } catch (err) {
    // Say where it stood: a timeout alone does not tell a stall from a slow machine.
    if (!last) throw err;
    throw new Error(`${/** @type {Error} */ (err).message}; it stood at ${describeRollout(last)}`);
  }
}

/**
 * One line on where a rollout stands: its state and each host's (the first 20).
 * @param {RolloutStatus} status
 * @returns {string}
 */
function describeRollout(status) {
  const hosts = status.waves
    .flatMap((wave) => wave.hosts)
    .slice(0, 20)
    .map((host) => `${host.hostId} ${host.state}${host.reason ? ` (${host.reason})` : ''}`);
  return `${status.rollout.state}${status.rollout.stateReason ? ` (${status.rollout.stateReason})` : ''}; hosts: ${hosts.join(', ') || 'none'}`;
}

/**
 * Waits until every agent of `ids` is online.
 * @param {Pick<ApiClient, 'get'>} api
 * @param {readonly string[]} ids
 * @param {number} [timeoutMs]
 * @returns {Promise<true>}
 */
export function waitForAgentsOnline(api, ids, timeoutMs = 20_000) {
  return waitFor(
    `agents ${ids.join(', ')} online`,
    async () => {
      /** @type {AgentList} */
      const { agents } = await api.get('/v1/agents');
      return ids.every((id) => agents.find((a) => a.id === id)?.online) || undefined;
    },
    { timeoutMs },
  );
}
