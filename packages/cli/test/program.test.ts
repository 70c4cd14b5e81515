import type { ComplianceReport, PreflightOutcome, PreflightResult } from '@fleetpatch/shared';
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../src/api-client.js';
import type { CliContext } from '../src/cli-context.js';
import { LocalValidationError, UsageError } from '../src/cli-errors.js';
import { buildProgram } from '../src/program.js';
import { host, status, summary } from './status-fixture.js';

// The command tree against a fake API: which request each command line turns into, and what is
// refused before anything is sent. The real API is exercised end to end in test/cli.test.ts.

/** What the fake API answers a compliance query: one host exposed. */
const complianceAnswer: ComplianceReport = {
  source: 'openssl',
  fixed: '3.0.15-1~deb12u1',
  evaluatedAt: '2025-01-01T00:00:00.000Z',
  counts: { fixed: 1, exposed: 1, not_installed: 0, unknown: 0 },
  hosts: [],
};

function harness(stdin = '', answers: Record<string, unknown> = {}) {
  const exitCodes: number[] = [];
  const calls: { method: string; args: unknown[] }[] = [];
  const out: string[] = [];
  const err: string[] = [];
  const fake = new Proxy(
    {},
    {
      get:
        (_, method: string) =>
        async (...args: unknown[]) => {
          calls.push({ method, args });
          if (method in answers) return answers[method];
          if (method === 'createRollout')
            return { rollout: { id: 'ro_1', state: 'draft', createdBy: 'a', request: { requiredApprovals: 0 } } };
          if (method === 'rolloutPlan')
            return {
              rolloutId: 'ro_1',
              frozen: false,
              hostCount: 0,
              waveSizes: [],
              waves: [],
              toleratedFailures: 0,
              haltsOn: 'halts on the 1st failure',
              revertable: true,
            };
          if (method === 'createPatch') return { id: 'pat_1' };
          if (method === 'compliance') return complianceAnswer;
          return {};
        },
    },
  ) as ApiClient;
  const ctx: CliContext = {
    output: { out: (t) => out.push(t), err: (t) => err.push(t), interactive: false },
    api: () => fake,
    readStdin: async () => stdin,
    now: () => new Date('2025-01-01T00:00:00Z'),
    setExitCode: (code) => void exitCodes.push(code),
  };
  const noKeys = () => {
    throw new Error('these tests run no key command');
  };
  const run = (...argv: string[]) => buildProgram(ctx, noKeys).parseAsync(['node', 'fleetpatch', ...argv]);
  return { calls, out, err, run, exitCodes };
}

describe('command line → request', () => {
  it('turns rollout create flags into the rollout request', async () => {
    const h = harness();
    await h.run(
      'rollout',
      'create',
      '--patch',
      'pat_1',
      '--labels',
      'role=web,env=prod',
      '--waves',
      '1,10%,100%',
      '--max-parallel',
      '5',
      '--max-failures',
      '2%',
      '--bake',
      '60',
      '--auto-revert',
      'rollout',
      '--stale-services',
      'fail',
      '--approvals',
      '2',
    );
    expect(h.calls[0]).toEqual({
      method: 'createRollout',
      args: [
        {
          patchId: 'pat_1',
          target: { labels: { role: 'web', env: 'prod' } },
          waves: [1, '10%', '100%'],
          maxParallel: 5,
          maxFailures: '2%',
          bakeSeconds: 60,
          autoRevert: 'rollout',
          staleServices: 'fail',
          requiredApprovals: 2,
        },
      ],
    });
    expect(h.out[0]).toBe('ro_1');
  });

  it('sends a rollout request read from stdin, with flags laid over it', async () => {
    const h = harness(JSON.stringify({ patchId: 'pat_9', target: { all: true }, waves: [1] }));
    await h.run('rollout', 'create', '--file', '-', '--hosts', 'a,b');
    expect(h.calls[0]?.args[0]).toEqual({ patchId: 'pat_9', target: { hostIds: ['a', 'b'] }, waves: [1] });
  });

  it('narrows a target by reported labels; a file target that names no hosts by admin is refused locally', async () => {
    const h = harness(JSON.stringify({ patchId: 'pat_9', target: { all: true } }));
    await h.run('rollout', 'create', '--patch', 'p', '--labels', 'env=prod', '--reported-labels', 'role=web');
    expect(h.calls[0]?.args[0]).toMatchObject({ target: { labels: { env: 'prod' }, reportedLabels: { role: 'web' } } });
    const refused = h.run('rollout', 'create', '--file', '-', '--reported-labels', 'role=web');
    await expect(refused).rejects.toMatchObject({
      issues: [{ path: 'target.reportedLabels', message: expect.stringContaining('only narrow a target') }],
    });
    expect(h.calls).toHaveLength(2); // the first create and its plan; the refused one sent nothing
  });

  it('targets the hosts exposed to a source below a fixed version, alone or narrowing another target', async () => {
    const h = harness();
    await h.run('rollout', 'create', '--patch', 'p', '--exposed-to', 'openssl=3.0.15-1~deb12u1');
    await h.run(
      'rollout',
      'create',
      '--patch',
      'p',
      '--labels',
      'role=web',
      '--exposed-to',
      'openssl=3.0.15-1~deb12u1',
    );
    const targets = h.calls
      .filter((c) => c.method === 'createRollout')
      .map((c) => (c.args[0] as { target: unknown }).target);
    expect(targets).toEqual([
      { exposedTo: { source: 'openssl', fixed: '3.0.15-1~deb12u1' } },
      { labels: { role: 'web' }, exposedTo: { source: 'openssl', fixed: '3.0.15-1~deb12u1' } },
    ]);
    await expect(harness().run('rollout', 'create', '--patch', 'p', '--exposed-to', 'openssl')).rejects.toBeInstanceOf(
      CommanderError,
    );
    const refused = harness().run('rollout', 'create', '--patch', 'p', '--exposed-to', 'openssl=3.0-');
    await expect(refused).rejects.toMatchObject({
      issues: [{ path: 'target.exposedTo.fixed', message: 'not a Debian version: revision number is empty' }],
    });
  });

  it('asks for compliance and exits 3 when a host is exposed; packages needs exactly one of --name and --source', async () => {
    const h = harness();
    await h.run('compliance', '--source', 'openssl', '--fixed', '3.0.15-1~deb12u1', '--status', 'exposed');
    await h.run('packages', '--source', 'openssl', '--json');
    await h.run('agent', 'packages', 'web-1', '--json');
    expect(h.calls.map((c) => [c.method, ...c.args])).toEqual([
      ['compliance', { source: 'openssl', fixed: '3.0.15-1~deb12u1', status: 'exposed' }],
      ['packageVersions', { source: 'openssl' }],
      ['hostPackages', 'web-1'],
    ]);
    expect(h.exitCodes).toEqual([3]);
    await expect(harness().run('packages')).rejects.toBeInstanceOf(UsageError);
    await expect(harness().run('packages', '--name', 'a', '--source', 'b')).rejects.toBeInstanceOf(UsageError);
    await expect(harness().run('compliance', '--source', 'openssl')).rejects.toBeInstanceOf(CommanderError);
  });

  it('exits 0 from a clear dry run, 3 when a host would fail or is blocked, 4 when one did not answer', async () => {
    const answer = (...outcomes: PreflightOutcome[]): PreflightResult => ({
      rolloutId: 'ro_1',
      revertable: true,
      summary: {},
      results: outcomes.map((outcome, i) => ({ hostId: `h${i}`, outcome, reason: null, errorCode: null })),
    });
    const exitOf = async (result: PreflightResult, ...flags: string[]) => {
      const h = harness('', { preflight: result });
      await h.run('rollout', 'preflight', 'ro_1', ...flags);
      return h.exitCodes;
    };
    expect(await exitOf(answer('would_apply', 'already_applied'))).toEqual([0]);
    expect(await exitOf(answer('would_apply', 'would_fail'))).toEqual([3]);
    expect(await exitOf(answer('blocked', 'no_answer'), '--json')).toEqual([3]);
    expect(await exitOf(answer('would_apply', 'no_answer'))).toEqual([4]);
    expect(await exitOf(answer('offline'))).toEqual([4]);
  });

  it('refuses a bad rollout locally: nothing is sent', async () => {
    const h = harness();
    await expect(h.run('rollout', 'create', '--patch', 'p', '--all', '--waves', '0')).rejects.toBeInstanceOf(
      LocalValidationError,
    );
    expect(h.calls).toEqual([]);
  });

  it('refuses a bad patch from stdin locally: nothing is sent', async () => {
    const h = harness('{"title": "x"}');
    const refused = h.run('patch', 'create', '--file', '-');
    await expect(refused).rejects.toBeInstanceOf(LocalValidationError);
    await expect(refused).rejects.toMatchObject({
      issues: expect.arrayContaining([{ path: 'problem', message: expect.any(String), at: 'stdin:1:1' }]),
    });
    expect(h.calls).toEqual([]);
  });

  it('reports malformed flags and unknown auto-revert scopes as commander (usage) errors', async () => {
    await expect(harness().run('rollout', 'create', '--patch', 'p', '--all', '--waves', 'x')).rejects.toBeInstanceOf(
      CommanderError,
    );
    await expect(harness().run('rollout', 'create', '--patch', 'p', '--all', '--auto-revert', 'all')).rejects.toThrow(
      /Allowed choices are none, host, wave, rollout/,
    );
  });

  it('a verb asks for the summary; a rollout of up to 1,000 hosts is then read whole, a larger one drawn from it', async () => {
    const small = harness('', {
      rolloutVerbSummary: summary({ hostCount: 3, state: 'paused' }),
      revertHostSummary: summary({ hostCount: 3 }),
      rolloutStatus: status(
        { state: 'paused' },
        { waves: [{ wave: 0, phase: 'running', hosts: [host('web-1', 'healthy'), host('web-2', 'applying')] }] },
      ),
    });
    await small.run('rollout', 'pause', 'ro_1', '--reason', 'look first');
    await small.run('rollout', 'revert-host', 'ro_1', 'web-2');
    expect(small.calls.map((c) => [c.method, ...c.args])).toEqual([
      ['rolloutVerbSummary', 'ro_1', 'pause', 'look first'],
      ['rolloutStatus', 'ro_1'],
      ['revertHostSummary', 'ro_1', 'web-2'],
      ['rolloutStatus', 'ro_1'],
    ]);
    expect(small.out[0]).toContain('web-1:healthy web-2:applying');

    const large = harness('', {
      rolloutVerbSummary: summary(
        { hostCount: 5000, state: 'running' },
        { waves: [{ wave: 0, phase: 'running', hostCount: 5000, counts: { healthy: 4000, applying: 1000 } }] },
      ),
    });
    await large.run('rollout', 'resume', 'ro_1');
    expect(large.calls.map((c) => c.method)).toEqual(['rolloutVerbSummary']);
    expect(large.out.join('\n')).toMatch(/rollout ro_1 {2}running/);
    expect(large.out.join('\n')).toContain('4000 done, 1000 in flight');
  });

  it('a verb that was done is not reported as failed when the read after it fails: its summary is drawn', async () => {
    const lost = Promise.reject(new Error('socket hang up'));
    lost.catch(() => {}); // handled where the command awaits it
    const h = harness('', {
      rolloutVerbSummary: summary(
        { hostCount: 3, state: 'aborted' },
        { waves: [{ wave: 0, phase: 'stopped', hostCount: 3, counts: { healthy: 1, cancelled: 2 } }] },
      ),
      rolloutStatus: lost,
    });
    await h.run('rollout', 'abort', 'ro_1');
    expect(h.calls.map((c) => c.method)).toEqual(['rolloutVerbSummary', 'rolloutStatus']);
    expect(h.err).toEqual(["abort done; the rollout's full status could not be read after it: socket hang up"]);
    expect(h.out.join('\n')).toMatch(/rollout ro_1 {2}aborted/);
    expect(h.exitCodes).toEqual([]);
  });

  it('maps verbs, reasons, agent labels and global flags after the subcommand', async () => {
    const h = harness();
    const program = await h.run('rollout', 'abort', 'ro_1', '--reason', 'bad canary', '--json', '--token', 't');
    expect(program.opts()).toMatchObject({ token: 't' });
    await h.run('rollout', 'revert-host', 'ro_1', 'web-2', '--json');
    await h.run(
      'join-token',
      'create',
      '--host',
      'web-1',
      '--label',
      'role=web',
      '--label',
      'env=prod',
      '--expires',
      '2h',
    );
    await h.run('join-token', 'create', '--uses', '50', '--json');
    await h.run('agent', 'revoke', 'web-3', '--json');
    await h.run('agent', 'remove', 'web-4', '--json');
    await h.run('agent', 'remove', 'web-5', '--force', '--json');
    expect(h.calls.map((c) => [c.method, ...c.args])).toEqual([
      ['rolloutVerb', 'ro_1', 'abort', 'bad canary'],
      ['revertHost', 'ro_1', 'web-2'],
      ['createJoinToken', { uses: 1, expiresInSeconds: 7200, labels: { role: 'web', env: 'prod' }, hostId: 'web-1' }],
      ['createJoinToken', { uses: 50, expiresInSeconds: 3600, labels: {} }],
      ['revokeAgent', 'web-3'],
      ['removeAgent', 'web-4', false],
      ['removeAgent', 'web-5', true],
    ]);
  });
});
