// Starts real fleetpatch processes on 127.0.0.1 — a coordinator and agents — for the demo, the
// end-to-end tests and the benchmark. Plain ESM so scripts and vitest can both import it.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const COORDINATOR_BIN = join(repo, 'packages/coordinator/dist/main.js');
export const AGENT_BIN = join(repo, 'packages/agent/dist/main.js');

/** Polls `probe` until it returns a truthy value or the deadline passes (then throws with `what`). */
export async function waitFor(what, probe, { timeoutMs = 20_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
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
        `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

function track(child, name, logLines) {
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    logLines.push(line);
    if (logLines.length > 2000) logLines.shift();
  });
  child.stderr.on('data', (chunk) => logLines.push(`[${name} stderr] ${chunk.toString().trimEnd()}`));
  return lines;
}

async function stopChild(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts a coordinator on an ephemeral port. `apiTokens` are written to its config file.
 * Resolves once it listens; `.kill()` is a SIGKILL (crash), `.stop()` a graceful SIGTERM.
 */
export async function startCoordinator({
  dataDir,
  apiTokens,
  port = 0,
  tickIntervalMs = 100,
  heartbeatIntervalMs = 1000,
  extraConfig = {},
  env = {},
}) {
  await mkdir(dataDir, { recursive: true });
  const configFile = join(dataDir, 'coordinator.json');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(
    configFile,
    JSON.stringify({ port, dataDir, apiTokens, tickIntervalMs, heartbeatIntervalMs, logLevel: 'info', ...extraConfig }),
  );
  // A restart on a fixed port can find it briefly taken (by a socket of a test running beside it):
  // try again for a few seconds rather than fail on EADDRINUSE.
  for (let attempt = 1; ; attempt++) {
    const started = await spawnCoordinator(configFile, env);
    if (started.ok) return started.coordinator;
    if (port === 0 || attempt >= 20 || !started.logs.some((l) => l.includes('EADDRINUSE'))) throw started.error;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function spawnCoordinator(configFile, env) {
  const child = spawn(process.execPath, [COORDINATOR_BIN, '--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const logs = [];
  const lines = track(child, 'coordinator', logs);
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
 */
export async function issueJoinToken(api, hostId, labels = {}) {
  const { token } = await api.post('/v1/join-tokens', { hostId, labels, uses: 1 });
  return token;
}

/**
 * Starts one agent process confined to `rootDir`, as `hostId`. Its first start enrolls with
 * `joinToken` (passed in the environment, never argv); later starts use the key in `dataDir`. A plain
 * http:// coordinator (these are loopback or test-namespace links) gets `--allow-insecure` unless
 * `allowInsecure` says otherwise.
 */
export function startAgent({
  coordinatorUrl,
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
  for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
  for (const root of allowRoots) args.push('--allow-root', root);
  if (allowInsecure) args.push('--allow-insecure');
  // A short reconnect cap keeps tests that restart the coordinator quick; production caps at 30 s.
  const childEnv = { ...process.env, FLEETPATCH_RECONNECT_MAX_MS: '1000', ...env };
  if (joinToken) childEnv.FLEETPATCH_JOIN_TOKEN = joinToken;
  if (configExtra) childEnv.FLEETPATCH_AGENT_CONFIG = configExtra;
  // `wrap` runs the agent inside something, e.g. ['ip', 'netns', 'exec', 'host-1'] for a test host.
  const [command, ...commandArgs] = [...wrap, process.execPath, ...args];
  const child = spawn(command, commandArgs, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv });
  const logs = [];
  track(child, 'agent', logs);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, logs, exited, stop: () => stopChild(child), kill: () => stopChild(child, 'SIGKILL') };
}

/**
 * A tiny JSON client for the coordinator API. Throws with the server's error body on non-2xx. `ca`
 * (PEM) trusts a private CA for an https:// coordinator: through undici, as Node 20's fetch takes none.
 */
export function apiClient(baseUrl, token, { ca } = {}) {
  const dispatcher = ca ? new UndiciAgent({ connect: { ca } }) : undefined;
  const fetch = dispatcher ? (url, init) => undiciFetch(url, { ...init, dispatcher }) : globalThis.fetch;
  async function call(method, path, body) {
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) {
      const err = new Error(`${method} ${path} → ${res.status}: ${json?.error?.message ?? text}`);
      err.status = res.status;
      err.body = json;
      throw err;
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

/** Waits until the rollout's state is one of `states`; returns its status. */
export function waitForRolloutState(api, rolloutId, states, timeoutMs = 60_000) {
  return waitFor(
    `rollout ${rolloutId} to reach ${states.join('|')}`,
    async () => {
      const status = await api.get(`/v1/rollouts/${rolloutId}`);
      return states.includes(status.rollout.state) ? status : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

export function waitForAgentsOnline(api, ids, timeoutMs = 20_000) {
  return waitFor(
    `agents ${ids.join(', ')} online`,
    async () => {
      const { agents } = await api.get('/v1/agents');
      return ids.every((id) => agents.find((a) => a.id === id)?.online);
    },
    { timeoutMs },
  );
}
