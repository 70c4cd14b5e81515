/**
 * A rollout targeted `{ exposedTo: { source, fixed } }`: the plan shows the exposed hosts (and names
 * those it cannot judge), start freezes them, later inventories change nothing, and the status links
 * the compliance view.
 */
import {
  complianceUrl,
  type EventPage,
  type InstalledPackage,
  inventoryDigest,
  type RolloutPlan,
  type RolloutStatus,
} from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enrollAgent } from './support/enroll-agent.js';
import { binary, FIXED, opensslHost, VULNERABLE } from './support/sample-inventory.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

let coordinator: TestCoordinator;
const EXPOSED_TO = { source: 'openssl', fixed: FIXED };

beforeEach(async () => {
  coordinator = await startTestCoordinator({ minApprovals: 0 });
  const hosts: [string, Record<string, string>, InstalledPackage[] | null][] = [
    ['web-1', { tier: 'web' }, opensslHost(VULNERABLE)],
    ['web-2', { tier: 'web' }, opensslHost(FIXED)],
    ['web-3', { tier: 'web' }, null],
    ['db-1', { tier: 'db' }, opensslHost(VULNERABLE)],
    ['db-2', { tier: 'db' }, [binary('bash', '5.2.15-2')]],
  ];
  for (const [id, labels, packages] of hosts) {
    await enrollAgent(coordinator.app, TOKENS.admin, id, labels);
    if (packages) await store(id, packages);
  }
});

afterEach(async () => {
  await coordinator.close();
});

/** What the agent would have reported, written as the sync writes it. */
async function store(hostId: string, packages: InstalledPackage[]): Promise<void> {
  const { store } = coordinator.app.fleet;
  await store.transaction(
    async () => await store.inventory.replace(hostId, packages, inventoryDigest(packages), new Date().toISOString()),
  );
}

async function api<T>(method: 'GET' | 'POST', url: string, body?: unknown, expected = 200): Promise<T> {
  const { status, body: answer } = await callApi(coordinator.app, method, url, body);
  if (status !== expected) throw new Error(`${method} ${url}: ${status} ${JSON.stringify(answer)}`);
  return answer as T;
}

async function rolloutTo(target: Record<string, unknown>): Promise<string> {
  const patch = await api<{ id: string }>('POST', '/v1/patches', SAMPLE_PATCH_SPEC, 201);
  const created = await api<RolloutStatus>(
    'POST',
    '/v1/rollouts',
    { patchId: patch.id, target, waves: ['100%'], requiredApprovals: 0 },
    201,
  );
  return created.rollout.id;
}

describe('target exposedTo', () => {
  it('plans the exposed hosts and names the ones without an inventory; start freezes them', async () => {
    const id = await rolloutTo({ exposedTo: EXPOSED_TO });
    const plan = await api<RolloutPlan>('GET', `/v1/rollouts/${id}/plan`);
    expect(plan.waves.flatMap((w) => w.hosts)).toEqual(['db-1', 'web-1']);
    expect(plan).toMatchObject({ frozen: false, exposedTo: { ...EXPOSED_TO, withoutInventory: ['web-3'] } });

    const started = await api<RolloutStatus>('POST', `/v1/rollouts/${id}/start`, {});
    expect(started.waves.flatMap((w) => w.hosts.map((h) => h.hostId))).toEqual(['db-1', 'web-1']);
    expect(started.compliance).toEqual({ ...EXPOSED_TO, url: complianceUrl('openssl', FIXED) });
    expect(started.compliance?.url).toBe('/v1/compliance?source=openssl&fixed=3.0.15-1~deb12u1');
    const { events } = await api<EventPage>('GET', `/v1/rollouts/${id}/events`);
    expect(events.find((e) => e.type === 'rollout.running')?.data).toMatchObject({
      hostCount: 2,
      exposedTo: { ...EXPOSED_TO, withoutInventoryCount: 1, withoutInventory: ['web-3'] },
    });

    // Frozen: a host found exposed after the start is not added, and the plan says frozen.
    await store('web-2', opensslHost(VULNERABLE));
    const after = await api<RolloutPlan>('GET', `/v1/rollouts/${id}/plan`);
    expect(after.frozen).toBe(true);
    expect(after.waves.flatMap((w) => w.hosts)).toEqual(['db-1', 'web-1']);
    expect(after.exposedTo).toBeUndefined();
  });

  it('narrows other selectors: labels and exposedTo select the exposed hosts among the labelled ones', async () => {
    const id = await rolloutTo({ labels: { tier: 'web' }, exposedTo: EXPOSED_TO });
    const plan = await api<RolloutPlan>('GET', `/v1/rollouts/${id}/plan`);
    expect(plan.waves.flatMap((w) => w.hosts)).toEqual(['web-1']);
  });

  it('refuses to start when no host is exposed, saying so', async () => {
    const id = await rolloutTo({ exposedTo: { source: 'openssl', fixed: '3.0.0-1' } });
    const { status, body } = await callApi(coordinator.app, 'POST', `/v1/rollouts/${id}/start`, {});
    expect(status).toBe(409);
    expect((body as { error: { message: string } }).error.message).toBe(
      'the target selects no hosts: none is exposed to openssl below 3.0.0-1 (1 without a package inventory were not judged)',
    );
  });

  it('refuses a bad exposedTo with a 400 naming the field', async () => {
    const patch = await api<{ id: string }>('POST', '/v1/patches', SAMPLE_PATCH_SPEC, 201);
    const { status, body } = await callApi(coordinator.app, 'POST', '/v1/rollouts', {
      patchId: patch.id,
      target: { exposedTo: { source: 'openssl', fixed: '3.0.15-' } },
    });
    expect(status).toBe(400);
    const issues = (body as { error: { details: { issues: { path: string; message: string }[] } } }).error.details
      .issues;
    expect(issues).toEqual([
      { path: 'body.target.exposedTo.fixed', message: 'not a Debian version: revision number is empty' },
    ]);
  });
});
