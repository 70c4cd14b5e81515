/** HTTP bodies are capped: an oversized request is refused with 413 and stores nothing. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { CoordinatorConfigSchema } from '../src/config.js';

const TOKEN = 'admin-token-0123456789';
let dataDir: string;
let app: FastifyInstance;

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'fleetpatch-limits-'));
  const config = CoordinatorConfigSchema.parse({
    dataDir,
    bodyLimitBytes: 4096,
    apiTokens: [{ name: 'admin', token: TOKEN, role: 'admin' }],
  });
  app = await buildApp(config, { logger: pino({ level: 'silent' }) });
});

afterEach(async () => {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
});

it('refuses a body over bodyLimitBytes with 413 and a clear error, storing nothing', async () => {
  const res = await app.inject({
    method: 'POST',
    url: '/v1/patches',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ title: 'x', problem: 'p'.repeat(8192) }),
  });
  expect(res.statusCode).toBe(413);
  expect(res.json()).toMatchObject({
    error: { code: 'payload_too_large', message: expect.stringMatching(/too large/i) },
  });
  const list = await app.inject({ method: 'GET', url: '/v1/patches', headers: { authorization: `Bearer ${TOKEN}` } });
  expect(list.json()).toEqual({ patches: [] });
});
