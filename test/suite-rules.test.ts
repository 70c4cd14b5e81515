import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import config from '../vitest.config.js';
import { inCi, readSkipAllowList, unlistedSkips } from './support/skip-allowlist.js';

// The rules every test lives by: it asserts something, and in CI it does not skip unless the
// allow-list says why. The CI rule runs for real: vitest on a fixture with one skipped test, CI on
// and off, with and without an allow-list entry for it.

const FIXTURE = fileURLToPath(new URL('./fixtures/skip-allowlist/', import.meta.url));
const VITEST = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));
const execFileAsync = promisify(execFile);
const SKIPPED = 'guarded.check.ts > a fixture suite > cannot run here (needs root)';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-skips-'));
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs vitest on the fixture with `allowList` written to a file; resolves with its exit code and output. */
async function runFixture(allowList: unknown, env: Record<string, string>): Promise<{ code: number; output: string }> {
  const file = join(work, `allowlist-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify(allowList));
  // The outer run's own variables (VITEST_WORKER_ID, …) must not make the inner one think it is a worker.
  const outer = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('VITEST')));
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [VITEST, 'run', '--root', FIXTURE], {
      cwd: FIXTURE,
      env: { ...outer, CI: '', ...env, FIXTURE_ALLOWLIST: file, NO_COLOR: '1' },
    });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const failed = err as { code?: unknown; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, output: `${failed.stdout}${failed.stderr}` };
  }
}

describe('every test asserts something', () => {
  it('fails a test in which no expect ran, in every project', () => {
    expect(config.test?.expect?.requireAssertions).toBe(true);
    // A project sees the root's test options only when it extends the root config.
    const projects = config.test?.projects ?? [];
    expect(projects.length).toBeGreaterThan(0);
    for (const project of projects) expect(project, JSON.stringify(project)).toMatchObject({ extends: true });
  });
});

describe('in CI, a skipped test fails the run unless the allow-list gives its reason', () => {
  it('fails the run and names the skipped test when it is not listed', async () => {
    const { code, output } = await runFixture({}, { CI: 'true' });
    expect(output).toContain('1 passed | 1 skipped');
    expect(output).toContain('1 skipped test(s) not in');
    expect(output).toContain(`  - ${SKIPPED}`);
    expect(code).toBe(1);
  });

  it('passes when a describe above the skipped test is listed with a reason', async () => {
    const { code, output } = await runFixture(
      { 'guarded.check.ts > a fixture suite': 'the fixture cannot run it' },
      {
        CI: 'true',
      },
    );
    expect(output).toContain('1 passed | 1 skipped');
    expect(output).not.toContain('not in');
    expect(code, output).toBe(0);
  });

  it('does not check outside CI', async () => {
    const { code, output } = await runFixture({}, {});
    expect(output).toContain('1 passed | 1 skipped');
    expect(code, output).toBe(0);
  });

  it('refuses an entry without a reason before any test runs', async () => {
    const { code, output } = await runFixture({ [SKIPPED]: '' }, { CI: 'true' });
    expect(output).toContain('needs a reason');
    expect(output).not.toContain('1 passed');
    expect(code).not.toBe(0);
  });
});

describe('the allow-list rules', () => {
  it('matches a test by its full name or by a file or describe above it, never by a mere prefix', () => {
    const skipped = ['a.test.ts > suite > one', 'a.test.ts > suite two > other', 'b.test.ts > x'];
    expect(unlistedSkips(skipped, {})).toEqual(skipped);
    expect(unlistedSkips(skipped, { 'a.test.ts > suite': 'r' })).toEqual([
      'a.test.ts > suite two > other',
      'b.test.ts > x',
    ]);
    expect(unlistedSkips(skipped, { 'a.test.ts': 'r', 'b.test.ts > x': 'r' })).toEqual([]);
  });

  it('reads CI the way CI services set it', () => {
    expect([undefined, '', 'false', '0', 'FALSE'].map((CI) => inCi(CI === undefined ? {} : { CI }))).toEqual([
      false,
      false,
      false,
      false,
      false,
    ]);
    expect(['true', '1', 'yes'].map((CI) => inCi({ CI }))).toEqual([true, true, true]);
  });

  it('the repository allow-list is well formed, every entry with a reason', () => {
    const file = fileURLToPath(new URL('./skip-allowlist.json', import.meta.url));
    expect(() => readSkipAllowList(file)).not.toThrow();
  });
});
