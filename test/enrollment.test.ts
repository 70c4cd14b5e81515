/**
 * Enrollment end to end, with the real binaries: an agent enrolls once with a join token and then
 * needs none; revoked, it is cut off at once; re-enrolled out of band with a replace join token
 * (`fleetpatch-agent enroll`), the running agent picks its new key up by itself. No secret ever
 * shows in a process's argv, its logs or the audit trail.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AgentDetail, EventPage, JoinTokenCreated } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BIN, waitFor } from '../scripts/lib/local-fleet.mjs';
import { FleetHarness } from './support/fleet-harness.js';

const HOST = 'enroll-1';

let work: string;
let fleet: FleetHarness;
let dataDir: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-enrollment-'));
  dataDir = join(work, HOST, 'data');
  await mkdir(join(work, HOST, 'root', 'etc'), { recursive: true });
  fleet = await FleetHarness.start(join(work, 'coordinator'));
});

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function online(): Promise<boolean> {
  const { agent } = await fleet.api.get<AgentDetail>(`/v1/agents/${HOST}`);
  return agent.online;
}

describe('an agent with a join token', () => {
  const secrets: string[] = [];

  it('enrolls on first start, keeps its own key 0600, and never shows the token in argv or logs', async () => {
    const joinToken = await fleet.register(HOST, { role: 'web' });
    secrets.push(joinToken);
    const agent = fleet.spawnAgent({ id: HOST, joinToken, dataDir, rootDir: join(work, HOST, 'root') });
    await fleet.waitOnline([HOST]);
    const credential = await stat(join(dataDir, 'credential.json'));
    expect(credential.mode & 0o777).toBe(0o600);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    const argv = await readFile(`/proc/${agent.child.pid}/cmdline`, 'utf8');
    expect(argv).not.toContain(joinToken);
    expect(argv).toContain('--host-id');
    const { privateKeyPem } = JSON.parse(await readFile(join(dataDir, 'credential.json'), 'utf8'));
    secrets.push(privateKeyPem.split('\n')[1]);
    const { agent: view } = await fleet.api.get<AgentDetail>(`/v1/agents/${HOST}`);
    expect(view.labels).toEqual({ role: 'web' });
    expect(view.enrolledAt).not.toBeNull();
  });

  it('restarts without any join token: the key in its data dir is enough', async () => {
    const credential = await readFile(join(dataDir, 'credential.json'), 'utf8');
    const { agent: enrolled } = await fleet.api.get<AgentDetail>(`/v1/agents/${HOST}`);
    await fleet.stopAgents();
    await waitFor('the stopped agent to be offline', async () => !(await online()), { timeoutMs: 10_000 });
    fleet.spawnAgent({ id: HOST, dataDir, rootDir: join(work, HOST, 'root') });
    await fleet.waitOnline([HOST]);
    // Back with the key it had: no second enrollment, no new key.
    expect(await readFile(join(dataDir, 'credential.json'), 'utf8')).toBe(credential);
    const { agent: restarted } = await fleet.api.get<AgentDetail>(`/v1/agents/${HOST}`);
    expect(restarted).toMatchObject({ online: true, enrolledAt: enrolled.enrolledAt });
  });

  it('is cut off at once when revoked, and comes back by itself once re-enrolled with a replace token', async () => {
    await fleet.api.post(`/v1/agents/${HOST}/revoke`);
    await waitFor('the revoked agent to be offline', async () => !(await online()), { timeoutMs: 10_000 });
    const { token } = await fleet.api.post<JoinTokenCreated>('/v1/join-tokens', { hostId: HOST, replace: true });
    secrets.push(token);
    // On the host, out of band: a new key, written only once the coordinator has accepted it.
    const child = spawn(
      process.execPath,
      [AGENT_BIN, 'enroll', '--coordinator', fleet.coordinator.url, '--host-id', HOST, '--data-dir', dataDir],
      {
        env: { ...process.env, FLEETPATCH_JOIN_TOKEN: token, FLEETPATCH_ALLOW_INSECURE: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const [code] = (await once(child, 'exit')) as [number];
    expect(code, output).toBe(0);
    expect(output).toContain(`enrolled ${HOST} (replacing its previous key)`);
    // The running agent was refused with 4401, re-reads its credential, and dials with the new key.
    await waitFor('the re-enrolled agent to be back online', online, { timeoutMs: 20_000 });
    const { events } = await fleet.api.get<EventPage>('/v1/events?limit=1000');
    const mine = events.filter((e) => e.hostId === HOST).map((e) => e.type);
    expect(mine).toEqual(expect.arrayContaining(['agent.enrolled', 'agent.revoked', 'agent.reenrolled']));
  });

  it('never wrote a join token or its private key to a log or the audit trail', async () => {
    const { events } = await fleet.api.get<EventPage>('/v1/events?limit=1000');
    const everything = [JSON.stringify(events), ...fleet.coordinator.logs, ...fleet.agentLogs()].join('\n');
    for (const secret of secrets) expect(everything).not.toContain(secret.replace(/^fpj_/, ''));
  });
});
