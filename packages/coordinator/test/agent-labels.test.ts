/**
 * The labels an admin fixed at enrollment and the labels an agent reports in its hello, over a real
 * socket and the HTTP API: both are shown, apart, and only the admin's select a rollout's hosts
 * unless the rollout asks for the host's word explicitly.
 */
import { AgentDetailSchema, AgentListSchema, RolloutPlanSchema, RolloutStatusSchema } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { connectAsAgent, type RawPeer, sampleHello } from '../../../test/support/raw-agent-socket.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

let hub: HubUnderTest;
const peers: RawPeer[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await hub.close();
});

/** db-1: its join token fixed role=db; its agent says role=web (and canary=yes) in every hello. */
async function lyingHost(): Promise<void> {
  hub = await startHub();
  const key = await hub.register('db-1', { role: 'db' });
  const hello = { ...sampleHello(), labels: { role: 'web', canary: 'yes' } };
  const connected = await connectAsAgent(hub.port, 'db-1', key, { hello });
  peers.push(connected.peer);
  expect(connected.welcomed).toBe(true);
  // The hello is recorded as the coordinator takes it in, not necessarily before the welcome.
  await expect
    .poll(async () => AgentListSchema.parse((await hub.api('GET', '/v1/agents')).body).agents[0]?.reportedLabels)
    .toEqual({ role: 'web', canary: 'yes' });
}

async function planOf(target: Record<string, unknown>): Promise<string[]> {
  const patch = (await hub.api('POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string };
  const created = await hub.api('POST', '/v1/rollouts', { patchId: patch.id, target });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const { rollout } = RolloutStatusSchema.parse(created.body);
  const plan = RolloutPlanSchema.parse((await hub.api('GET', `/v1/rollouts/${rollout.id}/plan`)).body);
  return plan.waves.flatMap((w) => w.hosts);
}

describe('agent labels', () => {
  it('the API shows what the admin set and what the agent reports, apart', async () => {
    await lyingHost();
    const { agents } = AgentListSchema.parse((await hub.api('GET', '/v1/agents')).body);
    expect(agents).toMatchObject([
      { id: 'db-1', labels: { role: 'db' }, reportedLabels: { role: 'web', canary: 'yes' } },
    ]);
    const { agent } = AgentDetailSchema.parse((await hub.api('GET', '/v1/agents/db-1')).body);
    expect(agent).toMatchObject({ labels: { role: 'db' }, reportedLabels: { role: 'web', canary: 'yes' } });
  });

  it('target.labels select by the admin labels; reportedLabels only narrow hosts named otherwise', async () => {
    await lyingHost();

    expect(await planOf({ labels: { role: 'web' } })).toEqual([]);
    expect(await planOf({ labels: { canary: 'yes' } })).toEqual([]);
    expect(await planOf({ labels: { role: 'db' } })).toEqual(['db-1']);
    expect(await planOf({ labels: { role: 'db' }, reportedLabels: { canary: 'yes' } })).toEqual(['db-1']);
    expect(await planOf({ hostIds: ['db-1'], reportedLabels: { role: 'web' } })).toEqual(['db-1']);
    expect(await planOf({ labels: { role: 'db' }, excludeLabels: { canary: 'yes' } })).toEqual([]);

    const alone = await hub.api('POST', '/v1/rollouts', {
      patchId: 'pat_x',
      target: { reportedLabels: { role: 'web' } },
    });
    expect(alone.status).toBe(400);
    expect(JSON.stringify(alone.body)).toContain('reportedLabels only narrow a target');
    const withAll = await hub.api('POST', '/v1/rollouts', {
      patchId: 'pat_x',
      target: { all: true, reportedLabels: { role: 'web' } },
    });
    expect(withAll.status).toBe(400);
  });
});
