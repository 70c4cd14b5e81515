/** Configuration refused at start-up (the same API token twice, a malformed store), and the store setting. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoordinatorConfigSchema, loadCoordinatorConfig, storeDescription } from '../src/config.js';
import { sha256Hex } from '../src/http/api-auth.js';

const TOKEN = 'a-token-of-sixteen-chars-or-more';
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetpatch-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function load(apiTokens: unknown[], env: Record<string, string> = {}) {
  const file = join(dir, 'coordinator.json');
  writeFileSync(file, JSON.stringify({ apiTokens }));
  return () => loadCoordinatorConfig({ file, env, flags: {} });
}

describe('duplicate API tokens', () => {
  it('the same token twice, with two roles, is refused without printing the token', () => {
    const attempt = load([
      { name: 'ops', token: TOKEN, role: 'viewer' },
      { name: 'root', token: TOKEN, role: 'admin' },
    ]);
    expect(attempt).toThrow(/same token as apiTokens\[0\] \("ops"\).*at apiTokens\[1\]/s);
    expect(attempt).not.toThrow(new RegExp(TOKEN));
  });

  it('a token and its own hash are the same token', () => {
    expect(
      load([
        { name: 'ops', token: TOKEN, role: 'viewer' },
        { name: 'root', tokenSha256: sha256Hex(TOKEN), role: 'admin' },
      ]),
    ).toThrow(/same token as apiTokens\[0\]/);
  });

  it('the same name twice is refused', () => {
    expect(
      load([
        { name: 'ops', token: TOKEN, role: 'viewer' },
        { name: 'ops', token: `${TOKEN}-2`, role: 'operator' },
      ]),
    ).toThrow(/repeats the name "ops" of apiTokens\[0\].*at apiTokens\[1\]\.name/s);
  });

  it('FLEETPATCH_ADMIN_TOKEN repeating a token from the file is refused, and the message says so', () => {
    expect(load([{ name: 'ops', token: TOKEN, role: 'viewer' }], { FLEETPATCH_ADMIN_TOKEN: TOKEN })).toThrow(
      /same token as apiTokens\[0\].*apiTokens\[1\] is FLEETPATCH_ADMIN_TOKEN/s,
    );
  });

  it('distinct tokens and names load, with the auth-failure limits defaulted', () => {
    const config = load([{ name: 'ops', token: TOKEN, role: 'viewer' }], {
      FLEETPATCH_ADMIN_TOKEN: `${TOKEN}-admin`,
    })();
    expect(config.apiTokens.map((t) => t.name)).toEqual(['ops', 'admin']);
    expect(config.authFailures).toEqual({ maxFailures: 20, windowSeconds: 60, trackedAddresses: 10_000 });
  });
});

describe('promotion, change record and webhook delivery settings', () => {
  const parse = (extra: Record<string, unknown>) => CoordinatorConfigSchema.safeParse(extra);

  it('default to no promotion rule, no required record field, and the documented delivery limits', () => {
    const config = CoordinatorConfigSchema.parse({});
    expect(config.promotion).toBeUndefined();
    expect(config.changeRecord).toEqual({ required: [] });
    expect(config.webhookDelivery).toEqual({ timeoutMs: 5000, maxAttempts: 6, baseDelayMs: 500, maxDelayMs: 30_000 });
  });

  it('fill the promotion label and soak, and accept a fractional soak', () => {
    expect(CoordinatorConfigSchema.parse({ promotion: { order: ['staging', 'prod'] } }).promotion).toEqual({
      label: 'env',
      order: ['staging', 'prod'],
      minSoakMinutes: 60,
    });
    expect(parse({ promotion: { order: ['staging', 'prod'], minSoakMinutes: 0.05 } }).success).toBe(true);
  });

  it('refuse an order of one, a repeated environment, a negative soak and an unknown record field, naming each', () => {
    const paths = (extra: Record<string, unknown>) =>
      (parse(extra).error?.issues ?? []).map((issue) => issue.path.join('.'));
    expect(paths({ promotion: { order: ['prod'] } })).toEqual(['promotion.order']);
    expect(paths({ promotion: { order: ['prod', 'prod'] } })).toEqual(['promotion.order']);
    expect(paths({ promotion: { order: ['a', 'b'], minSoakMinutes: -1 } })).toEqual(['promotion.minSoakMinutes']);
    expect(paths({ changeRecord: { required: ['risk', 'approvedByCab'] } })).toEqual(['changeRecord.required.1']);
    expect(paths({ changeRecord: { required: ['risk', 'risk'] } })).toEqual(['changeRecord.required']);
  });
});

describe('webhook endpoint names', () => {
  const paths = (webhooks: unknown[]) =>
    (CoordinatorConfigSchema.safeParse({ webhooks }).error?.issues ?? []).map((issue) => issue.path.join('.'));
  const SLACK = 'https://hooks.slack.com/services/T0001/B0001/xoxSECRET';

  it('are optional, and kept when given', () => {
    const config = CoordinatorConfigSchema.parse({
      webhooks: [{ url: SLACK, name: 'ops-slack' }, { url: 'https://itsm.example.com/hooks/fleetpatch' }],
    });
    expect(config.webhooks.map((webhook) => webhook.name)).toEqual(['ops-slack', undefined]);
  });

  it('are refused when two endpoints share one, or when one is not a plain label', () => {
    expect(
      paths([
        { url: SLACK, name: 'ops' },
        { url: `${SLACK}2`, name: 'ops' },
      ]),
    ).toEqual(['webhooks']);
    expect(paths([{ url: SLACK, name: 'ops slack' }])).toEqual(['webhooks.0.name']);
    // A URL with credentials: fetch refuses it, so every delivery would fail; refused at start instead.
    expect(paths([{ url: 'https://user:pass@itsm.example.com/hooks' }])).toEqual(['webhooks.0.url']);
    expect(paths([{ url: 'https://user@itsm.example.com/hooks' }])).toEqual(['webhooks.0.url']);
    expect(paths([{ url: SLACK, name: '' }])).toEqual(['webhooks.0.name']);
  });
});

describe('the store setting', () => {
  const loadStore = (store: unknown, env: Record<string, string> = {}) => {
    const file = join(dir, 'coordinator.json');
    writeFileSync(file, JSON.stringify(store === undefined ? {} : { store }));
    return () => loadCoordinatorConfig({ file, env, flags: {} });
  };
  const STORE_URL = 'postgres://fleetpatch:s3cret@db.example:5432/fleetpatch?sslmode=require';

  it('is SQLite in dataDir unless said', () => {
    const config = loadStore(undefined)();
    expect(config.store).toEqual({ kind: 'sqlite' });
    expect(storeDescription(config)).toBe(`sqlite ${join(resolve('.data/coordinator'), 'fleetpatch.db')}`);
  });

  it('is PostgreSQL by its URL, from the file or from FLEETPATCH_STORE_URL (which wins), its password never shown', () => {
    // The group's lease length has its default; the coordinator's name in its group is left to start-up.
    expect(loadStore({ kind: 'postgres', url: STORE_URL })().store).toEqual({
      kind: 'postgres',
      url: STORE_URL,
      leaseMs: 10_000,
    });
    const fromEnv = loadStore({ kind: 'sqlite' }, { FLEETPATCH_STORE_URL: STORE_URL })();
    expect(fromEnv.store).toEqual({ kind: 'postgres', url: STORE_URL, leaseMs: 10_000 });
    expect(storeDescription(fromEnv)).toBe(
      'postgres postgres://fleetpatch:***@db.example:5432/fleetpatch?sslmode=require',
    );
  });

  it("takes a group member's name and lease from the file, the name also from FLEETPATCH_COORDINATOR_ID", () => {
    const fromFile = loadStore({ kind: 'postgres', url: STORE_URL, coordinatorId: 'coord-a', leaseMs: 3000 })();
    expect(fromFile.store).toEqual({ kind: 'postgres', url: STORE_URL, coordinatorId: 'coord-a', leaseMs: 3000 });
    // The URL from the environment keeps the file's group settings; the environment's name wins.
    const fromEnv = loadStore(
      { kind: 'postgres', url: 'postgres://other/db', leaseMs: 3000 },
      { FLEETPATCH_STORE_URL: STORE_URL, FLEETPATCH_COORDINATOR_ID: 'coord-b' },
    )();
    expect(fromEnv.store).toEqual({ kind: 'postgres', url: STORE_URL, coordinatorId: 'coord-b', leaseMs: 3000 });
    expect(loadStore({ kind: 'postgres', url: STORE_URL, coordinatorId: 'a b' })).toThrow(/at store\.coordinatorId/);
    expect(loadStore({ kind: 'postgres', url: STORE_URL, leaseMs: 100 })).toThrow(/at store\.leaseMs/);
    // A name for a SQLite store, which has no group, is refused rather than ignored.
    expect(loadStore({ kind: 'sqlite' }, { FLEETPATCH_COORDINATOR_ID: 'coord-c' })).toThrow(
      /Unrecognized key: "coordinatorId".*at store/s,
    );
  });

  it('refuses an unknown kind, a missing or malformed URL and unknown keys, naming the field', () => {
    expect(loadStore({ kind: 'mysql' })).toThrow(/invalid coordinator configuration.*at store\.kind/s);
    expect(loadStore({ kind: 'postgres' })).toThrow(/at store\.url/);
    expect(loadStore({ kind: 'postgres', url: 'mysql://db/x' })).toThrow(
      /must be a postgres:\/\/ or postgresql:\/\/ URL.*at store\.url/s,
    );
    expect(loadStore({}, { FLEETPATCH_STORE_URL: 'db.example:5432' })).toThrow(/at store\.url/);
    expect(loadStore({ kind: 'sqlite', url: STORE_URL })).toThrow(/Unrecognized key: "url".*at store/s);
  });
});

describe('agentLimits: the bytes unauthenticated sockets may send', () => {
  it('default to 64 MiB in all and 16 MiB from one address, and refuse less than one 4 MiB hello, naming the field', () => {
    const MiB = 1024 * 1024;
    expect(CoordinatorConfigSchema.parse({}).agentLimits).toMatchObject({
      maxPendingBytes: 64 * MiB,
      maxPendingBytesPerAddress: 16 * MiB,
    });
    for (const field of ['maxPendingBytes', 'maxPendingBytesPerAddress']) {
      const refused = CoordinatorConfigSchema.safeParse({ agentLimits: { [field]: 4 * MiB - 1 } });
      expect(refused.success).toBe(false);
      expect(refused.error?.issues.map((issue) => issue.path.join('.'))).toEqual([`agentLimits.${field}`]);
      expect(CoordinatorConfigSchema.safeParse({ agentLimits: { [field]: 4 * MiB } }).success).toBe(true);
    }
  });
});

describe('a setting the environment or a flag gave', () => {
  it("is named with what was given when it is refused, the file's settings alone are not", () => {
    const file = join(dir, 'coordinator.json');
    writeFileSync(file, JSON.stringify({ logLevel: 'loud' }));
    const refusal = (env: Record<string, string>, flags: Record<string, string> = {}) => {
      try {
        loadCoordinatorConfig({ file, env, flags });
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error('the configuration was taken');
    };
    expect(refusal({ FLEETPATCH_PORT: 'abc' })).toMatch(/\(port is FLEETPATCH_PORT="abc"\)/);
    expect(refusal({}, { port: '70000' })).toMatch(/\(port is --port="70000"\)/);
    // logLevel comes from the file here: nothing to add; FLEETPATCH_LOG_LEVEL would be named.
    expect(refusal({})).not.toMatch(/\(logLevel is/);
    expect(refusal({ FLEETPATCH_LOG_LEVEL: 'louder' })).toMatch(/\(logLevel is FLEETPATCH_LOG_LEVEL="louder"\)/);
  });
});
