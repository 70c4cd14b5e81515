import type { HostRunState, RolloutHostPage } from '@fleetpatch/shared';
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../src/api-client.js';
import type { CliContext } from '../src/cli-context.js';
import { buildProgram } from '../src/program.js';
import { host } from './status-fixture.js';

// `fleetpatch rollout hosts` against a fake API that pages as the coordinator does (by wave and
// position, `limit` at most 1000, `next` the cursor after the page's last host): the requests it makes,
// what it prints, and what it refuses before asking anything.

type Query = { state?: HostRunState; wave?: number; limit: number; cursor?: string };

/** A rollout of `count` hosts over waves of 1, 10% and the rest; every tenth host failed. */
function harness(count: number) {
  const all = Array.from({ length: count }, (_, i) => ({
    ...host(`web-${String(i).padStart(5, '0')}`, i % 10 === 9 ? 'failed' : 'healthy', {
      ...(i % 10 === 9 ? { errorCode: 'health_failed', reason: 'HTTP 500' } : {}),
    }),
    wave: i === 0 ? 0 : i <= count / 10 ? 1 : 2,
  }));
  const queries: Query[] = [];
  const api = {
    rolloutHosts: async (id: string, query: Query): Promise<RolloutHostPage> => {
      expect(id).toBe('ro_1');
      queries.push(Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined)) as Query);
      expect(query.limit).toBeLessThanOrEqual(1000);
      const after = query.cursor === undefined ? -1 : Number(query.cursor);
      const matching = all
        .map((h, i) => ({ h, i }))
        .filter(({ h, i }) => i > after && (query.state === undefined || h.state === query.state))
        .filter(({ h }) => query.wave === undefined || h.wave === query.wave);
      const page = matching.slice(0, query.limit);
      const last = page.at(-1);
      // As the coordinator: a cursor after every full page, whether or not another host follows.
      return {
        hosts: page.map(({ h }) => h),
        next: page.length === query.limit && last ? String(last.i) : null,
      };
    },
  } as unknown as ApiClient;
  const out: string[] = [];
  const err: string[] = [];
  const ctx: CliContext = {
    output: { out: (t) => out.push(t), err: (t) => err.push(t), interactive: false },
    api: () => api,
    readStdin: async () => '',
    now: () => new Date('2025-01-01T00:00:00Z'),
    setExitCode: () => {},
  };
  const run = (...argv: string[]) =>
    buildProgram(ctx, () => {
      throw new Error('no key command here');
    })
      .exitOverride()
      .configureOutput({ writeErr: (t) => err.push(t), writeOut: (t) => out.push(t) })
      .parseAsync(['node', 'fleetpatch', 'rollout', 'hosts', 'ro_1', ...argv]);
  return { run, queries, out, err, all };
}

describe('rollout hosts', () => {
  it('reads every host page by page, the most the coordinator gives at a time, and prints them by wave', async () => {
    const h = harness(2500);
    await h.run();
    expect(h.queries).toEqual([{ limit: 1000 }, { limit: 1000, cursor: '999' }, { limit: 1000, cursor: '1999' }]);
    const rows = (h.out[0] ?? '').split('\n');
    expect(rows[0]).toMatch(/^HOST +WAVE +STATE +ONLINE +CHANGED +REASON$/);
    expect(rows).toHaveLength(2501);
    expect(rows[1]).toMatch(/^web-00000 +1 +healthy +yes +no +-$/);
    expect(rows[10]).toMatch(/^web-00009 +2 +failed +yes +no +health_failed: HTTP 500$/);
    expect(rows[2500]).toMatch(/^web-02499 +3 +failed /);
    expect(h.err).toEqual([]);
  });

  it('asks the coordinator for one state of one wave: the wave 1-based here, 0-based on the wire', async () => {
    const h = harness(2500);
    await h.run('--state', 'failed', '--wave', '3');
    expect(h.queries).toEqual([{ state: 'failed', wave: 2, limit: 1000 }]);
    const rows = (h.out[0] ?? '').split('\n').slice(1);
    expect(rows).toHaveLength(225);
    for (const row of rows) expect(row).toMatch(/^web-\d{5} +3 +failed /);
  });

  it('stops at --limit, asking for no more than it shows, and says that more match', async () => {
    const h = harness(2500);
    await h.run('--limit', '1500');
    // The last read is of one host: whether any follows the 1500th.
    expect(h.queries).toEqual([{ limit: 1000 }, { limit: 500, cursor: '999' }, { limit: 1, cursor: '1499' }]);
    expect((h.out[0] ?? '').split('\n')).toHaveLength(1501);
    expect(h.err).toEqual(['the first 1500 shown; more match (raise --limit)']);
  });

  it('says nothing of more when --limit is exactly how many match', async () => {
    const h = harness(30);
    await h.run('--limit', '30');
    expect(h.queries).toEqual([{ limit: 30 }, { limit: 1, cursor: '29' }]);
    expect((h.out[0] ?? '').split('\n')).toHaveLength(31);
    expect(h.err).toEqual([]);
    const json = harness(30);
    await json.run('--limit', '30', '--json');
    expect((JSON.parse(json.out.join('')) as RolloutHostPage).next).toBeNull();
  });

  it('with --json prints {hosts, next}: next resumes after the last host when --limit cut the list', async () => {
    const cut = harness(30);
    await cut.run('--limit', '5', '--json');
    const page = JSON.parse(cut.out.join('')) as RolloutHostPage;
    expect(page.hosts.map((x) => x.hostId)).toEqual(cut.all.slice(0, 5).map((x) => x.hostId));
    expect(page.next).toBe('4');
    const whole = harness(30);
    await whole.run('--json');
    expect((JSON.parse(whole.out.join('')) as RolloutHostPage).next).toBeNull();
  });

  it('says so on stderr when no host matches, and prints no table', async () => {
    const h = harness(5);
    await h.run('--wave', '7');
    expect(h.out).toEqual([]);
    expect(h.err).toEqual(['no host of the rollout matches']);
  });

  it.each([
    [['--state', 'done'], /Allowed choices are queued, .*revert_failed/],
    [['--wave', '0'], /must be 1 or more/],
    [['--wave', 'two'], /must be a whole number/],
    [['--wave', '10002'], /must be 10001 or less/],
    [['--limit', '0'], /must be 1 or more/],
  ])('refuses %j before asking anything', async (argv, message) => {
    const h = harness(5);
    await expect(h.run(...argv)).rejects.toBeInstanceOf(CommanderError);
    expect(h.err.join('')).toMatch(message);
    expect(h.queries).toEqual([]);
  });
});
