import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../src/cli-errors.js';
import {
  buildRolloutRequest,
  collectLabel,
  parseFailureBudget,
  parseHosts,
  parseLabels,
  parseSeconds,
  parseWaves,
  parseWholeNumber,
} from '../src/rollout-options.js';

describe('command-line words → request fields', () => {
  it('reads waves in the serial grammar: counts become numbers, percents stay strings', () => {
    expect(parseWaves('1,10%,100%')).toEqual([1, '10%', '100%']);
    expect(parseWaves(' 2 , 12.5% ')).toEqual([2, '12.5%']);
  });

  it('refuses a wave that is neither a count nor a percent as a usage error', () => {
    expect(() => parseWaves('1,ten')).toThrow(InvalidArgumentError);
    expect(() => parseWaves('1,ten')).toThrow('"ten" is neither a host count nor a percentage');
    expect(() => parseWaves(',')).toThrow(InvalidArgumentError);
  });

  it('reads a failure budget as a count or a percent', () => {
    expect(parseFailureBudget('0')).toBe(0);
    expect(parseFailureBudget('3')).toBe(3);
    expect(parseFailureBudget('5%')).toBe('5%');
    expect(() => parseFailureBudget('some')).toThrow(InvalidArgumentError);
  });

  it('reads labels as k=v lists and as a repeatable flag', () => {
    expect(parseLabels('role=web,env=prod')).toEqual({ role: 'web', env: 'prod' });
    expect(parseLabels('path=a=b')).toEqual({ path: 'a=b' });
    expect(collectLabel('env=prod', collectLabel('role=web'))).toEqual({ role: 'web', env: 'prod' });
    expect(() => parseLabels('role')).toThrow('"role" is not a label; write key=value');
    expect(() => parseLabels('=web')).toThrow(InvalidArgumentError);
  });

  it('reads host lists, whole numbers and seconds', () => {
    expect(parseHosts('web-1, web-2,')).toEqual(['web-1', 'web-2']);
    expect(parseWholeNumber('12')).toBe(12);
    expect(() => parseWholeNumber('1.5')).toThrow(InvalidArgumentError);
    expect(parseSeconds('0.5')).toBe(0.5);
    expect(() => parseSeconds('-1')).toThrow(InvalidArgumentError);
  });
});

describe('buildRolloutRequest', () => {
  it('maps every flag onto its request field', () => {
    expect(
      buildRolloutRequest({
        patch: 'pat_1',
        labels: { role: 'web' },
        waves: [1, '10%', '100%'],
        maxParallel: 4,
        maxFailures: '5%',
        bake: 30,
        autoRevert: 'wave',
        approvals: 2,
        rehearseRevert: true,
      }),
    ).toEqual({
      patchId: 'pat_1',
      target: { labels: { role: 'web' } },
      waves: [1, '10%', '100%'],
      maxParallel: 4,
      maxFailures: '5%',
      bakeSeconds: 30,
      autoRevert: 'wave',
      requiredApprovals: 2,
      rehearseRevert: true,
    });
    expect(buildRolloutRequest({ patch: 'p', hosts: ['a', 'b'] }).target).toEqual({ hostIds: ['a', 'b'] });
    expect(buildRolloutRequest({ patch: 'p', all: true }).target).toEqual({ all: true });
  });

  it('lays flags over a request file, the target flag replacing the file target', () => {
    const file = { patchId: 'pat_f', target: { labels: { role: 'db' } }, waves: [1, '100%'], bakeSeconds: 60 };
    expect(buildRolloutRequest({ hosts: ['db-1'], bake: 5 }, file)).toEqual({
      patchId: 'pat_f',
      target: { hostIds: ['db-1'] },
      waves: [1, '100%'],
      bakeSeconds: 5,
    });
    expect(buildRolloutRequest({}, file)).toEqual(file);
  });

  it('lays --reported-labels over the target given, by flag or file, and never makes it a target alone', () => {
    expect(buildRolloutRequest({ patch: 'p', hosts: ['a'], reportedLabels: { role: 'web' } }).target).toEqual({
      hostIds: ['a'],
      reportedLabels: { role: 'web' },
    });
    const file = { patchId: 'pat_f', target: { labels: { env: 'prod' } } };
    expect(buildRolloutRequest({ reportedLabels: { role: 'web' } }, file).target).toEqual({
      labels: { env: 'prod' },
      reportedLabels: { role: 'web' },
    });
    expect(() => buildRolloutRequest({ patch: 'p', reportedLabels: { role: 'web' } })).toThrow(
      '--reported-labels only narrow a target',
    );
    expect(() => buildRolloutRequest({ patch: 'p', all: true, reportedLabels: { role: 'web' } })).toThrow(UsageError);
  });

  it('refuses two targets, or none, or no patch, as usage errors', () => {
    expect(() => buildRolloutRequest({ patch: 'p', labels: { a: 'b' }, all: true })).toThrow(UsageError);
    expect(() => buildRolloutRequest({ patch: 'p', labels: { a: 'b' }, all: true })).toThrow(
      'choose one target: --labels, --all were all given',
    );
    expect(() => buildRolloutRequest({ patch: 'p' })).toThrow('which hosts?');
    expect(() => buildRolloutRequest({ all: true })).toThrow('which patch?');
  });
});
