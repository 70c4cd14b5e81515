import { describe, expect, it, onTestFinished } from 'vitest';
import { collectGarbageEvery } from '../../../test/support/forced-gc.js';
import { silentHttpServer } from '../../../test/support/silent-http-server.js';
import { queryPrometheus } from '../src/analysis/prometheus-query.js';

describe('queryPrometheus', () => {
  it('is inconclusive when the server never answers within the timeout, though garbage is collected meanwhile', async () => {
    const origin = await silentHttpServer();
    // A collection once took the timeout away (AbortSignal.any on Node 20) and the query waited for ever.
    onTestFinished(collectGarbageEvery(10));
    const answer = await queryPrometheus(origin, 'up', 300, new AbortController().signal);
    expect(answer).toEqual({ ok: false, reason: `no answer from ${origin} within 300 ms` });
  });

  it('gives up at once when the caller aborts', async () => {
    const origin = await silentHttpServer();
    const caller = new AbortController();
    const answer = queryPrometheus(origin, 'up', 60_000, caller.signal);
    caller.abort(new Error('analysis stopped'));
    expect(await answer).toEqual({ ok: false, reason: `query to ${origin} failed: analysis stopped` });
  });
});
