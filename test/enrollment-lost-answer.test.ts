/**
 * An enrollment whose answer never reached the agent (a proxy timed out, the connection dropped after
 * the coordinator committed): the coordinator holds the agent's key and the single-use join token is
 * spent. The agent kept its key in its data dir (enrollment-key.json), so its next attempt — here a
 * fresh agent process, as after a restart — offers the same key, gets the same answer, and connects.
 * With a new key it would find the host taken (409) for ever.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { enrollProofPayload, generateAgentKeyPair, loadPrivateKey, signPayload } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FleetHarness } from './support/fleet-harness.js';

let work: string;
let fleet: FleetHarness;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-enroll-lost-'));
  fleet = await FleetHarness.start(join(work, 'coordinator'));
});

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

it('an agent whose enrollment answer was lost enrolls with the same key on its next start, and connects', async () => {
  const joinToken = await fleet.register('lost-1', { role: 'web' });
  const dataDir = join(work, 'agent-data');
  const rootDir = join(work, 'root');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await mkdir(rootDir, { recursive: true });

  // The first attempt: the key kept, then offered, and taken by the coordinator, whose answer is lost.
  const pair = generateAgentKeyPair();
  await writeFile(join(dataDir, 'enrollment-key.json'), JSON.stringify(pair), { mode: 0o600 });
  const proof = signPayload(loadPrivateKey(pair.privateKeyPem), enrollProofPayload('lost-1', pair.publicKey));
  const first = await fetch(`${fleet.coordinator.url}/v1/enroll`, {
    method: 'POST',
    headers: { authorization: `Bearer ${joinToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ hostId: 'lost-1', publicKey: pair.publicKey, proof }),
  });
  expect(first.status).toBe(201);

  const agent = fleet.spawnAgent({ id: 'lost-1', joinToken, dataDir, rootDir });
  await fleet.waitOnline(['lost-1']);
  expect(agent.logs.join('\n')).toContain('enrolled with the coordinator');
  const detail = (await fleet.api.get('/v1/agents/lost-1')) as { agent: unknown };
  expect(detail.agent).toMatchObject({ id: 'lost-1', labels: { role: 'web' }, online: true });
  // One enrollment on the record: the repeat wrote nothing.
  const { events } = (await fleet.api.get('/v1/events?limit=1000')) as { events: { type: string }[] };
  expect(events.filter((e) => e.type === 'agent.enrolled')).toHaveLength(1);
  expect(events.filter((e) => e.type === 'agent.enroll_refused')).toHaveLength(0);
});
