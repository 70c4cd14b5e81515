/**
 * Wave and host metrics come from the committed events alone: timed by the events' own times, a
 * wave started before the coordinator did is not measured, and a rollout that ends mid-wave closes
 * its wave as `failed` (halted) or `stopped` (any other end).
 */
import type { EventRecord } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { CoordinatorMetrics } from '../src/metrics/coordinator-metrics.js';
import { RolloutEventMetrics } from '../src/metrics/rollout-event-metrics.js';
import type { HostRunRecord } from '../src/store/host-run-repository.js';

let seq = 0;
function event(type: string, at: string, fields: Partial<EventRecord> = {}): EventRecord {
  seq += 1;
  return {
    seq,
    rolloutId: 'ro_1',
    hostId: null,
    actor: 'system',
    type,
    fromState: null,
    toState: null,
    data: null,
    at,
    ...fields,
  };
}

function setup(runs: Record<string, Partial<HostRunRecord>> = {}) {
  const metrics = new CoordinatorMetrics(
    { agentsConnected: () => 0, rolloutsByState: async () => new Map(), ordersByState: async () => new Map() },
    '0.0.0',
  );
  const events = new RolloutEventMetrics(
    metrics,
    async (_rolloutId, hostId) => runs[hostId] as HostRunRecord | undefined,
  );
  const text = () => metrics.registry.metrics();
  return { events, text };
}

describe('RolloutEventMetrics', () => {
  it('times a wave from wave.started to wave.passed by the events’ own times', async () => {
    const { events, text } = setup();
    await events.onEvent(event('wave.started', '2030-01-01T00:00:00.000Z', { data: { wave: 0 } }));
    await events.onEvent(event('wave.passed', '2030-01-01T00:00:42.000Z', { data: { wave: 0 } }));
    const body = await text();
    expect(body).toMatch(/^fleetpatch_wave_duration_seconds_sum\{outcome="passed"\} 42$/m);
    expect(body).toMatch(/^fleetpatch_wave_duration_seconds_count\{outcome="passed"\} 1$/m);
  });

  it('a wave that passes without a start seen (the coordinator restarted) is not measured', async () => {
    const { events, text } = setup();
    await events.onEvent(event('wave.passed', '2030-01-01T00:00:42.000Z', { data: { wave: 1 } }));
    expect(await text()).not.toMatch(/^fleetpatch_wave_duration_seconds_count/m);
  });

  it('a rollout that ends mid-wave closes the wave as stopped', async () => {
    const { events, text } = setup();
    await events.onEvent(event('wave.started', '2030-01-01T00:00:00.000Z', { data: { wave: 0 } }));
    await events.onEvent(
      event('rollout.aborted', '2030-01-01T00:00:05.000Z', { fromState: 'running', toState: 'aborted' }),
    );
    expect(await text()).toMatch(/^fleetpatch_wave_duration_seconds_sum\{outcome="stopped"\} 5$/m);
  });

  it('a rollout that halts mid-wave closes the wave as failed, as its phase in the status', async () => {
    const { events, text } = setup();
    await events.onEvent(event('wave.started', '2030-01-01T00:00:00.000Z', { data: { wave: 0 } }));
    await events.onEvent(
      event('rollout.halted', '2030-01-01T00:00:07.000Z', { fromState: 'running', toState: 'halted' }),
    );
    const body = await text();
    expect(body).toMatch(/^fleetpatch_wave_duration_seconds_sum\{outcome="failed"\} 7$/m);
    expect(body).not.toMatch(/outcome="stopped"/);
  });

  it('a host that ends: its duration from its dispatch by outcome, and a failure by its error code', async () => {
    const reads: string[] = [];
    const metrics = new CoordinatorMetrics(
      { agentsConnected: () => 0, rolloutsByState: async () => new Map(), ordersByState: async () => new Map() },
      '0.0.0',
    );
    const runs: Record<string, Partial<HostRunRecord>> = { 'web-2': { errorCode: 'health_failed' } };
    const events = new RolloutEventMetrics(metrics, async (_rolloutId, hostId) => {
      reads.push(hostId);
      return runs[hostId] as HostRunRecord | undefined;
    });
    const host = (type: string, at: string, hostId: string, toState: string) =>
      events.onEvent(event(type, at, { hostId, toState }));
    await host('host.dispatched', '2030-01-01T00:00:01.000Z', 'web-1', 'dispatched');
    await host('host.dispatched', '2030-01-01T00:00:01.000Z', 'web-2', 'dispatched');
    await host('host.healthy', '2030-01-01T00:00:04.500Z', 'web-1', 'healthy');
    await host('host.failed', '2030-01-01T00:00:02.000Z', 'web-2', 'failed');
    await events.onEvent(event('host.progress', '2030-01-01T00:00:05.000Z', { hostId: 'web-2' }));
    const body = await metrics.registry.metrics();
    expect(body).toMatch(/^fleetpatch_host_duration_seconds_sum\{outcome="healthy"\} 3\.5$/m);
    expect(body).toMatch(/^fleetpatch_host_duration_seconds_sum\{outcome="failed"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_host_failures_total\{code="health_failed"\} 1$/m);
    // A healthy host is measured without reading its run; only the failure is read, for its code.
    expect(reads).toEqual(['web-2']);
  });

  it('a host dispatched before the coordinator started (no dispatch seen) is not timed; its failure still counts', async () => {
    const { events, text } = setup({ 'web-3': { errorCode: 'timed_out' } });
    await events.onEvent(
      event('host.timed_out', '2030-01-01T00:00:09.000Z', { hostId: 'web-3', toState: 'timed_out' }),
    );
    const body = await text();
    expect(body).not.toMatch(/^fleetpatch_host_duration_seconds_count\{outcome="timed_out"\}/m);
    expect(body).toMatch(/^fleetpatch_host_failures_total\{code="timed_out"\} 1$/m);
  });

  it('a rollout at rest forgets its hosts still dispatched: a later end is not timed from the old dispatch', async () => {
    const { events, text } = setup();
    await events.onEvent(
      event('host.dispatched', '2030-01-01T00:00:00.000Z', { hostId: 'web-4', toState: 'dispatched' }),
    );
    await events.onEvent(event('rollout.aborted', '2030-01-01T00:00:01.000Z', { toState: 'aborted' }));
    await events.onEvent(event('host.healthy', '2030-01-01T00:00:30.000Z', { hostId: 'web-4', toState: 'healthy' }));
    expect(await text()).not.toMatch(/^fleetpatch_host_duration_seconds_count\{outcome="healthy"\}/m);
  });
});
