import { PrometheusAnalysisSchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { judgeMeasurement } from '../src/analysis/judge-measurement.js';
import { type QueryAnswer, samplesOf } from '../src/analysis/prometheus-query.js';

const analysis = (condition: string, baselineQuery?: string) =>
  PrometheusAnalysisSchema.parse({
    kind: 'prometheus',
    name: 'errors',
    address: 'http://127.0.0.1:9090',
    query: 'x',
    condition,
    ...(baselineQuery ? { baselineQuery } : {}),
  });

const vector = (...values: string[]) =>
  samplesOf({
    status: 'success',
    data: {
      resultType: 'vector',
      result: values.map((v, i) => ({ metric: { host: `h${i + 1}` }, value: [1700000000, v] })),
    },
  });
const scalar = (v: string) => samplesOf({ status: 'success', data: { resultType: 'scalar', result: [1700000000, v] } });

describe('reading a Prometheus answer', () => {
  it('reads scalars and vectors, infinities included', () => {
    expect(scalar('0.25')).toEqual({ ok: true, samples: [{ labels: {}, value: 0.25 }] });
    expect(vector('+Inf', '-Inf', '1')).toMatchObject({
      ok: true,
      samples: [{ value: Number.POSITIVE_INFINITY }, { value: Number.NEGATIVE_INFINITY }, { value: 1 }],
    });
  });

  it('calls anything else inconclusive, with the reason', () => {
    expect(samplesOf({ status: 'error', error: 'parse error at char 3' })).toEqual({
      ok: false,
      reason: 'Prometheus answered error: parse error at char 3',
    });
    expect(samplesOf({ status: 'success', data: { resultType: 'matrix', result: [] } })).toMatchObject({ ok: false });
    expect(samplesOf('<html>')).toMatchObject({ ok: false });
    expect(samplesOf(null)).toMatchObject({ ok: false });
  });
});

describe('judging a measurement', () => {
  it('passes a value within a fixed threshold, and fails the worst series over it', () => {
    expect(judgeMeasurement(analysis('< 0.01'), scalar('0.001'))).toEqual({
      verdict: 'pass',
      value: 0.001,
      baseline: null,
      threshold: 0.01,
      reason: null,
    });
    const judged = judgeMeasurement(analysis('< 0.01'), vector('0.001', '0.3', '0.02'));
    expect(judged).toMatchObject({ verdict: 'fail', value: 0.3, threshold: 0.01 });
    expect(judged.reason).toBe('0.3 {host="h2"} is not < 0.01 (< 0.01)');
  });

  it('holds the patched hosts to a multiple of the unpatched hosts’ baseline', () => {
    const compare = analysis('<= 1.5 * baseline', 'y');
    expect(judgeMeasurement(compare, scalar('0.03'), scalar('0.02'))).toMatchObject({
      verdict: 'pass',
      baseline: 0.02,
      threshold: 0.03,
    });
    expect(judgeMeasurement(compare, scalar('0.031'), scalar('0.02'))).toMatchObject({ verdict: 'fail' });
  });

  it('a lower bound fails on the smallest series', () => {
    expect(judgeMeasurement(analysis('>= 0.99'), vector('1', '0.5'))).toMatchObject({ verdict: 'fail', value: 0.5 });
  });

  it('an empty answer, a NaN, an unreachable server or a baseline that is not one number is inconclusive', () => {
    const unreachable: QueryAnswer = { ok: false, reason: 'query to http://127.0.0.1:9 failed: ECONNREFUSED' };
    expect(judgeMeasurement(analysis('< 1'), vector())).toMatchObject({
      verdict: 'inconclusive',
      reason: 'the query answered no series',
    });
    expect(judgeMeasurement(analysis('< 1'), vector('NaN'))).toMatchObject({ verdict: 'inconclusive', value: null });
    expect(judgeMeasurement(analysis('< 1'), unreachable)).toMatchObject({
      verdict: 'inconclusive',
      reason: unreachable.reason,
    });
    const compare = analysis('<= baseline', 'y');
    expect(judgeMeasurement(compare, scalar('0'), vector('1', '2')).reason).toMatch(
      /baseline: the query answered 2 series/,
    );
    expect(judgeMeasurement(compare, scalar('0'), scalar('NaN')).reason).toMatch(/baseline is NaN/);
    expect(judgeMeasurement(compare, scalar('0'), unreachable).reason).toBe(`baseline: ${unreachable.reason}`);
  });

  it('+Inf is a value like any other: over an upper bound it fails', () => {
    expect(judgeMeasurement(analysis('< 0.01'), scalar('+Inf'))).toMatchObject({ verdict: 'fail' });
  });
});
