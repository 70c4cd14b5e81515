import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../src/config.js';

const base = { coordinatorUrl: 'https://coordinator.example' };
const load = (flags: Record<string, unknown> = {}, file?: Record<string, unknown>) => {
  const env = { FLEETPATCH_COORDINATOR_URL: base.coordinatorUrl };
  if (file === undefined) return loadAgentConfig({ env, flags });
  return loadAgentConfig({ env: { ...env }, flags: {}, file: writeTemp(file) });
};

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function writeTemp(config: Record<string, unknown>): string {
  const file = join(mkdtempSync(join(tmpdir(), 'agent-config-')), 'agent.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

describe('agent configuration: policy keys', () => {
  it('defaults to the strict policy: loopback checks, no command, no sensitive path, no special mode, quotas', () => {
    const config = load();
    expect(config.file).toEqual({
      allowedRoots: ['/etc', '/opt', '/usr/local/etc'],
      allowedSensitivePaths: [],
      allowSpecialModes: false,
    });
    expect(config.health).toEqual({ allowedCommands: [], allowedDestinations: ['127.0.0.0/8', '::1', 'localhost'] });
    expect(config.journal).toEqual({ maxOrders: 10_000, maxBytes: 512 * 1024 * 1024 });
    expect(config.apt).toBeUndefined();
  });

  it('refuses to start with apt enabled and no allowedPackages', () => {
    expect(() => load({}, { apt: { root: '/' } })).toThrow(/apt\.allowedPackages/);
    expect(load({}, { apt: { allowedPackages: ['nginx'] } }).apt).toMatchObject({ allowDowngrade: false });
    expect(load({}, { apt: { allowedSourcePackages: ['openssl'] } }).apt).toBeDefined();
  });

  it('refuses an allowedDestinations entry it cannot read', () => {
    expect(() => load({}, { health: { allowedDestinations: ['10.0.0.0/99'] } })).toThrow(/prefix length/);
    expect(() => load({}, { health: { allowedDestinations: ['http://x/'] } })).toThrow(/allowedDestinations/);
    expect(
      load({}, { health: { allowedDestinations: ['[::1]:8080', 'db.internal:5432', '10.0.0.0/8'] } }),
    ).toBeDefined();
  });
});
