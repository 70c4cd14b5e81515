import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { type Clock, FleetError } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, describe, expect, it, onTestFinished } from 'vitest';
import { collectGarbageEvery } from '../../../test/support/forced-gc.js';
import {
  type WebhookEvent,
  type WebhookFailure,
  WebhookNotifier,
  type WebhookNotifierOptions,
} from '../src/notify/webhook-notifier.js';
import { hashedWebhookLabel } from './support/hashed-webhook-label.js';
import { startReceiver } from './support/webhook-receiver.js';

const notifiers: WebhookNotifier[] = [];

afterEach(async () => {
  await Promise.all(notifiers.splice(0).map((n) => n.stop()));
});

/** A port nothing listens on: bound once by us, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function captureLog() {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'debug' },
    { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { log, lines, warnings: () => lines.filter((l) => l.level === 40).map((l) => l.msg) };
}

function notifier(options: Omit<WebhookNotifierOptions, 'log'> & { log?: WebhookNotifierOptions['log'] }) {
  const n = new WebhookNotifier({ log: pino({ level: 'silent' }), ...options });
  notifiers.push(n);
  return n;
}

function event(type: string, data: Record<string, unknown> = {}): WebhookEvent {
  return { type, rolloutId: 'ro_1', at: '2025-01-15T02:00:00.000Z', data };
}

/** Releases held requests on demand. */
function gate() {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

describe('WebhookNotifier', () => {
  it('POSTs the event as JSON with event, delivery and signature headers', async () => {
    const receiver = await startReceiver();
    const n = notifier({
      endpoints: [
        { url: `${receiver.url}/signed`, events: '*', secret: 's3cret' },
        { url: `${receiver.url}/plain`, events: '*' },
      ],
    });
    const sent = event('rollout.started', { wave: 1, hosts: ['web-1'] });

    expect(n.notify(sent)).toBeUndefined();
    await n.whenIdle();

    expect(receiver.received).toHaveLength(2);
    const signed = receiver.received.find((r) => r.path === '/signed');
    const plain = receiver.received.find((r) => r.path === '/plain');
    expect(signed?.method).toBe('POST');
    expect(signed?.headers['content-type']).toBe('application/json');
    expect(signed?.headers['x-fleetpatch-event']).toBe('rollout.started');
    expect(signed?.headers['x-fleetpatch-delivery']).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(JSON.parse(signed?.body ?? '')).toEqual(sent);
    const expected = createHmac('sha256', 's3cret')
      .update(signed?.body ?? '')
      .digest('hex');
    expect(signed?.headers['x-fleetpatch-signature']).toBe(`sha256=${expected}`);

    expect(plain?.headers['x-fleetpatch-signature']).toBeUndefined();
    expect(plain?.headers['x-fleetpatch-delivery']).not.toBe(signed?.headers['x-fleetpatch-delivery']);
    expect(n.stats()).toEqual({ delivered: 2, failedAttempts: 0, dropped: 0, queued: 0 });
  });

  it('sends an endpoint only the event types it asked for', async () => {
    const receiver = await startReceiver();
    const n = notifier({
      endpoints: [
        { url: `${receiver.url}/halts`, events: ['rollout.halted', 'rollout.aborted'] },
        { url: `${receiver.url}/all`, events: '*' },
      ],
    });
    n.notify(event('rollout.started'));
    n.notify(event('rollout.halted'));
    n.notify(event('rollout.succeeded'));
    await n.whenIdle();

    const typesAt = (path: string) =>
      receiver.received.filter((r) => r.path === path).map((r) => r.headers['x-fleetpatch-event']);
    expect(typesAt('/halts')).toEqual(['rollout.halted']);
    expect(typesAt('/all')).toEqual(['rollout.started', 'rollout.halted', 'rollout.succeeded']);
  });

  it('retries a failing receiver with the same delivery id until it answers 2xx', async () => {
    const receiver = await startReceiver((_, index) => (index < 2 ? 500 : 200));
    const n = notifier({ endpoints: [{ url: receiver.url, events: '*' }], baseDelayMs: 5 });
    n.notify(event('rollout.halted'));
    await n.whenIdle();

    expect(receiver.received).toHaveLength(3);
    const ids = new Set(receiver.received.map((r) => r.headers['x-fleetpatch-delivery']));
    expect(ids.size).toBe(1);
    expect(n.stats()).toEqual({ delivered: 1, failedAttempts: 2, dropped: 0, queued: 0 });
  });

  it('gives up on an unreachable receiver after maxAttempts, without the caller ever waiting', async () => {
    const port = await closedPort();
    const { log, lines, warnings } = captureLog();
    const url = `http://127.0.0.1:${port}/hook?token=hunter2`;
    const n = notifier({
      endpoints: [{ url, events: '*' }],
      maxAttempts: 3,
      baseDelayMs: 5,
      log,
    });

    expect(() => n.notify(event('rollout.started'))).not.toThrow();
    // Still queued: notify returned before any attempt was made.
    expect(n.stats()).toEqual({ delivered: 0, failedAttempts: 0, dropped: 0, queued: 1 });
    await n.whenIdle();

    expect(n.stats()).toEqual({ delivered: 0, failedAttempts: 3, dropped: 1, queued: 0 });
    expect(warnings()).toEqual(['webhook delivery given up']);
    const warning = lines.find((l) => l.msg === 'webhook delivery given up');
    expect(warning).toMatchObject({ attempts: 3, endpoint: hashedWebhookLabel(url), type: 'rollout.started' });
    expect(JSON.stringify(lines)).not.toContain('/hook');
    expect(JSON.stringify(lines)).not.toContain('hunter2');
  });

  describe('keeps endpoint URLs, which are secrets, out of logs and give-ups', () => {
    /** Gives one delivery to each endpoint (all unreachable) and returns what was logged and given up. */
    async function failEach(endpoints: WebhookNotifierOptions['endpoints']) {
      const { log, lines } = captureLog();
      const failures: WebhookFailure[] = [];
      const n = notifier({ endpoints, maxAttempts: 2, baseDelayMs: 1, log, onGiveUp: (f) => failures.push(f) });
      n.notify(event('rollout.started'));
      await n.whenIdle();
      return { logged: JSON.stringify(lines), failures };
    }

    it("names an endpoint by its origin and a hash of its URL, never by its path (Slack's path is its credential)", async () => {
      const origin = `http://127.0.0.1:${await closedPort()}`;
      const slack = `${origin}/services/T0001/B0001/xoxSECRETb7Q2mWv9`;
      const other = `${origin}/services/T0001/B0002/xoxOTHERk3Lq8Zr1`;

      const { logged, failures } = await failEach([
        { url: slack, events: '*' },
        { url: other, events: '*' },
      ]);

      // Two endpoints on one host are still told apart.
      expect(failures.map((f) => f.endpoint).sort()).toEqual(
        [hashedWebhookLabel(slack), hashedWebhookLabel(other)].sort(),
      );
      expect(hashedWebhookLabel(slack)).not.toBe(hashedWebhookLabel(other));
      for (const seen of [logged, JSON.stringify(failures)]) {
        expect(seen).not.toContain('/services');
        expect(seen).not.toContain('xoxSECRET');
        expect(seen).not.toContain('xoxOTHER');
      }
    });

    it('names an endpoint by its configured name when it has one', async () => {
      const url = `http://127.0.0.1:${await closedPort()}/hooks/9x4mattermostkey`;

      const { logged, failures } = await failEach([{ url, name: 'ops-mattermost', events: '*' }]);

      expect(failures).toMatchObject([{ endpoint: 'ops-mattermost', attempts: 2, type: 'rollout.started' }]);
      expect(logged).toContain('ops-mattermost');
      expect(logged).not.toContain('9x4mattermostkey');
    });

    it('takes the URL out of an error that quotes it (fetch quotes a URL with a user and password in full)', async () => {
      const url = `http://fleetpatch:pa55word@127.0.0.1:${await closedPort()}/services/T0001/B0001/xoxSECRET`;

      const { logged, failures } = await failEach([{ url, events: '*' }]);

      expect(failures[0]?.error).toContain(hashedWebhookLabel(url));
      for (const seen of [logged, JSON.stringify(failures)]) {
        expect(seen).not.toContain('pa55word');
        expect(seen).not.toContain('xoxSECRET');
      }
    });
  });

  it('treats a receiver that does not answer in time as a failed attempt, though garbage is collected meanwhile', async () => {
    // A collection once took the timeout away (AbortSignal.any on Node 20) and the lane waited for ever.
    const stopCollecting = collectGarbageEvery(10);
    onTestFinished(stopCollecting);
    const never = gate();
    const receiver = await startReceiver(async () => {
      await never.opened;
      return 200;
    });
    const n = notifier({
      endpoints: [{ url: receiver.url, events: '*' }],
      maxAttempts: 2,
      baseDelayMs: 5,
      // Long enough for each request to reach the receiver (it counts them) on a loaded machine.
      timeoutMs: 1000,
    });
    n.notify(event('rollout.started'));
    await n.whenIdle();
    expect(receiver.received).toHaveLength(2);
    expect(n.stats()).toMatchObject({ delivered: 0, failedAttempts: 2, dropped: 1 });
    never.open();
  });

  it('delivers to one endpoint in order, one request at a time, while other endpoints proceed', async () => {
    const first = gate();
    const slow = await startReceiver(async (_, index) => {
      if (index === 0) await first.opened;
      return 200;
    });
    const fast = await startReceiver();
    const n = notifier({
      endpoints: [
        { url: slow.url, events: ['host.updated'] },
        { url: fast.url, events: ['probe'] },
      ],
    });
    for (let seq = 0; seq < 5; seq++) n.notify(event('host.updated', { seq }));
    await slow.waitFor(1);
    // A whole delivery to another endpoint completes while the slow one holds its first request.
    n.notify(event('probe'));
    await fast.waitFor(1);
    expect(slow.received).toHaveLength(1);

    first.open();
    await n.whenIdle();
    expect(slow.received.map((r) => (JSON.parse(r.body) as WebhookEvent).data.seq)).toEqual([0, 1, 2, 3, 4]);
    expect(slow.maxConcurrent()).toBe(1);
    expect(n.stats()).toEqual({ delivered: 6, failedAttempts: 0, dropped: 0, queued: 0 });
  });

  it('drops the oldest waiting delivery when an endpoint queue is full', async () => {
    const first = gate();
    const receiver = await startReceiver(async (_, index) => {
      if (index === 0) await first.opened;
      return 200;
    });
    const { log, warnings } = captureLog();
    const n = notifier({ endpoints: [{ url: receiver.url, events: '*' }], maxQueue: 2, log });
    n.notify(event('host.updated', { seq: 0 }));
    await receiver.waitFor(1);
    for (let seq = 1; seq <= 3; seq++) n.notify(event('host.updated', { seq }));
    expect(n.stats()).toMatchObject({ dropped: 1, queued: 3 });
    expect(warnings()).toEqual(['webhook queue full, oldest delivery dropped']);

    first.open();
    await n.whenIdle();
    expect(receiver.received.map((r) => (JSON.parse(r.body) as WebhookEvent).data.seq)).toEqual([0, 2, 3]);
  });

  it('stops promptly during a backoff wait, and drops what is left', async () => {
    const receiver = await startReceiver(() => 503);
    let sleeping: () => void = () => {};
    const asleep = new Promise<void>((resolve) => {
      sleeping = resolve;
    });
    const clock: Clock = {
      now: () => Date.now(),
      monotonicNow: () => performance.now(),
      sleep: async (ms, signal) => {
        sleeping();
        await delay(ms, undefined, signal ? { signal } : undefined);
      },
    };
    const n = notifier({
      endpoints: [{ url: receiver.url, events: '*' }],
      baseDelayMs: 600_000,
      maxDelayMs: 600_000,
      clock,
    });
    n.notify(event('rollout.started', { seq: 0 }));
    n.notify(event('rollout.started', { seq: 1 }));
    await asleep;

    const stopped = n.stop();
    expect(n.stop()).toBe(stopped);
    await stopped;
    expect(n.stats()).toMatchObject({ delivered: 0, dropped: 2, queued: 0 });

    n.notify(event('rollout.started', { seq: 2 }));
    expect(n.stats()).toMatchObject({ dropped: 3, queued: 0 });
    await n.whenIdle();
  });

  it('stops promptly while a request is in flight', async () => {
    const never = gate();
    const receiver = await startReceiver(async () => {
      await never.opened;
      return 200;
    });
    const n = notifier({ endpoints: [{ url: receiver.url, events: '*' }], timeoutMs: 600_000 });
    n.notify(event('rollout.started'));
    await receiver.waitFor(1);
    await n.stop();
    expect(n.stats()).toEqual({ delivered: 0, failedAttempts: 0, dropped: 1, queued: 0 });
    never.open();
  });

  it('never throws from notify, even for an event it cannot serialise', async () => {
    const receiver = await startReceiver();
    const n = notifier({ endpoints: [{ url: receiver.url, events: '*' }] });
    expect(() => n.notify(event('rollout.started', { big: 10n }))).not.toThrow();
    expect(n.stats()).toMatchObject({ dropped: 1, queued: 0 });
    await n.whenIdle();
    expect(receiver.received).toHaveLength(0);
  });

  it('refuses a malformed configuration up front', () => {
    const log = pino({ level: 'silent' });
    expect(() => new WebhookNotifier({ endpoints: [{ url: 'not a url', events: '*' }], log })).toThrow(FleetError);
    expect(() => new WebhookNotifier({ endpoints: [{ url: 'ftp://example.com/', events: '*' }], log })).toThrow(
      FleetError,
    );
    expect(() => new WebhookNotifier({ endpoints: [], maxAttempts: 0, log })).toThrow(FleetError);
  });
});
