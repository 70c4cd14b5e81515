/**
 * Webhooks of a change-management system, through the real app: `patch.approved` and
 * `rollout.finished` posted to a real HTTP server on 127.0.0.1 (HMAC-signed), and a receiver that
 * hangs: the API and the engine carry on, and the delivery given up is on the audit trail.
 */
import { createHmac } from 'node:crypto';
import type { EventRecord, RolloutStatus } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { webhookEventsFor } from '../src/notify/webhook-events.js';
import type { Store } from '../src/store/store.js';
import { hashedWebhookLabel } from './support/hashed-webhook-label.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';
import { startReceiver } from './support/webhook-receiver.js';

let coordinator: TestCoordinator | undefined;
afterEach(async () => {
  await coordinator?.close();
  coordinator = undefined;
});

/** A patch and a rollout of it on one (offline) host, waiting for bob's approval. */
async function awaitingApproval(app: TestCoordinator['app']): Promise<{ patchId: string; rolloutId: string }> {
  const { store } = app.fleet;
  const at = new Date().toISOString();
  await store.agents.enroll({ id: 'web-1', publicKey: 'A'.repeat(43), labels: {}, mayReplace: false }, at);
  // Seen once, as though its agent had connected: a host never seen is never a canary.
  await store.transaction(async () => await store.agents.recordSightings([['web-1', at]]));
  const patch = await callApi(app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC, TOKENS.operator);
  const patchId = (patch.body as { id: string }).id;
  const created = await callApi(
    app,
    'POST',
    '/v1/rollouts',
    { patchId, target: { hostIds: ['web-1'] }, requiredApprovals: 1 },
    TOKENS.operator,
  );
  return { patchId, rolloutId: (created.body as RolloutStatus).rollout.id };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, deadlineMs = 10_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('webhooks for a change-management system', () => {
  it('posts patch.approved and rollout.finished, signed with the endpoint secret', async () => {
    const receiver = await startReceiver();
    coordinator = await startTestCoordinator({
      webhooks: [
        { url: `${receiver.url}/hooks/cab`, events: ['patch.approved', 'rollout.finished'], secret: 's3cret' },
      ],
    });
    const { app } = coordinator;
    const { patchId, rolloutId } = await awaitingApproval(app);
    expect((await callApi(app, 'POST', `/v1/rollouts/${rolloutId}/approve`, undefined, TOKENS.approver)).status).toBe(
      200,
    );
    expect(
      (await callApi(app, 'POST', `/v1/rollouts/${rolloutId}/abort`, { reason: 'change window missed' })).status,
    ).toBe(200);
    await receiver.waitFor(2);

    const [approved, finished] = receiver.received;
    for (const request of [approved, finished]) {
      expect(request?.path).toBe('/hooks/cab');
      const expected = createHmac('sha256', 's3cret')
        .update(request?.body ?? '')
        .digest('hex');
      expect(request?.headers['x-fleetpatch-signature']).toBe(`sha256=${expected}`);
    }
    expect(JSON.parse(approved?.body ?? '')).toMatchObject({
      type: 'patch.approved',
      rolloutId,
      data: { patchId, record: `/v1/patches/${patchId}/record`, approvers: ['bob'] },
    });
    expect(approved?.headers['x-fleetpatch-event']).toBe('patch.approved');
    expect(JSON.parse(finished?.body ?? '')).toMatchObject({
      type: 'rollout.finished',
      rolloutId,
      data: { patchId, state: 'aborted', reason: 'change window missed', record: `/v1/patches/${patchId}/record` },
    });
    // Only what the endpoint asked for.
    expect(receiver.received).toHaveLength(2);
  });

  it('a receiver that never answers holds up nothing; the delivery given up is audited', async () => {
    const held: (() => void)[] = [];
    const receiver = await startReceiver(
      () =>
        new Promise<number>((resolve) => {
          held.push(() => resolve(200));
        }),
    );
    const url = `${receiver.url}/hang?token=secret-in-query`;
    coordinator = await startTestCoordinator({
      webhooks: [{ url, events: ['patch.approved'] }],
      webhookDelivery: { timeoutMs: 2000, maxAttempts: 2, baseDelayMs: 10 },
    });
    const { app } = coordinator;
    const { rolloutId } = await awaitingApproval(app);

    expect((await callApi(app, 'POST', `/v1/rollouts/${rolloutId}/approve`, undefined, TOKENS.approver)).status).toBe(
      200,
    );
    await receiver.waitFor(1);
    // The receiver holds the request open, and the rollout goes on all the same.
    const started = await callApi(app, 'POST', `/v1/rollouts/${rolloutId}/start`);
    expect(started.status).toBe(200);
    expect((started.body as RolloutStatus).rollout.state).toBe('running');
    // …while the first attempt is still open (the second cannot come before its 2 s timeout).
    expect(receiver.received).toHaveLength(1);
    expect((await app.fleet.store.events(rolloutId, 0, 1000)).map((e) => e.type)).not.toContain('webhook.failed');

    const failed = await until('the webhook.failed audit row', async () =>
      (await app.fleet.store.events(rolloutId, 0, 1000)).find((e: EventRecord) => e.type === 'webhook.failed'),
    );
    expect(failed).toMatchObject({
      actor: 'system',
      data: { type: 'patch.approved', rolloutId, attempts: 2, endpoint: hashedWebhookLabel(url) },
    });
    // Neither the URL's path nor its query (either may be the credential) is on the trail.
    expect(JSON.stringify(failed.data)).not.toContain('/hang');
    expect(JSON.stringify(failed.data)).not.toContain('secret-in-query');
    expect(receiver.received).toHaveLength(2);
    for (const release of held) release();
  });

  it('a viewer reading the trail does not learn a Slack-style webhook URL, whose path is its credential', async () => {
    const SLACK_SECRET = 'xoxSECRETb7Q2mWv9RkT4pLz';
    const receiver = await startReceiver(() => 503); // the chat service has an outage
    const url = `${receiver.url}/services/T0001/B0001/${SLACK_SECRET}`;
    coordinator = await startTestCoordinator({
      webhooks: [{ url, events: ['rollout.created'] }],
      webhookDelivery: { timeoutMs: 1000, maxAttempts: 1, baseDelayMs: 1 },
    });
    const { app } = coordinator;
    const { rolloutId } = await awaitingApproval(app);

    const trail = await until('webhook.failed on the trail a viewer reads', async () => {
      const page = await callApi(app, 'GET', '/v1/events?limit=1000', undefined, TOKENS.viewer);
      expect(page.status).toBe(200);
      const text = JSON.stringify(page.body);
      return text.includes('webhook.failed') ? text : undefined;
    });
    const ofRollout = JSON.stringify(
      (await callApi(app, 'GET', `/v1/rollouts/${rolloutId}/events`, undefined, TOKENS.viewer)).body,
    );

    // With the URL, a viewer could post into the ops channel as fleetpatch ("approved", "succeeded").
    for (const read of [trail, ofRollout]) {
      expect(read).not.toContain(SLACK_SECRET);
      expect(read).not.toContain('/services/');
      // What is there tells the endpoint apart all the same.
      expect(read).toContain(hashedWebhookLabel(url));
    }
  });
});

describe('webhookEventsFor', () => {
  const row = (type: string, toState: string | null, hostId: string | null): EventRecord => ({
    seq: 7,
    rolloutId: 'r-1',
    hostId,
    actor: 'system',
    type,
    fromState: null,
    toState,
    data: null,
    at: '2026-12-04T10:00:00.000Z',
  });
  const store = {
    rollouts: { get: async () => ({ patchId: 'p-1', hostCount: 2 }), approvals: async () => [] },
  } as unknown as Store;

  it('a host reverted or failing its revert is that host, not the end of the rollout: no rollout.finished', async () => {
    for (const [type, toState] of [
      ['host.reverted', 'reverted'],
      ['host.revert_failed', 'revert_failed'],
    ] as const) {
      expect((await webhookEventsFor(store, row(type, toState, 'web-1'))).map((e) => e.type)).toEqual([type]);
    }
  });

  it("the rollout's own final row adds rollout.finished", async () => {
    const events = await webhookEventsFor(store, row('rollout.reverted', 'reverted', null));
    expect(events.map((e) => e.type)).toEqual(['rollout.reverted', 'rollout.finished']);
    expect(events[1]?.data).toMatchObject({ state: 'reverted', patchId: 'p-1', hostCount: 2 });
  });
});
