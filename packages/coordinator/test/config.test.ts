/** Configuration refused at start-up: the same API token (or name) twice, wherever it came from. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadCoordinatorConfig } from '../src/config.js';
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
