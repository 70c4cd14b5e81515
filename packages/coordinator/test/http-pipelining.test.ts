/**
 * A client that pipelines requests and never reads the answers must not make the coordinator buffer
 * them without bound (found by attack: 300 GETs of a 1 MiB patch took RSS from 100 MB to 730 MB).
 */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

let coordinator: TestCoordinator | undefined;
afterEach(async () => {
  await coordinator?.close();
  coordinator = undefined;
});

describe('a client that pipelines without reading', () => {
  it('is dropped once it has more than maxPipelinedRequests unanswered, and the coordinator keeps serving', async () => {
    coordinator = await startTestCoordinator({ maxPipelinedRequests: 8 });
    const { app } = coordinator;
    const content = 'x'.repeat(512 * 1024);
    const patch = await callApi(app, 'POST', '/v1/patches', {
      ...SAMPLE_PATCH_SPEC,
      change: { ...SAMPLE_PATCH_SPEC.change, content },
    });
    expect(patch.status).toBe(201);
    const id = (patch.body as { id: string }).id;
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as { port: number };

    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.pause(); // never read: answers pile up in the coordinator's write buffer
    const request = `GET /v1/patches/${id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKENS.viewer}\r\n\r\n`;
    socket.write(request.repeat(200));
    const closed = await new Promise<boolean>((resolve) => {
      socket.once('close', () => resolve(true));
      socket.once('error', () => undefined);
      setTimeout(() => resolve(false), 20_000).unref();
    });
    expect(closed).toBe(true);
    expect(
      coordinator.logLines.filter(
        (l) => l.msg === 'client pipelines requests without reading the answers; connection dropped',
      ),
    ).toHaveLength(1);
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
  });

  it('still answers a client that waits for each answer, however large', async () => {
    coordinator = await startTestCoordinator({ maxPipelinedRequests: 1 });
    const { app } = coordinator;
    const content = 'y'.repeat(256 * 1024);
    const patch = await callApi(app, 'POST', '/v1/patches', {
      ...SAMPLE_PATCH_SPEC,
      change: { ...SAMPLE_PATCH_SPEC.change, content },
    });
    const id = (patch.body as { id: string }).id;
    const got = await callApi(app, 'GET', `/v1/patches/${id}`, undefined, TOKENS.viewer);
    expect(got.status).toBe(200);
    expect((got.body as { change: { content: string } }).change.content).toHaveLength(256 * 1024);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as { port: number };
    // Over a real keep-alive connection, one request after the other.
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/v1/patches/${id}`, {
        headers: { authorization: `Bearer ${TOKENS.viewer}` },
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { change: { content: string } }).change.content).toHaveLength(256 * 1024);
    }
  });
});
