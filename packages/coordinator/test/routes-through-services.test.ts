/**
 * Routes parse, call the engine or a service, and answer: every write, and its time stamp, comes from
 * a service reading the coordinator's one clock.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventPageSchema, PatchSchema, RolloutStatusSchema } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { enrollAgent } from './support/enroll-agent.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

const AT = Date.parse('2031-01-02T03:04:05.000Z');
const running: TestCoordinator[] = [];

afterEach(async () => {
  for (const started of running.splice(0)) await started.close();
});

describe('time stamps', () => {
  it("a patch and a dry run are stamped with the coordinator's clock", async () => {
    const started = await startTestCoordinator({}, { clock: { now: () => AT } });
    running.push(started);
    const { app } = started;
    await enrollAgent(app, TOKENS.admin, 'web-1');
    const patch = PatchSchema.parse((await callApi(app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body);
    expect(patch.createdAt).toBe(new Date(AT).toISOString());
    const created = await callApi(app, 'POST', '/v1/rollouts', { patchId: patch.id, target: { all: true } });
    const rolloutId = RolloutStatusSchema.parse(created.body).rollout.id;
    // web-1 is enrolled but not connected: answered offline at once.
    const dryRun = await callApi(app, 'POST', `/v1/rollouts/${rolloutId}/preflight`, { timeoutSeconds: 1 });
    expect(dryRun.body).toMatchObject({ summary: { offline: 1 } });

    const { events } = EventPageSchema.parse((await callApi(app, 'GET', '/v1/events')).body);
    const stamped = events.filter((e) => ['patch.created', 'rollout.preflight'].includes(e.type));
    expect(stamped.map((e) => [e.type, e.at])).toEqual([
      ['patch.created', new Date(AT).toISOString()],
      ['rollout.preflight', new Date(AT).toISOString()],
    ]);
  });
});

describe('route handlers', () => {
  const routesDir = join(import.meta.dirname, '../src/routes');
  it.each(readdirSync(routesDir).filter((f) => f.endsWith('.ts')))(
    '%s neither writes to the store nor reads the time',
    (file) => {
      const source = readFileSync(join(routesDir, file), 'utf8');
      for (const forbidden of ['.transaction(', 'appendEvent(', '.insert(', 'new Date(', 'Date.now(']) {
        expect(source, `${file} uses ${forbidden}`).not.toContain(forbidden);
      }
    },
  );
});
