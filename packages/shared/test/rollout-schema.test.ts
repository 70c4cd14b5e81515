import { describe, expect, it } from 'vitest';
import {
  APPLY_END_STATES,
  FailureBudgetSchema,
  FINAL_ROLLOUT_STATES,
  HOST_RUN_STATES,
  MaintenanceWindowSchema,
  OfflinePolicySchema,
  REVERT_END_STATES,
  ROLLOUT_STATES,
  RolloutRequestSchema,
  TargetBriefSchema,
  TargetSchema,
  targetBriefOf,
  WaveStepSchema,
} from '../src/rollout.js';
import { issues } from './support/issues.js';

const request = (overrides: Record<string, unknown> = {}) => ({
  patchId: 'pat_1',
  target: { labels: { env: 'prod' } },
  ...overrides,
});

describe('WaveStepSchema', () => {
  it('takes host counts from 1 to 1 000 000 and percents above 0 up to 100', () => {
    for (const good of [1, 7, 1_000_000, '1%', '0.5%', '10%', '33.3%', '12.25%', '100%', '100.0%']) {
      expect(issues(WaveStepSchema, good), String(good)).toEqual([]);
    }
  });

  it('refuses zero, fractions, too many hosts, and percents that are 0, over 100 or malformed', () => {
    for (const bad of [
      0,
      -1,
      1.5,
      1_000_001,
      '0%',
      '0.0%',
      '100.1%',
      '101%',
      '1000%',
      '10',
      '%',
      '10 %',
      '.5%',
      'x10%',
      '10%x',
      '10%%',
    ]) {
      expect(issues(WaveStepSchema, bad), String(bad)).not.toEqual([]);
    }
  });
});

describe('FailureBudgetSchema', () => {
  it('takes a count from 0 or a percent from 0% up to 100%', () => {
    for (const good of [0, 3, 1_000_000, '0%', '10%', '100%']) {
      expect(issues(FailureBudgetSchema, good), String(good)).toEqual([]);
    }
    for (const bad of [-1, 0.5, 1_000_001, '101%', '-1%', 'ten']) {
      expect(issues(FailureBudgetSchema, bad), String(bad)).not.toEqual([]);
    }
  });

  it('says a wave of 0% would never end', () => {
    expect(issues(WaveStepSchema, '0%').join('\n')).toContain('a percentage must be above 0%');
  });

  it('says what is wrong with a percent', () => {
    const messages = (value: unknown) => issues(FailureBudgetSchema, value).join('\n');
    expect(messages('150%')).toContain('a percentage must be at most 100%');
    expect(messages('ten%')).toContain('must be a percentage such as "10%"');
  });
});

describe('TargetSchema', () => {
  it('takes any one selector, and says so when none is given', () => {
    for (const good of [
      { all: true },
      { hostIds: ['h1'] },
      { labels: { env: 'prod' } },
      { facts: { os: 'linux' } },
      { exposedTo: { source: 'openssl', fixed: '3.0.15-1' } },
      { hostIds: ['h1'], reportedLabels: { role: 'web' } },
      { labels: { env: 'prod' }, reportedLabels: { role: 'web' }, excludeLabels: { canary: 'no' } },
    ]) {
      expect(issues(TargetSchema, good), JSON.stringify(good)).toEqual([]);
    }
    for (const none of [{}, { all: false }, { excludeLabels: { env: 'prod' } }]) {
      expect(issues(TargetSchema, none), JSON.stringify(none)).toEqual([
        ': name the hosts: hostIds, labels, facts, exposedTo, or all: true',
      ]);
    }
  });

  it('lets reported labels only narrow hosts named by id or by admin labels', () => {
    const message = 'reportedLabels: reportedLabels only narrow a target: name the hosts by hostIds or labels too';
    expect(issues(TargetSchema, { all: true, reportedLabels: { role: 'web' } })).toEqual([message]);
    expect(issues(TargetSchema, { facts: { os: 'linux' }, reportedLabels: { role: 'web' } })).toEqual([message]);
    // `labels: {}` matches every host, so it bounds nothing (said with all: true, so only this rule speaks).
    expect(issues(TargetSchema, { all: true, labels: {}, reportedLabels: { role: 'web' } })).toEqual([message]);
  });

  it('refuses an empty label selector unless the target says all: true', () => {
    const message = 'labels: an empty label selector selects every host: name at least one label, or say all: true';
    expect(issues(TargetSchema, { labels: {} })).toEqual([message]);
    expect(issues(TargetSchema, { labels: {}, all: false })).toEqual([message]);
    expect(issues(TargetSchema, { labels: {}, hostIds: ['h1'] })).toEqual([message]);
    expect(issues(TargetSchema, { labels: {}, all: true })).toEqual([]);
    expect(issues(TargetSchema, { labels: { env: 'prod' } })).toEqual([]);
  });

  it('refuses unknown fields, empty or bad host id lists, and unknown facts', () => {
    expect(issues(TargetSchema, { all: true, everyone: true })).toEqual([': Unrecognized key: "everyone"']);
    expect(issues(TargetSchema, { hostIds: [] })).toContain('hostIds: Too small: expected array to have >=1 items');
    expect(issues(TargetSchema, { hostIds: ['-bad'] })).toEqual(['hostIds.0: host ids are 1-128 of [A-Za-z0-9._-]']);
    expect(issues(TargetSchema, { facts: { kernel: '6.1' } })).toContain('facts: Unrecognized key: "kernel"');
  });

  it('wants the source package and its fixed version of the hosts exposed to it, and nothing else', () => {
    expect(issues(TargetSchema, { exposedTo: { source: 'openssl' } })).toEqual([
      'exposedTo.fixed: Invalid input: expected string, received undefined',
    ]);
    expect(issues(TargetSchema, { exposedTo: { source: 'openssl', fixed: '3.0.15-1', arch: 'amd64' } })).toEqual([
      'exposedTo: Unrecognized key: "arch"',
    ]);
  });

  it('bounds fact values', () => {
    expect(
      issues(TargetSchema, { facts: { os: 'x'.repeat(100), distro: 'x'.repeat(100), arch: 'x'.repeat(50) } }),
    ).toEqual([]);
    expect(issues(TargetSchema, { facts: { os: 'x'.repeat(101) } })).toEqual([
      'facts.os: Too big: expected string to have <=100 characters',
    ]);
    expect(issues(TargetSchema, { facts: { distro: 'x'.repeat(101) } })).toEqual([
      'facts.distro: Too big: expected string to have <=100 characters',
    ]);
    expect(issues(TargetSchema, { facts: { arch: 'x'.repeat(51) } })).toEqual([
      'facts.arch: Too big: expected string to have <=50 characters',
    ]);
  });
});

describe('targetBriefOf (a target as lists and summaries show it)', () => {
  it('counts the hosts a target names instead of listing them, and keeps every other selector', () => {
    const target = TargetSchema.parse({
      hostIds: ['web-1', 'web-2', 'web-3'],
      reportedLabels: { tier: 'front' },
      excludeLabels: { freeze: 'yes' },
    });
    const brief = targetBriefOf(target);
    expect(brief).toEqual({ hostIdCount: 3, reportedLabels: { tier: 'front' }, excludeLabels: { freeze: 'yes' } });
    expect(TargetBriefSchema.parse(brief)).toEqual(brief);
  });

  it('is the target itself when it names no host', () => {
    const target = TargetSchema.parse({ labels: { env: 'prod' }, facts: { distro: 'debian' } });
    expect(targetBriefOf(target)).toEqual({ labels: { env: 'prod' }, facts: { distro: 'debian' } });
    expect(targetBriefOf(TargetSchema.parse({ all: true }))).toEqual({ all: true });
  });

  it('never lists the hosts, and counts at least one', () => {
    expect(issues(TargetBriefSchema, { hostIds: ['web-1'] })).toEqual([': Unrecognized key: "hostIds"']);
    expect(issues(TargetBriefSchema, { hostIdCount: 0 })).toEqual([expect.stringMatching(/^hostIdCount: /)]);
    expect(issues(TargetBriefSchema, { hostIdCount: 1.5 })).toEqual([expect.stringMatching(/^hostIdCount: /)]);
  });
});

describe('OfflinePolicySchema', () => {
  it('waits 300 seconds for an offline host unless told otherwise', () => {
    expect(OfflinePolicySchema.parse({})).toEqual({ mode: 'wait', deliveryDeadlineSeconds: 300 });
    expect(OfflinePolicySchema.parse({ mode: 'skip' })).toEqual({ mode: 'skip', deliveryDeadlineSeconds: 300 });
    expect(issues(OfflinePolicySchema, { mode: 'fail', deliveryDeadlineSeconds: 7 * 24 * 3600 })).toEqual([]);
  });

  it('refuses other modes and deadlines outside 1 second to a week', () => {
    expect(issues(OfflinePolicySchema, { mode: 'retry' })).toEqual([
      'mode: Invalid option: expected one of "skip"|"wait"|"fail"',
    ]);
    for (const bad of [0, 7 * 24 * 3600 + 1, 1.5]) {
      expect(issues(OfflinePolicySchema, { deliveryDeadlineSeconds: bad }), String(bad)).not.toEqual([]);
    }
  });
});

describe('MaintenanceWindowSchema', () => {
  it('takes a cron expression, a timezone (UTC by default) and a duration, with no cutoff by default', () => {
    expect(MaintenanceWindowSchema.parse({ cron: '0 2 * * *', durationMinutes: 60 })).toEqual({
      cron: '0 2 * * *',
      timezone: 'UTC',
      durationMinutes: 60,
      cutoffMinutes: 0,
    });
  });

  it('bounds every field', () => {
    const window = (overrides: Record<string, unknown>) => ({ cron: '0 2 * * *', durationMinutes: 60, ...overrides });
    expect(issues(MaintenanceWindowSchema, window({ cron: '* * * *' }))).toEqual([
      'cron: Too small: expected string to have >=9 characters',
    ]);
    expect(issues(MaintenanceWindowSchema, window({ cron: `0 2 * * * ${'x'.repeat(191)}` }))).toEqual([
      'cron: Too big: expected string to have <=200 characters',
    ]);
    expect(issues(MaintenanceWindowSchema, window({ timezone: '' }))).toEqual([
      'timezone: Too small: expected string to have >=1 characters',
    ]);
    expect(issues(MaintenanceWindowSchema, window({ timezone: 'x'.repeat(101) }))).toEqual([
      'timezone: Too big: expected string to have <=100 characters',
    ]);
    expect(issues(MaintenanceWindowSchema, window({ durationMinutes: 7 * 24 * 60 }))).toEqual([]);
    for (const durationMinutes of [0, 7 * 24 * 60 + 1, 1.5]) {
      expect(issues(MaintenanceWindowSchema, window({ durationMinutes })), String(durationMinutes)).not.toEqual([]);
    }
    expect(issues(MaintenanceWindowSchema, window({ cutoffMinutes: 24 * 60 }))).toEqual([]);
    for (const cutoffMinutes of [-1, 24 * 60 + 1]) {
      expect(issues(MaintenanceWindowSchema, window({ cutoffMinutes })), String(cutoffMinutes)).not.toEqual([]);
    }
    expect(issues(MaintenanceWindowSchema, window({ every: 'day' }))).toEqual([': Unrecognized key: "every"']);
  });
});

describe('RolloutRequestSchema', () => {
  it('fills in the documented defaults', () => {
    expect(RolloutRequestSchema.parse(request())).toEqual({
      ...request(),
      waves: [1, '10%', '50%', '100%'],
      maxParallel: 10,
      maxFailures: 0,
      bakeSeconds: 0,
      hostTimeoutSeconds: 600,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 300 },
      autoRevert: 'host',
      failUnhealthyBefore: false,
      revertParallel: 50,
      requiredApprovals: 1,
      draft: false,
      staleServices: 'report',
      analyses: [],
      rehearseRevert: false,
    });
  });

  it('keeps what the request says', () => {
    const full = request({
      waves: ['50%'],
      maxParallel: 3,
      maxFailures: '10%',
      maxFailuresPerWave: 1,
      bakeSeconds: 600,
      hostTimeoutSeconds: 60,
      offline: { mode: 'skip', deliveryDeadlineSeconds: 10 },
      autoRevert: 'rollout',
      failUnhealthyBefore: true,
      revertParallel: 5,
      requiredApprovals: 2,
      draft: true,
      staleServices: 'fail',
      analyses: [],
      rehearseRevert: true,
      window: { cron: '0 2 * * *', timezone: 'Europe/Paris', durationMinutes: 60, cutoffMinutes: 5 },
      startAt: '2026-01-01T02:00:00+01:00',
    });
    expect(RolloutRequestSchema.parse(full)).toEqual(full);
  });

  it('bounds every number at both ends', () => {
    const bounds: [string, number, number][] = [
      ['maxParallel', 1, 10_000],
      ['bakeSeconds', 0, 7 * 24 * 3600],
      ['hostTimeoutSeconds', 1, 24 * 3600],
      ['revertParallel', 1, 10_000],
      ['requiredApprovals', 0, 10],
    ];
    for (const [field, min, max] of bounds) {
      expect(issues(RolloutRequestSchema, request({ [field]: min })), `${field} ${min}`).toEqual([]);
      expect(issues(RolloutRequestSchema, request({ [field]: max })), `${field} ${max}`).toEqual([]);
      expect(issues(RolloutRequestSchema, request({ [field]: min - 1 })), `${field} ${min - 1}`).toEqual([
        `${field}: Too small: expected number to be >=${min}`,
      ]);
      expect(issues(RolloutRequestSchema, request({ [field]: max + 1 })), `${field} ${max + 1}`).toEqual([
        `${field}: Too big: expected number to be <=${max}`,
      ]);
    }
    for (const field of ['maxParallel', 'revertParallel', 'requiredApprovals']) {
      expect(issues(RolloutRequestSchema, request({ [field]: 1.5 })), field).toEqual([
        `${field}: Invalid input: expected int, received number`,
      ]);
    }
  });

  it('takes 1 to 100 wave steps', () => {
    expect(issues(RolloutRequestSchema, request({ waves: Array(100).fill(1) }))).toEqual([]);
    expect(issues(RolloutRequestSchema, request({ waves: [] }))).toEqual([
      'waves: Too small: expected array to have >=1 items',
    ]);
    expect(issues(RolloutRequestSchema, request({ waves: Array(101).fill(1) }))).toEqual([
      'waves: Too big: expected array to have <=100 items',
    ]);
  });

  it('takes a patch id of 1 to 100 characters', () => {
    expect(issues(RolloutRequestSchema, request({ patchId: 'p'.repeat(100) }))).toEqual([]);
    expect(issues(RolloutRequestSchema, request({ patchId: '' }))).toEqual([
      'patchId: Too small: expected string to have >=1 characters',
    ]);
    expect(issues(RolloutRequestSchema, request({ patchId: 'p'.repeat(101) }))).toEqual([
      'patchId: Too big: expected string to have <=100 characters',
    ]);
  });

  it('takes the four auto-revert scopes only', () => {
    for (const autoRevert of ['none', 'host', 'wave', 'rollout']) {
      expect(issues(RolloutRequestSchema, request({ autoRevert })), autoRevert).toEqual([]);
    }
    expect(issues(RolloutRequestSchema, request({ autoRevert: 'all' }))).toEqual([
      'autoRevert: Invalid option: expected one of "none"|"host"|"wave"|"rollout"',
    ]);
  });

  it('reports stale services or fails on them, nothing else', () => {
    for (const staleServices of ['report', 'fail']) {
      expect(issues(RolloutRequestSchema, request({ staleServices })), staleServices).toEqual([]);
    }
    expect(issues(RolloutRequestSchema, request({ staleServices: 'restart' }))).toEqual([
      'staleServices: Invalid option: expected one of "report"|"fail"',
    ]);
  });

  it('takes startAt only as an ISO time with an offset', () => {
    expect(issues(RolloutRequestSchema, request({ startAt: '2026-01-01T02:00:00Z' }))).toEqual([]);
    for (const bad of ['2026-01-01', 'tomorrow', '2026-01-01 02:00']) {
      expect(issues(RolloutRequestSchema, request({ startAt: bad })), bad).not.toEqual([]);
    }
  });

  it('refuses unknown fields', () => {
    expect(issues(RolloutRequestSchema, request({ force: true }))).toEqual([': Unrecognized key: "force"']);
  });
});

describe('states', () => {
  it('a rollout has eleven states; five are final, three end an apply and two end a revert', () => {
    expect(ROLLOUT_STATES).toEqual([
      'draft',
      'awaiting_approval',
      'scheduled',
      'running',
      'paused',
      'succeeded',
      'halted',
      'aborted',
      'reverting',
      'reverted',
      'revert_failed',
    ]);
    expect([...FINAL_ROLLOUT_STATES].sort()).toEqual(['aborted', 'halted', 'revert_failed', 'reverted', 'succeeded']);
    expect(APPLY_END_STATES).toEqual(['succeeded', 'halted', 'aborted']);
    expect(REVERT_END_STATES).toEqual(['reverted', 'revert_failed']);
  });

  it('a host run moves through fifteen states', () => {
    expect(HOST_RUN_STATES).toEqual([
      'queued',
      'dispatched',
      'delivered',
      'snapshotted',
      'applying',
      'verifying',
      'healthy',
      'failed',
      'timed_out',
      'skipped',
      'not_applicable',
      'cancelled',
      'reverting',
      'reverted',
      'revert_failed',
    ]);
  });
});
