/**
 * What followed a change on a host (units restarted, services still on old libraries, reboot) is
 * kept with its host run, shown in the status and the events, and with `staleServices: fail` a
 * healthy host whose services still run the old library counts as failed.
 */
import type { AfterChangeReport } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

function report(staleUnits: string[]): AfterChangeReport {
  return {
    restarts: [{ unit: 'app.service', when: 'apply', ok: true, detail: '', ms: 300 }],
    staleSource: 'proc-maps',
    staleProcesses: staleUnits.map((unit, i) => ({ pid: 100 + i, command: 'x', unit, files: ['/usr/lib/libfp.so.1'] })),
    moreStaleProcesses: 0,
    staleUnits,
    reboot: { required: true, causedByThisChange: true, packages: ['libfp1'] },
  };
}

/** host reports its open apply order healthy, with an after-change report. */
async function healthyWith(fleet: SimulatedFleet, hostId: string, afterChange: AfterChangeReport): Promise<void> {
  const entry = fleet.agent(hostId).openApply();
  if (!entry) throw new Error(`${hostId} holds no open apply`);
  entry.phase = 'done';
  entry.result = {
    orderId: entry.orderId,
    outcome: 'healthy',
    changed: true,
    afterChange,
    finishedAt: new Date(fleet.now).toISOString(),
  };
  fleet.engine.onOrderResult(hostId, entry.result);
  await fleet.engine.whenIdle();
}

describe('after the change', () => {
  it('is kept with the host run, shown in the status and recorded in the host event', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await healthyWith(fleet, 'host-1', report(['cron.service']));
    expect(await fleet.state(id)).toBe('succeeded');
    const host = (await new RolloutView(fleet.store, () => true).status(id)).waves[0]?.hosts[0];
    expect(host).toMatchObject({ state: 'healthy', afterChange: report(['cron.service']) });
    const event = (await fleet.events(id)).find((e) => e.type === 'host.healthy');
    expect(event?.data).toMatchObject({ afterChange: { staleUnits: ['cron.service'], reboot: { required: true } } });
  });

  it('with staleServices fail, a healthy host whose services still run the old library is a counted failure', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], staleServices: 'fail', maxFailures: 0 });
    await healthyWith(fleet, 'host-1', report([]));
    await healthyWith(fleet, 'host-2', report(['cron.service', 'nginx.service']));
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'healthy', countedFailure: false });
    expect(await fleet.run(id, 'host-2')).toMatchObject({
      state: 'failed',
      changed: true,
      countedFailure: true,
      errorCode: 'verify_failed',
      reason: 'services still on the old library: cron.service, nginx.service',
    });
    expect(await fleet.state(id)).toBe('halted');
  });

  it('by default (staleServices report) the same host is healthy: reported, not failed', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await healthyWith(fleet, 'host-1', report(['cron.service']));
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'healthy', countedFailure: false });
  });
});
