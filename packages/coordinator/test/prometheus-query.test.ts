import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { collectGarbageEvery } from '../../../test/support/forced-gc.js';
import { silentHttpServer } from '../../../test/support/silent-http-server.js';
import { MAX_ANSWER_BYTES, queryPrometheus } from '../src/analysis/prometheus-query.js';
import { serveMetricAnswer } from './support/metric-answer-server.js';

const MiB = 1024 * 1024;

/** A vector answer of one series labelled `host`, padded with trailing spaces to `size` bytes when given. */
function vectorAnswer(host: string, size?: number): Buffer {
  const json = Buffer.from(
    JSON.stringify({
      status: 'success',
      data: { resultType: 'vector', result: [{ metric: { host }, value: [1_700_000_000, '0.5'] }] },
    }),
  );
  return size === undefined ? json : Buffer.concat([json, Buffer.alloc(size - json.length, 0x20)]);
}

/** Writes `body` in pieces of `pieceBytes` as the socket takes them (chunked: no content-length). */
function writeInPieces(res: ServerResponse, body: Buffer, pieceBytes: number): void {
  let at = 0;
  const pump = () => {
    while (at < body.length) {
      const piece = body.subarray(at, at + pieceBytes);
      at += piece.length;
      if (!res.write(piece)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  res.writeHead(200, { 'content-type': 'application/json' });
  pump();
}

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

describe('queryPrometheus bounds the answer while reading it', () => {
  it('stops reading an endless answer once it passes the cap and closes the connection', async () => {
    // The analysis address is the operator's to choose; the server behind it chooses how much it sends.
    const endless = 256 * MiB;
    const chunk = Buffer.alloc(MiB, 0x20);
    let sent = 0;
    const server = await serveMetricAnswer((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const pump = () => {
        while (sent < endless && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (!res.destroyed) res.end();
      };
      pump();
    });

    const answer = await queryPrometheus(server.origin, 'up', 30_000, new AbortController().signal);

    expect(answer).toEqual({
      ok: false,
      reason: `the answer from ${server.origin} exceeded ${MAX_ANSWER_BYTES} bytes`,
    });
    await server.hungUp;
    // The cap, plus what the loopback socket's buffers took before the connection was closed.
    expect(sent).toBeLessThanOrEqual(MAX_ANSWER_BYTES + 16 * MiB);
  });

  it('refuses an answer whose content-length is over the cap without waiting for its body', async () => {
    const server = await serveMetricAnswer((res) => {
      // Headers only: a query that waited for this body would end at its timeout instead.
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(MAX_ANSWER_BYTES + 1) });
      res.flushHeaders();
    });

    const answer = await queryPrometheus(server.origin, 'up', 10_000, new AbortController().signal);

    expect(answer).toEqual({
      ok: false,
      reason: `the answer from ${server.origin} exceeded ${MAX_ANSWER_BYTES} bytes`,
    });
    await server.hungUp;
  });

  it('reads an answer of exactly the cap', async () => {
    const server = await serveMetricAnswer((res) =>
      writeInPieces(res, vectorAnswer('web-1', MAX_ANSWER_BYTES), 64 * 1024),
    );

    const answer = await queryPrometheus(server.origin, 'up', 10_000, new AbortController().signal);

    expect(answer).toEqual({ ok: true, samples: [{ labels: { host: 'web-1' }, value: 0.5 }] });
  });

  it('decodes a character whose bytes arrive in two pieces', async () => {
    const body = vectorAnswer('wéb-1');
    const splitInsideÉ = body.indexOf(Buffer.from('é')) + 1;
    const server = await serveMetricAnswer((res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(body.subarray(0, splitInsideÉ));
      // Apart in time, so that the client reads them as two pieces.
      void sleep(50).then(() => res.end(body.subarray(splitInsideÉ)));
    });

    const answer = await queryPrometheus(server.origin, 'up', 10_000, new AbortController().signal);

    expect(answer).toEqual({ ok: true, samples: [{ labels: { host: 'wéb-1' }, value: 0.5 }] });
  });
});
