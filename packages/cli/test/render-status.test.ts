import type { HostView } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { HOST_LINES_PER_WAVE, renderStatus, WAVE_HOSTS_LISTED } from '../src/render-status.js';
import { host, NOW, status } from './status-fixture.js';

describe('renderStatus', () => {
  it('shows state, failures against the budget, and every host as host:state by wave', () => {
    const view = status(
      {},
      {
        waves: [
          { wave: 0, phase: 'passed', hosts: [host('web-1', 'healthy')] },
          { wave: 1, phase: 'running', hosts: [host('web-2', 'applying'), host('web-3', 'queued', { online: false })] },
        ],
      },
    );
    expect(renderStatus(view, NOW)).toBe(
      [
        'rollout ro_1  running  patch pat_1  by alice  approved by bob',
        'failures 0 (tolerates 0; halts on the 1st failure)',
        'wave 1  passed   web-1:healthy',
        'wave 2  running  web-2:applying web-3:queued(offline)',
      ].join('\n'),
    );
  });

  it('shows where the rollout stands with its maintenance window', () => {
    const window = {
      open: true,
      opensAt: new Date(NOW.getTime() - 600_000).toISOString(),
      cutoffAt: new Date(NOW.getTime() + 1_200_000).toISOString(),
      closesAt: new Date(NOW.getTime() + 1_800_000).toISOString(),
    };
    const view = status({}, { window, waves: [{ wave: 0, phase: 'running', hosts: [host('web-1', 'applying')] }] });
    expect(renderStatus(view, NOW).split('\n')).toEqual([
      'rollout ro_1  running  patch pat_1  by alice  approved by bob',
      'failures 0 (tolerates 0; halts on the 1st failure)',
      'maintenance window open: new waves for 20m 00s, closes in 30m 00s',
      'wave 1  running  web-1:applying',
    ]);
  });

  it('gives the reason of a halted rollout and the error and reason of each failed host', () => {
    const view = status(
      { state: 'halted', stateReason: 'failures exceeded the budget (1 > 0)' },
      {
        failures: 1,
        waves: [
          {
            wave: 0,
            phase: 'stopped',
            hosts: [
              host('web-1', 'failed', { errorCode: 'precondition_failed', reason: 'sha256 differs from expected' }),
              host('web-2', 'timed_out'),
            ],
          },
          { wave: 1, phase: 'pending', hosts: [host('web-3', 'skipped', { reason: 'offline past the deadline' })] },
        ],
      },
    );
    expect(renderStatus(view, NOW).split('\n')).toEqual([
      'rollout ro_1  halted (failures exceeded the budget (1 > 0))  patch pat_1  by alice  approved by bob',
      'failures 1 (tolerates 0; halts on the 1st failure)',
      'wave 1  stopped  web-1:failed web-2:timed_out',
      '  web-1 failed: precondition_failed: sha256 differs from expected',
      '  web-2 timed_out: no reason reported',
      'wave 2  pending  web-3:skipped',
      '  web-3 skipped: offline past the deadline',
    ]);
  });

  it('shows each analysis under its wave: counters, and the last value against its threshold with the verdict', () => {
    const measurement = (value: number | null, verdict: 'pass' | 'fail' | 'inconclusive', reason: string | null) => ({
      at: '2025-06-01T11:59:00.000Z',
      phase: 'bake' as const,
      value,
      baseline: value === null ? null : 0.02,
      threshold: value === null ? null : 0.03,
      verdict,
      reason,
    });
    const run = { name: 'error-rate', attempt: 1, condition: '<= 1.5 * baseline', count: 3, failureLimit: 0 };
    const view = status(
      {
        state: 'halted',
        stateReason: 'analysis error-rate failed on wave 1; failure budget exceeded: 1 failed, 0 tolerated',
      },
      {
        failures: 1,
        waves: [
          { wave: 0, phase: 'passed', hosts: [host('web-1', 'healthy')] },
          {
            wave: 1,
            phase: 'stopped',
            hosts: [host('web-2', 'failed', { errorCode: 'analysis_failed', reason: 'analysis error-rate failed' })],
          },
        ],
        analyses: [
          {
            ...run,
            wave: 0,
            verdict: 'passed',
            taken: 3,
            failed: 0,
            inconclusive: 1,
            measurements: [
              measurement(0.01, 'pass', null),
              measurement(null, 'inconclusive', 'no answer within 10000 ms'),
            ],
          },
          {
            ...run,
            wave: 1,
            attempt: 2,
            verdict: 'failed',
            taken: 1,
            failed: 1,
            inconclusive: 0,
            measurements: [measurement(0.3, 'fail', 'too high')],
          },
        ],
      },
    );
    expect(renderStatus(view, NOW).split('\n').slice(2)).toEqual([
      'wave 1  passed   web-1:healthy',
      '  analysis error-rate  passed  3/3 taken, 1 inconclusive  last inconclusive (no answer within 10000 ms)',
      'wave 2  stopped  web-2:failed',
      '  web-2 failed: analysis_failed: analysis error-rate failed',
      '  analysis error-rate (attempt 2)  failed  1/3 taken, 1 failed (limit 0)  last 0.3 (threshold 0.03, <= 1.5 * baseline): fail',
    ]);
  });

  it('never shows a timed-out host that has not answered as unchanged', () => {
    const view = status(
      { state: 'halted', stateReason: 'failure budget exceeded: 1 failed, 0 tolerated' },
      {
        waves: [
          {
            wave: 0,
            phase: 'stopped',
            hosts: [
              host('web-1', 'timed_out', {
                online: false,
                changed: 'unknown',
                errorCode: 'timed_out',
                reason: 'no result within 60s',
              }),
            ],
          },
        ],
      },
    );
    expect(renderStatus(view, NOW).split('\n').at(-1)).toBe(
      '  web-1 timed_out: timed_out: no result within 60s; changed: unknown (no answer since; it may be half-changed until its agent reports)',
    );
  });

  it('says what followed the change: units restarted, services still on old libraries, a reboot this patch caused', () => {
    const afterChange = {
      restarts: [
        { unit: 'app.service', when: 'apply' as const, ok: true, detail: '', ms: 420 },
        { unit: 'worker.service', when: 'apply' as const, ok: false, detail: 'timed out', ms: 90_000 },
      ],
      staleSource: 'proc-maps' as const,
      staleProcesses: [{ pid: 812, command: 'cron', unit: 'cron.service', files: ['/usr/lib/libssl.so.3'] }],
      moreStaleProcesses: 1,
      staleUnits: ['cron.service'],
      reboot: { required: true, causedByThisChange: true, packages: ['libssl3'] },
    };
    const view = status(
      {},
      { waves: [{ wave: 0, phase: 'running', hosts: [host('web-1', 'healthy', { afterChange })] }] },
    );
    expect(renderStatus(view, NOW).split('\n').at(-1)).toBe(
      '  web-1 restarted app.service; restart of worker.service FAILED: timed out; still on old libraries: cron.service (2 processes); reboot required (by this patch)',
    );
    const quiet = { ...afterChange, restarts: [], staleProcesses: [], moreStaleProcesses: 0, staleUnits: [] };
    const none = status(
      {},
      {
        waves: [
          {
            wave: 0,
            phase: 'running',
            hosts: [
              host('web-1', 'healthy', {
                afterChange: { ...quiet, reboot: { required: false, causedByThisChange: false, packages: [] } },
              }),
            ],
          },
        ],
      },
    );
    expect(renderStatus(none, NOW).split('\n')).toHaveLength(3);
  });

  it('counts down a bake and says when approvals are still missing', () => {
    const baking = status(
      { bakeUntil: '2025-06-01T12:00:30.000Z', currentWave: 0 },
      { waves: [{ wave: 0, phase: 'baking', hosts: [host('web-1', 'healthy')] }] },
    );
    expect(renderStatus(baking, NOW)).toContain('wave 1  baking   web-1:healthy (30s left)');

    const waiting = status({ state: 'awaiting_approval', hostCount: 0, waveCount: 0 }, { approvals: [] });
    expect(renderStatus(waiting, NOW).split('\n')).toEqual([
      'rollout ro_1  awaiting_approval  patch pat_1  by alice  needs 1 approval',
      'failures 0 (tolerates 0; halts on the 1st failure)',
      '  hosts are chosen when the rollout starts (see `fleetpatch rollout plan`)',
    ]);
  });

  it('points a rollout targeted at exposed hosts to its compliance view', () => {
    const view = status({}, { compliance: { source: 'openssl', fixed: '3.0.15-1~deb12u1', url: '/v1/compliance?…' } });
    expect(renderStatus(view, NOW).split('\n')[2]).toBe(
      'targets hosts exposed to openssl < 3.0.15-1~deb12u1; see `fleetpatch compliance --source openssl --fixed 3.0.15-1~deb12u1`',
    );
  });

  it('names a signed rollout’s statement and signers, and a pending revert statement’s progress', () => {
    const signature = (signer: string, role: 'author' | 'approver', keyId: string) => ({
      keyId,
      publicKey: 'k'.repeat(43),
      signature: 's'.repeat(86),
      signer,
      role,
      at: '2025-06-01T11:00:00.000Z',
    });
    const window = { notBefore: '2025-06-01T10:00:00.000Z', expiresAt: '2025-06-02T10:00:00.000Z', sequence: 1 };
    const target = { kind: 'selector', selector: { all: true } } as const;
    const view = status(
      { state: 'succeeded', hostCount: 0, waveCount: 0 },
      {
        signing: {
          apply: {
            digest: 'a'.repeat(64),
            hostId: null,
            statement: {
              kind: 'apply',
              statementVersion: 1,
              patch: {
                title: 't',
                problem: 'p',
                rootCause: 'r',
                intendedFix: 'f',
                ticket: 'T-1',
                change: { kind: 'package', manager: 'apt', name: 'openssl', version: '3.0.1', revertable: true },
                health: { checks: [], intervalSeconds: 2, minHealthySeconds: 0, healthyDeadlineSeconds: 60 },
              },
              revertOnHealthFailure: true,
              target,
              ...window,
            },
            signatures: [
              signature('alice', 'author', '1111111111111111'),
              signature('bob', 'approver', '2222222222222222'),
            ],
            createdAt: '2025-06-01T10:00:00.000Z',
            usedAt: null,
          },
          reverts: [
            {
              digest: 'b'.repeat(64),
              hostId: 'web-2',
              statement: {
                kind: 'revert',
                statementVersion: 1,
                revertsStatementDigest: 'a'.repeat(64),
                target,
                ...window,
              },
              signatures: [signature('alice', 'author', '1111111111111111')],
              createdAt: '2025-06-01T11:30:00.000Z',
              usedAt: null,
            },
          ],
          revertSignaturesNeeded: 2,
        },
      },
    );
    expect(renderStatus(view, NOW).split('\n').slice(2, 4)).toEqual([
      'signed    statement aaaaaaaaaaaaaaaa by alice (key 1111111111111111) as author, bob (key 2222222222222222) as approver; valid until 2025-06-02T10:00:00.000Z',
      'revert    statement bbbbbbbbbbbbbbbb for web-2 pending: 1 of 2 signatures (alice (key 1111111111111111))',
    ]);
  });

  it('shows what a source change resolved to on each host (alike hosts share a line) and not_applicable with its reason', () => {
    const moved = [
      { name: 'libssl3', from: '3.0.14-1', to: '3.0.15-1', snapshot: 'apt-cache' as const },
      { name: 'openssl', from: '3.0.14-1', to: '3.0.15-1+b1', snapshot: 'dpkg-repack' as const },
    ];
    const view = status(
      { state: 'succeeded' },
      {
        waves: [
          {
            wave: 0,
            phase: 'passed',
            hosts: [
              host('web-1', 'healthy', { changed: true, packages: moved }),
              host('web-2', 'healthy', { changed: true, packages: moved }),
              host('web-3', 'healthy', {
                changed: true,
                packages: [{ name: 'libssl3', from: '3.0.14-1', to: '3.0.15-1' }],
              }),
              host('web-4', 'not_applicable', {
                reason: 'no binary package of source openssl is installed on this host',
              }),
            ],
          },
        ],
      },
    );
    expect(renderStatus(view, NOW).split('\n').slice(2)).toEqual([
      'wave 1  passed   web-1:healthy web-2:healthy web-3:healthy web-4:not_applicable',
      '  web-4 not_applicable: no binary package of source openssl is installed on this host',
      '  packages libssl3 3.0.14-1 → 3.0.15-1, openssl 3.0.14-1 → 3.0.15-1+b1: web-1, web-2',
      '  packages libssl3 3.0.14-1 → 3.0.15-1: web-3',
    ]);
  });
});

describe('renderStatus of large waves', () => {
  const crowd = (n: number, state: Parameters<typeof host>[1], extra: Parameters<typeof host>[2] = {}) =>
    Array.from({ length: n }, (_, i) => host(`web-${String(i).padStart(4, '0')}`, state, extra));

  it(`counts a wave of more than ${WAVE_HOSTS_LISTED} hosts by state, in the states' order, and lists a smaller one`, () => {
    const view = status(
      {},
      {
        waves: [
          { wave: 0, phase: 'passed', hosts: crowd(WAVE_HOSTS_LISTED, 'healthy') },
          {
            wave: 1,
            phase: 'running',
            hosts: [
              ...crowd(30, 'queued', { online: false }),
              ...crowd(4800, 'healthy'),
              ...crowd(2, 'applying'),
              ...crowd(1, 'applying', { online: false }),
            ],
          },
        ],
      },
    );
    const lines = renderStatus(view, NOW).split('\n');
    expect(lines[2]).toMatch(/^wave 1 {2}passed {3}web-0000:healthy web-0001:healthy .* web-0019:healthy$/);
    expect(lines[3]).toBe('wave 2  running  30 queued (30 offline), 3 applying (1 offline), 4800 healthy');
    expect(lines).toHaveLength(4);
  });

  it(`says at most ${HOST_LINES_PER_WAVE} hosts' problems per wave, counts the rest and says where to read them`, () => {
    const failed = crowd(25, 'failed', { errorCode: 'health_failed', reason: 'HTTP 500' });
    const view = status({}, { failures: 25, waves: [{ wave: 0, phase: 'running', hosts: failed }] });
    const lines = renderStatus(view, NOW).split('\n');
    expect(lines[2]).toBe('wave 1  running  25 failed');
    expect(lines.slice(3, 3 + HOST_LINES_PER_WAVE)).toEqual(
      failed.slice(0, HOST_LINES_PER_WAVE).map((h) => `  ${h.hostId} failed: health_failed: HTTP 500`),
    );
    expect(lines.slice(3 + HOST_LINES_PER_WAVE)).toEqual([
      `  … and ${25 - HOST_LINES_PER_WAVE} more lines about hosts of wave 1 (each host's state and reason: fleetpatch rollout hosts ro_1 --wave 1; all of it: rollout status --json)`,
    ]);
  });

  it('puts why hosts went wrong before what followed other hosts’ changes, so the cap never hides a failure', () => {
    const restarted = crowd(40, 'healthy', {
      afterChange: {
        restarts: [{ unit: 'app.service', ok: true, when: 'apply', detail: '', ms: 40 }],
        staleSource: 'proc-maps',
        staleUnits: [],
        staleProcesses: [],
        moreStaleProcesses: 0,
        reboot: { required: false, causedByThisChange: false, packages: [] },
      },
    });
    const failed = host('web-9999', 'failed', { errorCode: 'health_failed', reason: 'HTTP 500' });
    const view = status({}, { failures: 1, waves: [{ wave: 0, phase: 'running', hosts: [...restarted, failed] }] });
    const lines = renderStatus(view, NOW).split('\n');
    expect(lines[3]).toBe('  web-9999 failed: health_failed: HTTP 500');
    expect(lines[4]).toBe('  web-0000 restarted app.service');
    expect(lines.at(-1)).toMatch(/^ {2}… and 31 more lines about hosts of wave 1 /);
  });

  it('counts a state it does not know (a newer coordinator’s) after the others, so the counts add up', () => {
    const hosts = [...crowd(20, 'healthy'), ...crowd(5, 'parked' as HostView['state'])];
    const view = status({}, { waves: [{ wave: 0, phase: 'running', hosts }] });
    expect(renderStatus(view, NOW).split('\n')[2]).toBe('wave 1  running  20 healthy, 5 parked');
  });

  it('with everyHost (the record at the end of a watch) names every host and every problem', () => {
    const failed = crowd(25, 'failed', { errorCode: 'health_failed', reason: 'HTTP 500' });
    const view = status({}, { failures: 25, waves: [{ wave: 0, phase: 'running', hosts: failed }] });
    const lines = renderStatus(view, NOW, { everyHost: true }).split('\n');
    expect(lines[2]).toBe(`wave 1  running  ${failed.map((h) => `${h.hostId}:failed`).join(' ')}`);
    expect(lines.slice(3)).toHaveLength(25);
  });
});
