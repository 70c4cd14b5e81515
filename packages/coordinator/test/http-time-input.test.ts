/**
 * Times and schedules that come in through the API: every malformed or impossible one is answered
 * 400 naming the field, and nothing is written.
 */
import { ErrorBodySchema } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator } from './support/test-coordinator.js';

const running: TestCoordinator[] = [];
afterEach(async () => {
  for (const started of running.splice(0)) await started.close();
});

const WINDOW = { cron: '0 2 * * *', timezone: 'Europe/Berlin', durationMinutes: 120, cutoffMinutes: 30 };

describe('a rollout request with a bad time in it', () => {
  it.each([
    ['a start time without an offset', { startAt: '2030-01-08T02:00:00' }, 'startAt'],
    ['a leap second', { startAt: '2016-12-31T23:59:60Z' }, 'startAt'],
    ['the 30th of February', { startAt: '2030-02-30T02:00:00Z' }, 'startAt'],
    ['hour 24', { startAt: '2030-01-08T24:00:00Z' }, 'startAt'],
    ['an offset beyond ±23:59', { startAt: '2030-01-08T02:00:00+24:00' }, 'startAt'],
    ['the year 10000', { startAt: '+010000-01-01T00:00:00Z' }, 'startAt'],
    ['a date alone', { startAt: '2030-01-08' }, 'startAt'],
    ['a time zone that is not an IANA zone', { window: { ...WINDOW, timezone: 'Mars/Olympus_Mons' } }, 'timezone'],
    ['a UTC offset for a time zone', { window: { ...WINDOW, timezone: '+05:45' } }, 'timezone'],
    ['an hour that does not exist', { window: { ...WINDOW, cron: '0 25 * * *' } }, 'cron'],
    ['a cron that never fires (30 February)', { window: { ...WINDOW, cron: '0 2 30 2 *' } }, 'cron'],
    ['a cutoff as long as the window', { window: { ...WINDOW, cutoffMinutes: 120 } }, 'cutoffMinutes'],
    ['a window of no minutes', { window: { ...WINDOW, durationMinutes: 0 } }, 'durationMinutes'],
  ])('%s: 400 naming %s, and no rollout', async (_, fields, field) => {
    const started = await startTestCoordinator();
    running.push(started);
    const { app } = started;
    const patch = (await callApi(app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string };

    const answer = await callApi(app, 'POST', '/v1/rollouts', { patchId: patch.id, target: { all: true }, ...fields });

    expect(answer.status, JSON.stringify(answer.body)).toBe(400);
    expect(JSON.stringify(ErrorBodySchema.parse(answer.body).error)).toContain(field);
    expect(((await callApi(app, 'GET', '/v1/rollouts')).body as { rollouts: unknown[] }).rollouts).toEqual([]);
  });

  it('takes an unusual time zone (Asia/Kathmandu, +05:45) and counts down to its window', async () => {
    const started = await startTestCoordinator();
    running.push(started);
    const { app } = started;
    const patch = (await callApi(app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string };
    const window = { ...WINDOW, timezone: 'Asia/Kathmandu' };

    const answer = await callApi(app, 'POST', '/v1/rollouts', { patchId: patch.id, target: { all: true }, window });

    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    const opensAt = (answer.body as { window?: { opensAt: string } }).window?.opensAt ?? '';
    // 02:00 in Kathmandu is 20:15 UTC the day before.
    expect(opensAt).toMatch(/T20:15:00\.000Z$/);
  });
});
