import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { collectGarbageEvery } from '../../../test/support/forced-gc.js';
import { silentHttpServer } from '../../../test/support/silent-http-server.js';
import { abortAfter } from '../src/abort-after.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** How `promise` ended, or 'still waiting' after `ms`: a hang shows as a clear failure, not a test timeout. */
function settled(promise: Promise<unknown>, ms: number): Promise<string> {
  return Promise.race([
    promise.then(
      () => 'resolved',
      (err: Error) => `rejected: ${err.name}`,
    ),
    new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), ms).unref()),
  ]);
}

describe('abortAfter', () => {
  it('ends a request to a server that never answers on time, though garbage is collected meanwhile', async () => {
    // On Node 20, AbortSignal.any([signal, AbortSignal.timeout(ms)]) loses its timeout in a collection
    // and this fetch waits for ever; each of these collections would take it.
    const url = await silentHttpServer();
    cleanups.push(collectGarbageEvery(10));
    const limited = abortAfter(new AbortController().signal, 200);
    cleanups.push(limited.clear);
    const outcome = await settled(fetch(url, { method: 'POST', body: 'x', signal: limited.signal }), 5000);
    expect(outcome).toBe('rejected: TimeoutError');
    expect((limited.signal.reason as DOMException).name).toBe('TimeoutError');
  });

  it('aborts with the given signal’s reason when that comes first', async () => {
    const url = await silentHttpServer();
    const caller = new AbortController();
    const limited = abortAfter(caller.signal, 60_000);
    cleanups.push(limited.clear);
    const request = fetch(url, { signal: limited.signal });
    caller.abort(new Error('shutting down'));
    expect(await settled(request, 5000)).toBe('rejected: Error');
    expect(limited.signal.reason).toEqual(new Error('shutting down'));
  });

  it('is aborted at once when the given signal already is', () => {
    const limited = abortAfter(AbortSignal.abort('gone'), 60_000);
    limited.clear();
    expect(limited.signal.aborted).toBe(true);
    expect(limited.signal.reason).toBe('gone');
  });

  it('never aborts once cleared, and leaves no timer behind', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const kept = abortAfter(new AbortController().signal, 10);
      const cleared = abortAfter(new AbortController().signal, 10);
      cleared.clear();
      expect(vi.getTimerCount()).toBe(1);
      vi.advanceTimersByTime(10_000);
      expect(kept.signal.aborted).toBe(true);
      expect(cleared.signal.aborted).toBe(false);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('the sources', () => {
  it('never combine AbortSignal.any with AbortSignal.timeout, which a collection can break on Node 20 (abortAfter does it safely)', () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const sources = readdirSync(root, { recursive: true, encoding: 'utf8' }).filter(
      (path) => /^[^/]+\/src\/.*\.ts$/.test(path) && !path.endsWith('abort-after.ts'),
    );
    expect(sources.length).toBeGreaterThan(100);
    const offenders = sources.filter((path) =>
      /AbortSignal\.any\([^;]*AbortSignal\.timeout\(/.test(readFileSync(join(root, path), 'utf8')),
    );
    expect(offenders).toEqual([]);
  });
});
