/**
 * Issue "TLS": the coordinator serves HTTPS/WSS from its configured certificate (swapped on SIGHUP);
 * the agent trusts only its configured CA (and pin), refuses plain ws:// unless told, and says clearly
 * why it refused a certificate; the CLI reaches an HTTPS coordinator with --ca-file.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import type { AgentList, Patch, RolloutStatus } from '@fleetpatch/shared';
import { APPLY_END_STATES } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  type AgentProcess,
  type ApiClient,
  apiClient,
  type CoordinatorProcess,
  issueJoinToken,
  startAgent,
  startCoordinator,
  waitFor,
  waitForAgentsOnline,
  waitForRolloutState,
} from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout, sha256Of } from '../scripts/lib/sample-specs.mjs';
import { exitWithin, jsonLines } from './support/fleet-harness.js';
import { describeNeeding } from './support/requirements.js';
import { createTestCa, openssl, type TestCa, type TestCertificate } from './support/test-ca.js';

const ADMIN = 'tls-admin-token-00000001';
/** Well-formed but issued by nobody: these agents never get past TLS to use it. */
const UNKNOWN_JOIN_TOKEN = `fpj_${'x'.repeat(43)}`;
const CLI = join(import.meta.dirname, '..', 'packages/cli/dist/bin/fleetpatch.js');
const FILE = '/etc/app/tls.conf';
const OLD = 'tls = off\n';
const NEW = 'tls = on\n';
const DAY_MS = 24 * 3600 * 1000;

describeNeeding([openssl], 'TLS between agents, CLI and coordinator', () => {
  let work: string;
  let ca: TestCa;
  let foreignCa: TestCa;
  let served: TestCertificate;
  let rotated: TestCertificate;
  /** The files the main coordinator's config names; SIGHUP tests overwrite them. */
  let live: { certFile: string; keyFile: string };
  let coordinator: CoordinatorProcess;
  let otherHostCoordinator: CoordinatorProcess;
  let expiredCoordinator: CoordinatorProcess;
  let api: ApiClient;
  const agents: AgentProcess[] = [];
  const coordinators: CoordinatorProcess[] = [];

  async function tlsCoordinator(name: string, certificate: TestCertificate): Promise<CoordinatorProcess> {
    const started = await startCoordinator({
      dataDir: join(work, name),
      apiTokens: [{ name: 'admin', token: ADMIN, role: 'admin' }],
      extraConfig: { minApprovals: 0, tls: { certFile: certificate.certFile, keyFile: certificate.keyFile } },
    });
    coordinators.push(started);
    return started;
  }

  /** Starts an agent with a config file holding `tls` (and anything else in `config`). */
  async function agent(
    id: string,
    coordinatorUrl: string,
    config: Record<string, unknown>,
    options: { joinToken?: string; logLevel?: string; allowInsecure?: boolean } = {},
  ): Promise<AgentProcess> {
    const dir = join(work, 'agents', id);
    await mkdir(join(dir, 'root', 'etc/app'), { recursive: true });
    await writeFile(join(dir, 'root', FILE), OLD);
    await writeFile(join(dir, 'agent.json'), JSON.stringify(config));
    const joinToken = options.joinToken ?? (await issueJoinToken(api, id));
    const started = startAgent({
      coordinatorUrl,
      hostId: id,
      joinToken,
      dataDir: join(dir, 'data'),
      rootDir: join(dir, 'root'),
      configExtra: join(dir, 'agent.json'),
      env: { FLEETPATCH_LOG_LEVEL: options.logLevel ?? 'info' },
      ...(options.allowInsecure === undefined ? {} : { allowInsecure: options.allowInsecure }),
    });
    agents.push(started);
    return started;
  }

  /** Fingerprint of the certificate a brand-new TLS connection to `port` is served. */
  async function servedFingerprint(port: number): Promise<string> {
    const socket = connect({ host: '127.0.0.1', port, ca: await readFile(ca.caFile, 'utf8') });
    try {
      await once(socket, 'secureConnect');
      return socket.getPeerCertificate().fingerprint256;
    } finally {
      socket.destroy();
    }
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-tls-'));
    ca = createTestCa(work, 'fleet-ca');
    foreignCa = createTestCa(work, 'foreign-ca');
    served = ca.issue('coordinator');
    rotated = ca.issue('coordinator-rotated');
    const otherHost = ca.issue('other-host', { sans: 'DNS:other.example' });
    const expired = ca.issue('expired', {
      notBefore: new Date(Date.now() - 10 * DAY_MS),
      notAfter: new Date(Date.now() - DAY_MS),
    });
    live = { certFile: join(work, 'live.pem'), keyFile: join(work, 'live.key') };
    await copyFile(served.certFile, live.certFile);
    await copyFile(served.keyFile, live.keyFile);
    [coordinator, otherHostCoordinator, expiredCoordinator] = await Promise.all([
      tlsCoordinator('coordinator', { ...served, ...live }),
      tlsCoordinator('other-host', otherHost),
      tlsCoordinator('expired', expired),
    ]);
    api = apiClient(coordinator.url, ADMIN, { ca: await readFile(ca.caFile, 'utf8') });
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(coordinators.map((c) => c.stop()));
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('serves https:// and says so in its listening line', () => {
    expect(coordinator.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const started = jsonLines(coordinator.logs).find((l) => l.msg === 'serving TLS');
    expect(started?.fingerprint256).toBe(served.fingerprint256);
  });

  it('connects an agent that trusts the CA over WSS, and applies a file rollout through it', async () => {
    await agent('good', coordinator.url, { tls: { caFile: ca.caFile } });
    await waitForAgentsOnline(api, ['good']);
    const patch = await api.post<Patch>(
      '/v1/patches',
      samplePatch({
        title: 'TLS on',
        path: FILE,
        content: NEW,
        expectedPriorSha256: sha256Of(OLD),
        health: { checks: [], intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 10 },
      }),
    );
    const created = await api.post<RolloutStatus>(
      '/v1/rollouts',
      sampleRollout(patch.id, { target: { hostIds: ['good'] }, waves: [1], requiredApprovals: 0, bakeSeconds: 0 }),
    );
    await api.post(`/v1/rollouts/${created.rollout.id}/start`);
    const done = await waitForRolloutState(api, created.rollout.id, APPLY_END_STATES, 30_000);
    expect(done.rollout.state, done.rollout.stateReason ?? '').toBe('succeeded');
    expect(await readFile(join(work, 'agents/good/root', FILE), 'utf8')).toBe(NEW);
  });

  it('accepts a pin of the coordinator certificate written as openssl prints it (colons, upper case)', async () => {
    expect(served.fingerprint256).toMatch(/^(?:[0-9A-F]{2}:){31}[0-9A-F]{2}$/); // as openssl prints it
    const pinned = await agent('pinned', coordinator.url, {
      tls: { caFile: ca.caFile, pinSha256: served.fingerprint256 },
    });
    await waitForAgentsOnline(api, ['pinned']);
    // The coordinator may list it online a moment before the agent's own log line comes through its pipe.
    await waitFor('the agent to log its connection', () =>
      jsonLines(pinned.logs).some((l) => l.msg === 'connected to coordinator'),
    );
    const lines = jsonLines(pinned.logs);
    expect(lines.some((l) => l.msg === 'connected to coordinator')).toBe(true);
    expect(lines.filter((l) => String(l.msg).startsWith('coordinator certificate refused'))).toEqual([]);
    await pinned.stop();
  });

  // Each refusal: the agent logs one clear error naming the reason, later redials only at debug,
  // and never gets through.
  const refusals = [
    {
      name: 'a certificate from a CA the agent was not told to trust',
      reason: 'unknown CA (not signed by tls.caFile or the system store)',
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      setup: () => ({ url: coordinator.url, config: { tls: { caFile: foreignCa.caFile } }, registered: true }),
    },
    {
      name: 'a certificate for another host name',
      reason: 'host name mismatch',
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
      setup: () => ({ url: otherHostCoordinator.url, config: { tls: { caFile: ca.caFile } }, registered: false }),
    },
    {
      name: 'an expired certificate',
      reason: 'expired',
      code: 'CERT_HAS_EXPIRED',
      setup: () => ({ url: expiredCoordinator.url, config: { tls: { caFile: ca.caFile } }, registered: false }),
    },
    {
      name: 'a certificate that is not the pinned one',
      reason: 'pin mismatch',
      code: 'ERR_FLEETPATCH_PIN_MISMATCH',
      setup: () => ({
        url: coordinator.url,
        config: { tls: { caFile: ca.caFile, pinSha256: rotated.fingerprint256.replace(/:/g, '').toLowerCase() } },
        registered: true,
      }),
    },
  ];

  it.each(refusals)('refuses $name with a clear log line', async ({ reason, code, setup }) => {
    const { url, config, registered } = setup();
    const id = `refused-${code.toLowerCase().replace(/_/g, '-')}`;
    if (registered) {
      // Enrolled through the trusted coordinator first: the refusal then happens on the agent socket.
      const enrolled = await agent(id, coordinator.url, { tls: { caFile: ca.caFile } });
      await waitForAgentsOnline(api, [id]);
      await enrolled.stop();
    }
    const refused = await agent(id, url, config, { logLevel: 'debug', joinToken: UNKNOWN_JOIN_TOKEN });
    const message = `coordinator certificate refused: ${reason}`;
    const lines = () => jsonLines(refused.logs).filter((l) => l.msg === message);
    // A second dial, logged at debug (20) only: the operator is told once, not once per retry.
    await waitFor(`a repeated "${message}" in the agent log`, () => lines().length >= 2);
    expect(lines().map((l) => l.level)).toEqual([
      50,
      ...lines()
        .slice(1)
        .map(() => 20),
    ]);
    expect(lines()[0]?.code).toBe(code);
    if (code === 'ERR_FLEETPATCH_PIN_MISMATCH') {
      expect(lines()[0]).toMatchObject({
        expected: rotated.fingerprint256.replace(/:/g, '').toLowerCase(),
        got: served.fingerprint256.replace(/:/g, '').toLowerCase(),
      });
    }
    expect(jsonLines(refused.logs).some((l) => l.msg === 'connected to coordinator')).toBe(false);
    if (registered) {
      const { agents: listed } = await api.get<AgentList>('/v1/agents');
      expect(listed.find((a) => a.id === id)?.online).toBe(false);
    }
    await refused.stop();
  });

  it('refuses a plain ws:// coordinator unless allowInsecure, exiting 2 with how to fix it', async () => {
    const refused = await agent(
      'plain',
      'ws://127.0.0.1:9',
      {},
      { joinToken: UNKNOWN_JOIN_TOKEN, allowInsecure: false },
    );
    const exit = await exitWithin(refused, 10_000, 'an insecure coordinator URL');
    expect(exit.code).toBe(2);
    expect(refused.logs.join('\n')).toContain(
      'an http:// or ws:// coordinator URL is not encrypted: the join token and every order would cross the network in clear.',
    );
    expect(refused.logs.join('\n')).toContain('--allow-insecure');
  });

  it('connects over plain HTTP with --allow-insecure, and warns once at start', async () => {
    const plain = await startCoordinator({
      dataDir: join(work, 'plain'),
      apiTokens: [{ name: 'admin', token: ADMIN, role: 'admin' }],
    });
    coordinators.push(plain);
    const plainApi = apiClient(plain.url, ADMIN);
    const joinToken = await issueJoinToken(plainApi, 'insecure');
    const insecure = await agent('insecure', plain.url, {}, { joinToken, allowInsecure: true });
    await waitForAgentsOnline(plainApi, ['insecure']);
    const warnings = jsonLines(insecure.logs).filter((l) => String(l.msg).startsWith('allowInsecure:'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.level).toBe(40);
    await insecure.stop();
    await plain.stop();
  });

  it('lets the CLI talk HTTPS with --ca-file, and says why without it', async () => {
    const run = async (args: string[]) => {
      const child = spawn(process.execPath, [CLI, ...args, '--url', coordinator.url, '--token', ADMIN], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
      });
      child.stderr.on('data', (chunk) => {
        out += chunk;
      });
      const [code] = (await once(child, 'exit')) as [number | null];
      return { code, out };
    };
    const trusted = await run(['agents', '--json', '--ca-file', ca.caFile]);
    expect(trusted.code, trusted.out).toBe(0);
    expect(trusted.out).toContain('"good"');
    const untrusted = await run(['agents']);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.out).toContain('certificate not trusted (pass --ca-file)');
  });

  it('swaps in a renewed certificate on SIGHUP without dropping connected agents', async () => {
    expect(await servedFingerprint(coordinator.port)).toBe(served.fingerprint256);
    await copyFile(rotated.certFile, live.certFile);
    await copyFile(rotated.keyFile, live.keyFile);
    coordinator.child.kill('SIGHUP');
    const reloaded = await waitFor('the reload log line', () =>
      jsonLines(coordinator.logs).find((l) => l.msg === 'TLS certificate reloaded'),
    );
    expect(reloaded.fingerprint256).toBe(rotated.fingerprint256);
    expect(await servedFingerprint(coordinator.port)).toBe(rotated.fingerprint256);
    const { agents: listed } = await api.get<AgentList>('/v1/agents');
    expect(listed.find((a) => a.id === 'good')?.online).toBe(true);
  });

  it('keeps the current certificate when SIGHUP finds a certificate and key that do not match', async () => {
    await copyFile(served.keyFile, live.keyFile); // the old key beside the new certificate
    coordinator.child.kill('SIGHUP');
    const refused = await waitFor('the refused reload log line', () =>
      jsonLines(coordinator.logs).find((l) => l.msg === 'TLS reload refused: still serving the previous certificate'),
    );
    expect(refused.level).toBe(50);
    expect(JSON.stringify(refused.err)).toContain('is not the key of the certificate');
    expect(await servedFingerprint(coordinator.port)).toBe(rotated.fingerprint256);
  });

  it('will not start on a certificate and key that do not match (exit 2, names the files)', async () => {
    await expect(
      startCoordinator({
        dataDir: join(work, 'mismatched'),
        apiTokens: [],
        extraConfig: { tls: { certFile: served.certFile, keyFile: rotated.keyFile } },
      }),
    ).rejects.toThrow(/exited early \(2\)[\s\S]*is not the key of the certificate in/);
  });
});
