import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readEntryFile } from '@fleetpatch/agent';
import type { AgentList, RolloutList } from '@fleetpatch/shared';
import { expect, it } from 'vitest';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { checkRollout, hostsIn } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet, waitForContent } from '../support/fault-scenario.js';
import { hostOf } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeNeeding } from '../support/requirements.js';

// Scenario 1: the canary is cut off after its order was delivered, while it verifies. The coordinator
// hears nothing: the host goes offline within two heartbeats and times out at its host deadline; with
// a failure budget of 0 the rollout halts and no other host is touched. Healed, the agent reports what
// it really did (its local health check passed: applied), and the coordinator records that once.

const PATH = '/etc/fault-1/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 5;
const HEARTBEAT_MS = 1000;
const HOST_TIMEOUT_S = 8;

describeNeeding([namespaces], 'fault 1: one host partitioned mid-apply', () => {
  const fleetOf = useFaultFleet({
    name: 'p1',
    hosts: HOSTS,
    path: PATH,
    initial: OLD,
    heartbeatIntervalMs: HEARTBEAT_MS,
  });

  it('times the host out, halts the wave, and after healing records its real state once', async () => {
    const fleet = fleetOf();
    const patchId = await createFilePatch(fleet, PATH, NEW, 3);
    const rolloutId = await startFleetRollout(fleet, patchId, {
      waves: [1, '100%'],
      maxFailures: 0,
      hostTimeoutSeconds: HOST_TIMEOUT_S,
    });
    const first = await fleet.fleet.status(rolloutId);
    const canary = first.waves[0]?.hosts[0]?.hostId as string;
    await waitForContent(fleet, [canary], NEW);
    fleet.partition(canary);
    const cutAt = Date.now();
    const during = hostOf(await fleet.fleet.status(rolloutId), canary);
    // Mid-apply: written, still verifying (its hold is 3 s), not yet reported healthy.
    expect(during.state).not.toBe('healthy');

    await waitFor(`${canary} offline`, async () => {
      const { agents } = await fleet.fleet.api.get<AgentList>('/v1/agents');
      return agents.find((a) => a.id === canary)?.online === false;
    });
    const offlineAfterMs = Date.now() - cutAt;
    const halted = await fleet.fleet.waitForState(rolloutId, ['halted'], 30_000);
    const timedOutAfterMs = Date.now() - cutAt;
    expect(hostOf(halted, canary).state).toBe('timed_out');
    // The wave halted per its budget: nobody else was dispatched.
    expect(hostsIn(halted, 'queued').length).toBe(HOSTS - 1);
    // Offline within the heartbeat deadline (two missed pings, plus a tick); timed out by the host deadline.
    expect(offlineAfterMs).toBeLessThan(4 * HEARTBEAT_MS + 2000);
    expect(timedOutAfterMs).toBeLessThan(HOST_TIMEOUT_S * 1000 + 5000);

    // Alone, the agent finished its verify: the host carries the change.
    fleet.heal(canary);
    const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
    const convergeMs = Date.now() - cutAt;
    const after = await fleet.fleet.status(rolloutId);
    expect(after.rollout.state).toBe('halted');
    expect(hostOf(after, canary)).toMatchObject({ state: 'timed_out', changed: true });
    const { events } = await fleet.fleet.api.get<{ events: { type: string; hostId: string | null }[] }>(
      `/v1/rollouts/${rolloutId}/events?limit=1000`,
    );
    expect(events.filter((e) => e.type === 'host.late_result' && e.hostId === canary)).toHaveLength(1);
    await recordRow(rowOf('1 partition mid-apply', HOSTS, ['partition of 1 host mid-apply'], verdict, convergeMs));
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: 1, appliedOnce: 1, lost: 0, doubled: 0 });
  });

  it('has a checker that sees an order started twice and a file the others disagree with', async () => {
    const fleet = fleetOf();
    const [rollout] = (await fleet.fleet.api.get<RolloutList>('/v1/rollouts')).rollouts;
    const rolloutId = rollout?.id as string;
    const canary = (await fleet.fleet.status(rolloutId)).waves[0]?.hosts[0];
    const orderId = canary?.orderId as string;
    // A second start of the order, as the journal would record it, and the file put back behind everyone's back.
    const entryFile = join(fleet.dataOf(canary?.hostId as string), 'orders', orderId, 'entry.json');
    const entry = readEntryFile(await readFile(entryFile, 'utf8'));
    await writeFile(entryFile, `${JSON.stringify({ ...entry, executions: 2 })}\n`);
    await writeFile(fleet.fileOnHost(canary?.hostId as string), OLD);
    const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
    expect(verdict).toMatchObject({ doubled: 1, appliedOnce: 0 });
    expect(verdict.problems.join('\n')).toMatch(
      /started 2 time\(s\)[\s\S]*journal says changed=true, the host says false/,
    );
  });
});
