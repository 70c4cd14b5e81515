/**
 * `GET /v1/patches` answers summaries, never content. A viewer (the least privileged role) used to
 * get every listed patch whole, file content included (up to 1 MiB each, ~1.33 MiB as base64),
 * checked and stringified in one synchronous step: 100 large patches made a 140 MB answer, and four
 * such lists in parallel held /healthz (and every agent socket) for 4-6 s. Now a listed patch is the
 * same few hundred bytes whatever its content, and the whole patch stays on `GET /v1/patches/:id`.
 * Real coordinator listening on 127.0.0.1, real SQLite, real HTTP connections.
 */
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type NewPatchInput, PatchListSchema, PatchSchema, PatchSummarySchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, closedAfterEach, TOKENS } from './support/test-coordinator.js';

const startCoordinator = closedAfterEach();

/** A listed patch's share of the answer, whatever its content: ids, title, ticket, two sha256s, the path. */
const MAX_LISTED_BYTES_PER_PATCH = 1024;

/** The most content a file change may hold, less a little: each patch of these is ~1.33 MiB as base64. */
const LARGE_CONTENT = Buffer.alloc(1024 * 1024 - 16, 0x41);

function largeFilePatch(title: string): NewPatchInput {
  return {
    ...SAMPLE_PATCH_SPEC,
    title,
    change: { ...SAMPLE_PATCH_SPEC.change, content: LARGE_CONTENT.toString('base64'), encoding: 'base64' },
  } as NewPatchInput;
}

interface Answer {
  status: number;
  body: string;
  ms: number;
}

/** One GET on its own connection (a fresh socket, as a parallel client would open). */
function get(port: number, path: string, token?: string): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, agent: false, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            ms: performance.now() - t0,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('GET /v1/patches lists summaries, never content', () => {
  it("names each file by its content's sha256 and size: a listed patch is the same size whatever its content", async () => {
    const { app } = await startCoordinator({});
    const small = await callApi(app, 'POST', '/v1/patches', { ...SAMPLE_PATCH_SPEC, title: 'same' }, TOKENS.operator);
    const listedSmall = await callApi(app, 'GET', '/v1/patches?limit=1', undefined, TOKENS.viewer);
    const large = await callApi(app, 'POST', '/v1/patches', largeFilePatch('same'), TOKENS.operator);
    const listedLarge = await callApi(app, 'GET', '/v1/patches?limit=1', undefined, TOKENS.viewer);
    expect([small.status, large.status, listedSmall.status, listedLarge.status]).toEqual([201, 201, 200, 200]);

    const [summary] = PatchListSchema.parse(listedLarge.body).patches;
    const whole = PatchSchema.parse(large.body);
    expect(summary).toEqual({
      id: whole.id,
      title: 'same',
      ticket: whole.ticket,
      createdBy: 'olga',
      createdAt: whole.createdAt,
      contentDigest: whole.contentDigest,
      change: {
        kind: 'file',
        path: '/etc/app/app.conf',
        mode: '0644',
        owner: 'root',
        group: 'root',
        contentSha256: createHash('sha256').update(LARGE_CONTENT).digest('hex'),
        contentBytes: LARGE_CONTENT.byteLength,
      },
    });
    // The two answers differ by the ids, the digests and the size's digits: a few bytes, not a megabyte.
    const sizeOf = (body: unknown) => JSON.stringify(body).length;
    expect(Math.abs(sizeOf(listedLarge.body) - sizeOf(listedSmall.body))).toBeLessThan(16);
    expect(sizeOf(listedLarge.body)).toBeLessThan(MAX_LISTED_BYTES_PER_PATCH);

    // The whole patch, content and all, is still one request away.
    const one = await callApi(app, 'GET', `/v1/patches/${whole.id}`, undefined, TOKENS.viewer);
    expect(one.status).toBe(200);
    expect(PatchSchema.parse(one.body).change).toMatchObject({ content: LARGE_CONTENT.toString('base64') });
  });

  it('keeps /healthz answering while a viewer lists 100 large patches on 4 connections', async () => {
    const { app } = await startCoordinator({});
    // 100 patches of ~1 MiB files (an operator's doing, or a year of config pushes).
    const patch = largeFilePatch('blob');
    for (let i = 0; i < 100; i++) {
      const created = await callApi(app, 'POST', '/v1/patches', { ...patch, title: `blob ${i}` }, TOKENS.operator);
      expect(created.status).toBe(201);
    }
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;

    // vic (viewer): four parallel lists of the most the page size allows; meanwhile anyone's health check.
    const lists = Array.from({ length: 4 }, () => get(port, '/v1/patches?limit=500', TOKENS.viewer));
    const health = await get(port, '/healthz');
    const answered = await Promise.all(lists);

    for (const list of answered) {
      expect(list.status).toBe(200);
      const { patches } = PatchListSchema.parse(JSON.parse(list.body));
      expect(patches).toHaveLength(100);
      expect(list.body).not.toContain('"content"');
      // Was ~1.4 MB a patch: 140 MB an answer.
      expect(list.body.length).toBeLessThan(100 * MAX_LISTED_BYTES_PER_PATCH);
    }
    expect(health.status).toBe(200);
    // Generous for a loaded CI machine: the summaries hold it ~20 ms here; the whole patches held it 2-6 s.
    expect(health.ms, `GET /healthz took ${Math.round(health.ms)} ms while a viewer listed patches`).toBeLessThan(1000);
  }, 120_000);
});

describe('GET /v1/patches/:id/summary answers one patch as the list shows it', () => {
  it('gives a viewer the summary of a large patch in a few hundred bytes: the title without the content', async () => {
    const { app } = await startCoordinator({});
    const created = await callApi(app, 'POST', '/v1/patches', largeFilePatch('Raise the limit'), TOKENS.operator);
    expect(created.status).toBe(201);
    const { id } = PatchSchema.parse(created.body);

    const one = await callApi(app, 'GET', `/v1/patches/${id}/summary`, undefined, TOKENS.viewer);
    expect(one.status).toBe(200);
    const listed = PatchListSchema.parse((await callApi(app, 'GET', '/v1/patches?limit=1')).body).patches;
    expect(listed).toEqual([PatchSummarySchema.parse(one.body)]);
    expect(one.body).toMatchObject({ title: 'Raise the limit', change: { contentBytes: LARGE_CONTENT.byteLength } });
    expect(one.body).not.toHaveProperty('change.content');
    expect(JSON.stringify(one.body).length).toBeLessThan(MAX_LISTED_BYTES_PER_PATCH);
  });

  it('answers an unknown patch 404, as GET /v1/patches/:id does', async () => {
    const { app } = await startCoordinator({});
    const summary = await callApi(app, 'GET', '/v1/patches/pat_nope/summary', undefined, TOKENS.viewer);
    const whole = await callApi(app, 'GET', '/v1/patches/pat_nope', undefined, TOKENS.viewer);
    expect([summary.status, whole.status]).toEqual([404, 404]);
    expect(summary.body).toEqual(whole.body);
  });
});
