import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../src/config.js';
import { coordinatorTlsOptions, normalizePin, PinSha256Schema, TlsRefusalLog } from '../src/coordinator-tls.js';

const HEX = 'ab'.repeat(32);
const OPENSSL_STYLE = HEX.toUpperCase().match(/../g)?.join(':') ?? '';
const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-agent-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const load = (extra: Record<string, unknown>, flags: Record<string, unknown> = {}) => {
  const file = join(dir, `agent-${Math.random()}.json`);
  writeFileSync(file, JSON.stringify({ dataDir: dir, ...extra }));
  return loadAgentConfig({ file, env: {}, flags });
};

describe('pinSha256', () => {
  it('accepts hex with or without colons, in any case, and normalises it', () => {
    expect(normalizePin(` ${OPENSSL_STYLE} `)).toBe(HEX);
    expect(PinSha256Schema.parse(OPENSSL_STYLE)).toBe(HEX);
    expect(PinSha256Schema.parse(HEX.toUpperCase())).toBe(HEX);
  });

  it('refuses anything that is not 32 bytes of hex', () => {
    expect(PinSha256Schema.safeParse(HEX.slice(2)).success).toBe(false);
    expect(PinSha256Schema.safeParse(`${HEX.slice(2)}zz`).success).toBe(false);
  });

  it('is checked after the host name, and names both fingerprints when it does not match', () => {
    const cert = { fingerprint256: OPENSSL_STYLE, subjectaltname: 'IP Address:127.0.0.1', subject: {} };
    const check = (pin: string, host = '127.0.0.1') =>
      coordinatorTlsOptions({ pinSha256: pin }).checkServerIdentity(host, cert as unknown as PeerCertificate);
    expect(check(HEX)).toBeUndefined();
    expect(check('cd'.repeat(32))).toMatchObject({
      code: 'ERR_FLEETPATCH_PIN_MISMATCH',
      expected: 'cd'.repeat(32),
      got: HEX,
    });
    expect(check(HEX, '10.0.0.1')).toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });
});

describe('agent TLS configuration', () => {
  it('refuses an http:// or ws:// coordinator unless allowInsecure, saying how to fix it', () => {
    for (const url of ['http://fleet:7420', 'ws://fleet:7420']) {
      expect(() => load({ coordinatorUrl: url })).toThrow(/not encrypted[\s\S]*--allow-insecure[\s\S]*coordinatorUrl/);
      expect(load({ coordinatorUrl: url }, { allowInsecure: true }).allowInsecure).toBe(true);
    }
    expect(load({ coordinatorUrl: 'https://fleet:7420' }).allowInsecure).toBe(false);
  });

  it('reads tls.caFile once, at load, and makes a missing or non-PEM file a configuration error', () => {
    const pem = join(dir, 'not-a-cert.pem');
    writeFileSync(pem, 'hello');
    expect(() => load({ coordinatorUrl: 'https://fleet', tls: { caFile: join(dir, 'missing.pem') } })).toThrow(
      /cannot read tls.caFile .*missing.pem: ENOENT/,
    );
    expect(() => load({ coordinatorUrl: 'https://fleet' }, { caFile: pem })).toThrow(
      /tls.caFile .* holds no PEM certificate/,
    );
    expect(() => load({ coordinatorUrl: 'https://fleet', tls: { pinSha256: 'abc' } })).toThrow(/SHA-256 fingerprint/);
  });
});

describe('TlsRefusalLog', () => {
  it('logs a refusal at error once per reason and minute, repeats at debug, and starts over after a success', () => {
    const lines: { level: number; msg: string }[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    let now = 0;
    const refusals = new TlsRefusalLog(log, { now: () => now });
    const expired = Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' });
    const unknownCa = Object.assign(new Error('x'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    expect(refusals.report(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(false);
    expect(refusals.report(expired)).toBe(true);
    refusals.report(expired);
    now = 61_000;
    refusals.report(expired);
    refusals.report(unknownCa);
    refusals.reset();
    refusals.report(unknownCa);
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [50, 'coordinator certificate refused: expired'],
      [20, 'coordinator certificate refused: expired'],
      [50, 'coordinator certificate refused: expired'],
      [50, 'coordinator certificate refused: unknown CA (not signed by tls.caFile or the system store)'],
      [50, 'coordinator certificate refused: unknown CA (not signed by tls.caFile or the system store)'],
    ]);
  });
});
