/**
 * The dashboard's files, served from memory by exact name with a strict CSP; and a coordinator built
 * without them (tsc alone) that still runs and says how to build them.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorBodySchema } from '@fleetpatch/shared';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { errorHandler, notFoundHandler } from '../src/http/error-handler.js';
import { DASHBOARD_CSP, dashboardRoutes } from '../src/routes/dashboard-routes.js';

const opened: FastifyInstance[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const app of opened.splice(0)) await app.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function serving(dir: string): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler(notFoundHandler);
  await app.register(dashboardRoutes, { dir });
  opened.push(app);
  return app;
}

async function builtDashboard(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetpatch-dashboard-files-'));
  dirs.push(dir);
  await mkdir(join(dir, 'vendor'));
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>t</title>');
  await writeFile(join(dir, 'vendor', 'lib.mjs'), 'export const x = 1;');
  await writeFile(join(dir, 'notes.md'), 'not a served type');
  return dir;
}

describe('the dashboard routes', () => {
  it('serve each built file by its exact path, typed, with the CSP and no-sniff', async () => {
    const app = await serving(await builtDashboard());
    const index = await app.inject({ method: 'GET', url: '/ui/' });
    expect(index.statusCode).toBe(200);
    expect(index.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(index.headers['content-security-policy']).toBe(DASHBOARD_CSP);
    expect(index.headers['x-content-type-options']).toBe('nosniff');
    expect(index.headers['x-frame-options']).toBe('DENY');
    expect(index.body).toBe('<!doctype html><title>t</title>');
    const lib = await app.inject({ method: 'GET', url: '/ui/vendor/lib.mjs' });
    expect(lib.statusCode).toBe(200);
    expect(lib.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(lib.body).toBe('export const x = 1;');
  });

  it('answer 404 for anything else: other types, parent paths, encoded separators', async () => {
    const app = await serving(await builtDashboard());
    for (const url of [
      '/ui/notes.md',
      '/ui/../package.json',
      '/ui/vendor/../../package.json',
      '/ui/..%2fpackage.json',
      '/ui/%2e%2e%2fpackage.json',
      '/ui/x',
    ]) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect(ErrorBodySchema.parse(res.json()).error.code).toBe('not_found');
    }
  });

  it('without a built dashboard, the coordinator still starts and /ui/ says how to build it', async () => {
    const app = await serving(join(tmpdir(), 'fleetpatch-no-such-dashboard-dir'));
    const res = await app.inject({ method: 'GET', url: '/ui/' });
    expect(res.statusCode).toBe(404);
    expect(ErrorBodySchema.parse(res.json()).error.message).toContain('npm run build');
  });
});
