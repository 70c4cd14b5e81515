/**
 * Live event streams cannot be opened without bound nor pile up unread events in the coordinator:
 * beyond the caps a new stream is a 429; a reader too far behind is cut, and resumes from its
 * Last-Event-ID without losing an event.
 */
import { get, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { enrollAgent } from './support/enroll-agent.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

let coordinator: TestCoordinator | undefined;
const responses: IncomingMessage[] = [];
afterEach(async () => {
  for (const response of responses.splice(0)) response.destroy();
  await coordinator?.close();
  coordinator = undefined;
});

async function start(eventStreams: Record<string, number>) {
  coordinator = await startTestCoordinator({ eventStreams });
  const { app } = coordinator;
  await enrollAgent(app, TOKENS.admin, 'web-1');
  const patch = (await callApi(app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string };
  const created = await callApi(app, 'POST', '/v1/rollouts', { patchId: patch.id, target: { all: true } });
  const rolloutId = (created.body as { rollout: { id: string } }).rollout.id;
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, rolloutId, port: (app.server.address() as AddressInfo).port };
}

function open(port: number, rolloutId: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    get(
      {
        host: '127.0.0.1',
        port,
        path: `/v1/rollouts/${rolloutId}/events/stream`,
        headers: { authorization: `Bearer ${TOKENS.viewer}`, ...headers },
      },
      (response) => {
        responses.push(response);
        resolve(response);
      },
    ).on('error', reject);
  });
}

describe('event streams', () => {
  it('refuses a stream beyond maxPerAddress with 429, and admits one again once another closes', async () => {
    const { port, rolloutId } = await start({ maxPerAddress: 3 });
    const held = await Promise.all([1, 2, 3].map(() => open(port, rolloutId)));
    expect(held.map((r) => r.statusCode)).toEqual([200, 200, 200]);
    const refused = await open(port, rolloutId);
    expect(refused.statusCode).toBe(429);
    held[0]?.destroy();
    await expect
      .poll(async () => {
        const again = await open(port, rolloutId);
        again.destroy();
        return again.statusCode;
      })
      .toBe(200);
  });

  it('cuts a reader that leaves too much unread, which resumes from Last-Event-ID losing nothing', async () => {
    const { app, port, rolloutId } = await start({ maxUnreadBytes: 64 * 1024 });
    const slow = await open(port, rolloutId);
    slow.pause(); // reads nothing: the events pile up until the coordinator cuts the stream
    const ended = new Promise<void>((resolve) => slow.socket.once('close', () => resolve()));
    // A busy rollout: 200 audit rows of 1 KiB each, far past 64 KiB unread.
    const { store } = app.fleet;
    for (let i = 0; i < 200; i++) {
      await store.transaction(
        async () =>
          await store.appendEvent(
            { rolloutId, actor: 'test', type: 'test.filler', data: { i, pad: 'x'.repeat(1024) } },
            new Date().toISOString(),
          ),
      );
    }
    const events = await app.fleet.store.events(rolloutId, 0, 10_000);
    expect(events.length).toBeGreaterThan(1);
    await ended;
    expect(coordinator?.logLines.some((l) => l.msg === 'event stream reader too slow; stream ended')).toBe(true);
    // Resuming from the first event replays the rest.
    const first = events[0]?.seq ?? 0;
    const resumed = await open(port, rolloutId, { 'last-event-id': String(first) });
    let text = '';
    const last = events.at(-1)?.seq ?? 0;
    await new Promise<void>((resolve) => {
      resumed.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        if (text.includes(`id: ${last}\n`)) resolve();
      });
    });
    expect(text).not.toContain(`id: ${first}\n`);
  });
});
