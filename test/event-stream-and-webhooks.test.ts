import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage, EventRecord, RolloutStatus } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiClient, waitFor, waitForRolloutState } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { FleetHarness } from './support/fleet-harness.js';
import { SseClient, type SseFrame, type SseNotice } from './support/sse-client.js';

// What the outside world sees of a rollout: signed webhooks to a real HTTP receiver, the live
// Server-Sent Events stream of its audit log (with resume), and the paged audit log. A real
// coordinator process and two real agents on 127.0.0.1.

const SECRET = 'webhook-shared-secret';
const HOSTS = ['web-1', 'web-2'];
const SUBSCRIBED = ['rollout.running', 'wave.passed', 'rollout.succeeded'];

interface WebhookDelivery {
  headers: IncomingHttpHeaders;
  raw: string;
  body: { type: string; rolloutId: string; at: string; data: { seq: number } & Record<string, unknown> };
}

let work: string;
let receiver: Server;
const deliveries: WebhookDelivery[] = [];
let fleet: FleetHarness;
let api: ApiClient;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-e2e-events-'));

  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      deliveries.push({ headers: req.headers, raw, body: JSON.parse(raw) as WebhookDelivery['body'] });
      res.writeHead(204).end();
    });
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
  const { port } = receiver.address() as AddressInfo;

  fleet = await FleetHarness.start(join(work, 'coordinator'), {
    extraConfig: { webhooks: [{ url: `http://127.0.0.1:${port}/hooks`, events: SUBSCRIBED, secret: SECRET }] },
  });
  api = fleet.api;

  for (const host of HOSTS) {
    const rootDir = join(work, host, 'root');
    await mkdir(join(rootDir, 'etc/app'), { recursive: true });
    await writeFile(join(rootDir, 'etc/app/app.conf'), 'workers = 2\n', { mode: 0o644 });
    const joinToken = await fleet.register(host, { role: 'web' });
    fleet.spawnAgent({ id: host, joinToken, dataDir: join(work, host, 'data'), rootDir });
  }
  await fleet.waitOnline(HOSTS);
});

afterAll(async () => {
  await fleet?.stop();
  receiver?.close();
  await rm(work, { recursive: true, force: true });
});

describe('a rollout seen from outside', () => {
  let rolloutId: string;
  /** Every frame the first stream delivered, backlog and live, up to rollout.succeeded. */
  let streamed: SseFrame[];
  /** The id-less host.progress frames the same stream carried: live phases, not audit events. */
  let notices: SseNotice[];

  it('streams the backlog, then live events with id = seq, until the rollout succeeds', async () => {
    const patchId = await fleet.createPatch(samplePatch({ path: '/etc/app/app.conf', content: 'workers = 8\n' }));
    const created = await api.post<RolloutStatus>(
      '/v1/rollouts',
      sampleRollout(patchId, { target: { labels: { role: 'web' } }, waves: [1, '100%'], requiredApprovals: 0 }),
    );
    rolloutId = created.rollout.id;
    const streamUrl = `${fleet.coordinator.url}/v1/rollouts/${rolloutId}/events/stream`;

    const unauthenticated = await fetch(streamUrl);
    expect(unauthenticated.status).toBe(401);
    await unauthenticated.body?.cancel();

    const stream = await SseClient.open(streamUrl);
    try {
      // Committed before we connected: the backlog.
      const backlog = await stream.next();
      expect(backlog).toMatchObject({ event: 'rollout.created', data: { rolloutId, actor: 'admin' } });

      await api.post(`/v1/rollouts/${rolloutId}/start`);
      const live = await stream.until((f) => f.event === 'rollout.succeeded');
      streamed = [backlog, ...live];
      notices = stream.notices;
    } finally {
      stream.close();
    }

    for (const frame of streamed) {
      expect(frame.id).toBe(frame.data.seq);
      expect(frame.event).toBe(frame.data.type);
      expect(frame.data.rolloutId).toBe(rolloutId);
    }
    const seqs = streamed.map((f) => f.id);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    const types = streamed.map((f) => f.event);
    expect(types.filter((t) => t.startsWith('rollout.') || t.startsWith('wave.'))).toEqual([
      'rollout.created',
      'rollout.running',
      'wave.started',
      'wave.passed',
      'wave.started',
      'wave.passed',
      'rollout.succeeded',
    ]);
    for (const host of HOSTS) {
      expect(streamed.filter((f) => f.data.hostId === host && f.event === 'host.healthy')).toHaveLength(1);
    }
    // Progress is not on the audit trail; what came of it live (coalesced: how many depends on how the
    // reports bunch up) names a host of this rollout and an in-flight phase.
    expect(types).not.toContain('host.progress');
    for (const { event, data } of notices) {
      expect(event).toBe('host.progress');
      expect(data).toMatchObject({ type: 'host.progress', rolloutId });
      expect(HOSTS).toContain(data.hostId);
      expect(['delivered', 'snapshotted', 'applying', 'verifying']).toContain(data.state);
    }
  });

  it('resumes after Last-Event-ID with exactly the events that followed it', async () => {
    const middle = streamed[Math.floor(streamed.length / 2)];
    if (!middle) throw new Error('nothing was streamed');
    const stream = await SseClient.open(`${fleet.coordinator.url}/v1/rollouts/${rolloutId}/events/stream`, {
      'last-event-id': String(middle.id),
    });
    try {
      const resumed = await stream.until((f) => f.event === 'rollout.succeeded');
      expect(resumed.map((f) => f.id)).toEqual(streamed.filter((f) => f.id > middle.id).map((f) => f.id));
    } finally {
      stream.close();
    }
  });

  it('pages the audit log with after= and limit=', async () => {
    const paged: EventRecord[] = [];
    let after = 0;
    for (let page = 0; page < 100; page++) {
      const { events, next } = await api.get<EventPage>(`/v1/rollouts/${rolloutId}/events?after=${after}&limit=3`);
      expect(events.length).toBeLessThanOrEqual(3);
      for (const event of events) expect(event.seq).toBeGreaterThan(after);
      paged.push(...events);
      if (next === null) {
        expect(events.length).toBeLessThan(3);
        break;
      }
      expect(events).toHaveLength(3);
      expect(next).toBe(events.at(-1)?.seq);
      after = next;
    }
    expect(paged.slice(0, streamed.length)).toEqual(streamed.map((f) => f.data));

    const { events: tail } = await api.get<EventPage>(
      `/v1/rollouts/${rolloutId}/events?after=${streamed.at(-3)?.id ?? 0}&limit=2`,
    );
    expect(tail).toEqual(streamed.slice(-2).map((f) => f.data));
  });

  it('posts signed webhooks for the subscribed events only, in order', async () => {
    await waitFor('the rollout.succeeded webhook', () =>
      deliveries.some((d) => d.body.type === 'rollout.succeeded' && d.body.rolloutId === rolloutId),
    );
    const ours = deliveries.filter((d) => d.body.rolloutId === rolloutId);
    expect(ours.map((d) => d.body.type)).toEqual([
      'rollout.running',
      'wave.passed',
      'wave.passed',
      'rollout.succeeded',
    ]);

    for (const delivery of ours) {
      const expected = `sha256=${createHmac('sha256', SECRET).update(delivery.raw).digest('hex')}`;
      expect(delivery.headers['x-fleetpatch-signature']).toBe(expected);
      expect(delivery.headers['x-fleetpatch-event']).toBe(delivery.body.type);
      expect(delivery.headers['x-fleetpatch-delivery']).toMatch(/^[0-9a-f-]{36}$/);
      // The webhook names the audit event it reports.
      const event = streamed.find((f) => f.id === delivery.body.data.seq);
      expect(event?.event).toBe(delivery.body.type);
    }
    expect(new Set(ours.map((d) => d.headers['x-fleetpatch-delivery'])).size).toBe(ours.length);
    const status = await waitForRolloutState(api, rolloutId, ['succeeded']);
    expect(status.rollout.state).toBe('succeeded');
  });
});
