/**
 * What runs is one bundled file per program (scripts/bundle.mjs): these are checked as the files
 * they are, started as real processes. Every other end-to-end test runs them too; this one checks
 * what only a bundle can get wrong — files found relative to the code (the dashboard, the Swagger
 * UI's static files, the package's version), the dependencies left in node_modules, the chunks
 * loaded on demand — and that the bundle script refuses a dependency that looks for its own files.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_BIN, COORDINATOR_BIN, type CoordinatorProcess, startCoordinator } from '../scripts/lib/local-fleet.mjs';
import { CLI } from './support/cli-process.js';

const REPO = join(import.meta.dirname, '..');
const ADMIN_TOKEN = 'e2e-bundle-admin-token-0123456789';

async function versionOf(pkg: string): Promise<string> {
  return (JSON.parse(await readFile(join(REPO, 'packages', pkg, 'package.json'), 'utf8')) as { version: string })
    .version;
}

function run(bin: string, ...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });
}

describe('the bundled programs', () => {
  let work: string;
  let coordinator: CoordinatorProcess;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-bundles-'));
    coordinator = await startCoordinator({
      dataDir: join(work, 'coordinator'),
      apiTokens: [{ name: 'admin', token: ADMIN_TOKEN, role: 'admin' }],
    });
  });
  afterAll(async () => {
    await coordinator?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('are each one executable file in dist/bin, named as the package’s bin names it', async () => {
    for (const [pkg, bin] of [
      ['agent', AGENT_BIN],
      ['coordinator', COORDINATOR_BIN],
      ['cli', CLI],
    ] as const) {
      const manifest = JSON.parse(await readFile(join(REPO, 'packages', pkg, 'package.json'), 'utf8')) as {
        bin: Record<string, string>;
      };
      expect(Object.values(manifest.bin).map((path) => join(REPO, 'packages', pkg, path))).toEqual([bin]);
      expect((await stat(bin)).mode & 0o111).not.toBe(0);
      expect(await readFile(bin, 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
    }
  });

  it('the coordinator serves the dashboard, the Swagger UI and its own version', async () => {
    const page = await fetch(`${coordinator.url}/ui/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    // The Swagger UI's files come from @fastify/swagger-ui, left in node_modules beside its code.
    const docs = await fetch(`${coordinator.url}/docs/static/index.html`, { redirect: 'follow' });
    expect(docs.status).toBe(200);
    expect(await docs.text()).toMatch(/swagger/i);
    const metrics = await fetch(`${coordinator.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(await metrics.text()).toContain(`fleetpatch_build_info{version="${await versionOf('coordinator')}"`);
  });

  // Its on-demand chunks: undici (a CA of its own) runs in tls.test.ts, through this same file.
  it('the CLI says its own version', async () => {
    const version = run(CLI, '--version');
    expect(version.stderr).toBe('');
    expect(version.stdout.trim()).toBe(await versionOf('cli'));
  });

  it('the agent checks a configuration and says what is wrong with it', () => {
    const check = run(AGENT_BIN, '--check-config', '--coordinator', 'ftp://nowhere', '--data-dir', join(work, 'agent'));
    expect(check.status).not.toBe(0);
    expect(`${check.stdout}${check.stderr}`).toMatch(/coordinator/);
    expect(check.stderr).not.toMatch(/Cannot find module|ERR_MODULE_NOT_FOUND/);
  });

  it('holds no code that looks for files beside its own (what the bundle script refuses)', async () => {
    for (const bin of [AGENT_BIN, COORDINATOR_BIN, CLI]) {
      const dir = join(bin, '..');
      for (const file of await readdir(dir)) {
        const code = (await readFile(join(dir, file), 'utf8'))
          .split('\n')
          .filter((line) => !/^\s*(\*|\/\/)/.test(line));
        expect(
          code.filter((line) => /\b__(dirname|filename)\b/.test(line)),
          `${file}`,
        ).toEqual([]);
      }
    }
  });
});
