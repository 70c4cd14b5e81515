/** Shutdown runs every closer even when one throws, logs each failure, and reports them all. */
import { rmSync } from 'node:fs';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebhookNotifier } from '../src/notify/webhook-notifier.js';
import { runShutdownSteps } from '../src/shutdown-steps.js';
import { startTestCoordinator } from './support/test-coordinator.js';

function logCapture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { log, lines };
}

describe('runShutdownSteps', () => {
  it('runs every step after failures, logs each, and throws them together', async () => {
    const { log, lines } = logCapture();
    const ran: string[] = [];
    const first = new Error('hub stuck');
    const second = new Error('webhooks stuck');
    const result = runShutdownSteps(
      [
        { name: 'engine', close: () => void ran.push('engine') },
        {
          name: 'hub',
          close: async () => {
            ran.push('hub');
            throw first;
          },
        },
        {
          name: 'webhooks',
          close: () => {
            ran.push('webhooks');
            throw second;
          },
        },
        { name: 'last', close: () => void ran.push('last') },
      ],
      log,
    );
    const err = await result.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(ran).toEqual(['engine', 'hub', 'webhooks', 'last']);
    expect(err).toBeInstanceOf(AggregateError);
    expect((err as AggregateError).errors).toEqual([first, second]);
    expect(lines.filter((l) => l.msg === 'shutdown step failed').map((l) => l.step)).toEqual(['hub', 'webhooks']);
  });

  it('resolves when every step closes', async () => {
    const { log, lines } = logCapture();
    await expect(runShutdownSteps([{ name: 'a', close: async () => {} }], log)).resolves.toBeUndefined();
    expect(lines).toEqual([]);
  });
});

describe('closing the coordinator', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('still stops what comes after a hub that fails to close, and closes the store', async () => {
    const started = await startTestCoordinator();
    const { hub, store } = started.app.fleet;
    const stuck = new Error('hub stuck');
    vi.spyOn(hub, 'close').mockRejectedValueOnce(stuck);
    // The notifier is the app's own: its stop is the closer right after the hub's.
    const stopNotifier = vi.spyOn(WebhookNotifier.prototype, 'stop');

    const closed = await started.app.close().then(
      () => undefined,
      (e: unknown) => e,
    );
    rmSync(started.dataDir, { recursive: true, force: true });

    expect(stopNotifier).toHaveBeenCalledOnce();
    expect(closed).toBeInstanceOf(AggregateError);
    expect((closed as AggregateError).errors).toEqual([stuck]);
    const failed = started.logLines.filter((l) => l.msg === 'shutdown step failed');
    expect(failed.map((l) => l.step)).toEqual(['hub']);
    await expect(store.agents.list()).rejects.toThrow(); // onClose still ran: the database is closed
  });
});
