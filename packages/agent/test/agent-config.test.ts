import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type AgentFlags, loadAgentConfig } from '../src/config.js';
import { checkAgentConfig } from '../src/config-check.js';

const base = { coordinatorUrl: 'https://coordinator.example' };
const load = (flags: Record<string, unknown> = {}, file?: Record<string, unknown>) => {
  const env = { FLEETPATCH_COORDINATOR_URL: base.coordinatorUrl };
  if (file === undefined) return loadAgentConfig({ env, flags });
  return loadAgentConfig({ env: { ...env }, flags: {}, file: writeTemp(file) });
};

/** Every file and data dir these tests write, in one directory removed when the file is done. */
const scratch = mkdtempSync(join(tmpdir(), 'agent-config-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function writeTemp(config: Record<string, unknown>): string {
  const file = join(mkdtempSync(join(scratch, 'config-')), 'agent.json');
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

describe('agent configuration: coordinators', () => {
  const A = 'https://coord-a:7420';
  const B = 'https://coord-b:7420';
  const fromFile = (config: Record<string, unknown>, env: Record<string, string> = {}, flags: AgentFlags = {}) =>
    loadAgentConfig({ env, flags, file: writeTemp(config) });

  it('takes one coordinatorUrl as a list of one, and a list as it is, in order', () => {
    const single = fromFile({ coordinatorUrl: A });
    expect(single.coordinatorUrls).toEqual([A]);
    expect(single).not.toHaveProperty('coordinatorUrl');
    expect(fromFile({ coordinatorUrls: [B, A] }).coordinatorUrls).toEqual([B, A]);
  });

  it('refuses both keys at once, naming the field, and neither', () => {
    expect(() => fromFile({ coordinatorUrl: A, coordinatorUrls: [B] })).toThrow(
      /give coordinatorUrl \(one\) or coordinatorUrls \(a list\), not both[\s\S]*at coordinatorUrls/,
    );
    expect(() => fromFile({})).toThrow(/required[\s\S]*at coordinatorUrl/);
  });

  it('refuses a bad entry by its index: not a URL, empty, in clear, twice, none, more than 16', () => {
    expect(() => fromFile({ coordinatorUrls: [A, 'ftp://coord-b'] })).toThrow(
      /must be an http\(s\):\/\/ or ws\(s\):\/\/ URL[\s\S]*at coordinatorUrls\[1\]/,
    );
    expect(() => fromFile({ coordinatorUrls: [A, ''] })).toThrow(/at coordinatorUrls\[1\]/);
    expect(() => fromFile({ coordinatorUrls: [A, 'http://coord-b:7420'] })).toThrow(
      /not encrypted[\s\S]*--allow-insecure[\s\S]*at coordinatorUrls\[1\]/,
    );
    expect(fromFile({ coordinatorUrls: [A, 'ws://coord-b:7420'], allowInsecure: true }).coordinatorUrls).toHaveLength(
      2,
    );
    expect(() => fromFile({ coordinatorUrls: [A, B, A] })).toThrow(/lists a URL twice[\s\S]*at coordinatorUrls/);
    expect(() => fromFile({ coordinatorUrls: [] })).toThrow(/at coordinatorUrls/);
    const seventeen = Array.from({ length: 17 }, (_, i) => `https://coord-${i}:7420`);
    expect(() => fromFile({ coordinatorUrls: seventeen })).toThrow(/at coordinatorUrls/);
    expect(fromFile({ coordinatorUrls: seventeen.slice(1) }).coordinatorUrls).toHaveLength(16);
  });

  it('reads FLEETPATCH_COORDINATOR_URLS comma-separated, in place of what the file said', () => {
    const env = { FLEETPATCH_COORDINATOR_URLS: `${A} , ${B}` };
    expect(fromFile({ coordinatorUrl: 'https://old:7420' }, env).coordinatorUrls).toEqual([A, B]);
    expect(fromFile({ coordinatorUrls: [B, A] }, { FLEETPATCH_COORDINATOR_URL: A }).coordinatorUrls).toEqual([A]);
    expect(() => fromFile({}, { FLEETPATCH_COORDINATOR_URLS: `${A},` })).toThrow(/at coordinatorUrls\[1\]/);
    expect(() => fromFile({}, { FLEETPATCH_COORDINATOR_URL: A, FLEETPATCH_COORDINATOR_URLS: B })).toThrow(
      /FLEETPATCH_COORDINATOR_URL or FLEETPATCH_COORDINATOR_URLS, not both/,
    );
  });

  it('takes --coordinator, repeated, in place of the environment and the file', () => {
    const env = { FLEETPATCH_COORDINATOR_URLS: 'https://env-1:7420,https://env-2:7420' };
    expect(fromFile({ coordinatorUrls: [B] }, env, { coordinatorUrls: [A] }).coordinatorUrls).toEqual([A]);
    expect(fromFile({ coordinatorUrl: B }, env, { coordinatorUrls: [B, A] }).coordinatorUrls).toEqual([B, A]);
    // One flag is `coordinatorUrl`: its error names the key the person wrote.
    expect(() => fromFile({}, {}, { coordinatorUrls: ['http://coord-a'] })).toThrow(/at coordinatorUrl$/m);
  });

  it('--check-config lists every coordinator in the order they are tried, flagging those without TLS', async () => {
    const config = fromFile({
      coordinatorUrls: [A, 'ws://coord-b:7420'],
      allowInsecure: true,
      dataDir: mkdtempSync(join(scratch, 'data-')),
    });
    const { text } = await checkAgentConfig(config);
    expect(text).toContain(`coordinators:  ${A}\n               ws://coord-b:7420  (WARNING: no TLS)\n`);
    const single = await checkAgentConfig({ ...config, coordinatorUrls: [A] });
    expect(single.text).toContain(`coordinator:   ${A}\nidentity:`);
  });
});

describe('agent configuration: joinTokenFile', () => {
  const TOKEN = `fpj_${'a'.repeat(43)}`;
  const tokenFile = (mode: number) => {
    const file = join(mkdtempSync(join(scratch, 'token-')), 'join-token');
    writeFileSync(file, `${TOKEN}\n`, { mode });
    chmodSync(file, mode);
    return file;
  };

  it('reads a join token file only its owner can read', () => {
    expect(load({}, { ...base, joinTokenFile: tokenFile(0o600) }).joinToken).toBe(TOKEN);
    expect(load({}, { ...base, joinTokenFile: tokenFile(0o400) }).joinToken).toBe(TOKEN);
  });

  it.each([0o644, 0o640, 0o604])('refuses one mode %o lets others read, saying how to mend it', (mode) => {
    const file = tokenFile(mode);
    expect(() => load({}, { ...base, joinTokenFile: file })).toThrow(
      `join token file ${file} is readable by others (mode 0${mode.toString(8)}): chmod 600 ${file}`,
    );
  });

  it('lets an enrolled agent start with a spent token file left behind, whatever its mode', () => {
    const dataDir = mkdtempSync(join(scratch, 'data-'));
    writeFileSync(join(dataDir, 'credential.json'), '{}');
    const config = load({}, { ...base, dataDir, joinTokenFile: tokenFile(0o644) });
    expect(config.dataDir).toBe(dataDir);
  });
});

describe('agent configuration: progressCoalesceMs', () => {
  it('holds progress 200 ms by default; the file or FLEETPATCH_PROGRESS_COALESCE_MS sets it, 0 included', () => {
    expect(load().progressCoalesceMs).toBe(200);
    expect(load({}, { ...base, progressCoalesceMs: 0 }).progressCoalesceMs).toBe(0);
    const env = { FLEETPATCH_COORDINATOR_URL: base.coordinatorUrl, FLEETPATCH_PROGRESS_COALESCE_MS: '50' };
    expect(loadAgentConfig({ env, flags: {} }).progressCoalesceMs).toBe(50);
  });

  it('refuses a negative, fractional or over-long hold, naming the field', () => {
    for (const bad of [-1, 1.5, 60_000, 'soon'])
      expect(() => load({}, { ...base, progressCoalesceMs: bad })).toThrow(/progressCoalesceMs/);
    const env = { FLEETPATCH_COORDINATOR_URL: base.coordinatorUrl, FLEETPATCH_PROGRESS_COALESCE_MS: 'x' };
    expect(() => loadAgentConfig({ env, flags: {} })).toThrow(/progressCoalesceMs/);
  });
});
