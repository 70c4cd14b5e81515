import { describe, expect, it } from 'vitest';
import {
  AnalysesSchema,
  expandQuery,
  hostMatcher,
  meetsCondition,
  PrometheusAnalysisSchema,
  parseCondition,
  thresholdOf,
} from '../src/analysis.js';
import { RolloutRequestSchema } from '../src/rollout.js';

const base = {
  kind: 'prometheus',
  name: 'error-rate',
  address: 'http://127.0.0.1:9090',
  query: 'sum(rate(http_requests_total{code=~"5..",$wave_hosts}[1m]))',
  condition: '< 0.01',
} as const;

/** The paths of a failed parse, each joined with dots. */
function issuePaths(input: unknown): string[] {
  const parsed = PrometheusAnalysisSchema.safeParse(input);
  if (parsed.success) return [];
  return parsed.error.issues.map((i) => i.path.join('.'));
}

describe('the condition grammar', () => {
  it('reads a fixed threshold and a baseline comparison, with or without spaces', () => {
    expect(parseCondition('< 0.01')).toEqual({ comparator: '<', usesBaseline: false, factor: 0, offset: 0.01 });
    expect(parseCondition('>=-2')).toEqual({ comparator: '>=', usesBaseline: false, factor: 0, offset: -2 });
    expect(parseCondition('<= 1.5 * baseline')).toEqual({
      comparator: '<=',
      usesBaseline: true,
      factor: 1.5,
      offset: 0,
    });
    expect(parseCondition('<=1.5*baseline+0.001')).toEqual({
      comparator: '<=',
      usesBaseline: true,
      factor: 1.5,
      offset: 0.001,
    });
    expect(parseCondition('> baseline - 1e-3')).toEqual({
      comparator: '>',
      usesBaseline: true,
      factor: 1,
      offset: -0.001,
    });
  });

  it('refuses anything else: equality, two comparators, a word, an expression the grammar has not', () => {
    for (const bad of [
      '== 1',
      '!= 0',
      '0.01',
      '< < 1',
      '< one',
      '< baseline * 1.5',
      '< 1.5 * baseline * 2',
      '< 1 + baseline',
      '< 1e999',
      '<',
      '',
      '< 0.01; drop',
    ]) {
      expect(parseCondition(bad), bad).toBeUndefined();
    }
  });

  it('holds a value to factor × baseline + offset', () => {
    const condition = parseCondition('<= 1.5 * baseline + 0.001');
    if (!condition) throw new Error('does not parse');
    expect(thresholdOf(condition, 0.02)).toBeCloseTo(0.031);
    expect(meetsCondition(0.031, '<=', thresholdOf(condition, 0.02))).toBe(true);
    expect(meetsCondition(0.04, '<=', thresholdOf(condition, 0.02))).toBe(false);
    expect(meetsCondition(0.01, '<', 0.01)).toBe(false);
    expect(meetsCondition(Number.POSITIVE_INFINITY, '<', 1)).toBe(false);
  });
});

describe('an analysis, validated strictly', () => {
  it('fills its defaults: every 30 s, 3 measurements, no failure tolerated, pause when inconclusive', () => {
    expect(PrometheusAnalysisSchema.parse(base)).toMatchObject({
      intervalSeconds: 30,
      count: 3,
      failureLimit: 0,
      inconclusive: 'pause',
      hostLabel: 'instance',
      timeoutSeconds: 10,
    });
  });

  it('names the field at fault', () => {
    expect(issuePaths({ ...base, condition: '== 0' })).toEqual(['condition']);
    expect(issuePaths({ ...base, condition: '<= 1.5 * baseline' })).toEqual(['baselineQuery']);
    expect(issuePaths({ ...base, baselineQuery: 'sum(x{$unpatched_hosts})' })).toEqual(['condition']);
    expect(issuePaths({ ...base, query: 'rate(x{$hosts}[1m])' })).toEqual(['query']);
    expect(issuePaths({ ...base, address: 'file:///etc/passwd' })).toEqual(['address']);
    expect(issuePaths({ ...base, count: 2, failureLimit: 2 })).toEqual(['failureLimit']);
    expect(issuePaths({ ...base, inconclusive: 'retry' })).toEqual(['inconclusive']);
    expect(issuePaths({ ...base, hostLabel: 'not-a-label' })).toEqual(['hostLabel']);
    expect(issuePaths({ ...base, intervalSeconds: 0 })).toEqual(['intervalSeconds']);
    expect(issuePaths({ ...base, extra: 1 })).toEqual(['']);
    expect(issuePaths({ ...base, query: 'up\u0000' })).toEqual(['query']);
  });

  it('refuses two analyses with one name', () => {
    const parsed = AnalysesSchema.safeParse([base, { ...base, condition: '< 0.5' }]);
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues.map((i) => i.path.join('.'))).toEqual(['1.name']);
  });

  it('a rollout declares none by default, and its errors are named under analyses', () => {
    expect(RolloutRequestSchema.parse({ patchId: 'p', target: { all: true } }).analyses).toEqual([]);
    const parsed = RolloutRequestSchema.safeParse({
      patchId: 'p',
      target: { all: true },
      analyses: [{ ...base, condition: '<= baseline' }],
    });
    expect(parsed.error?.issues.map((i) => i.path.join('.'))).toEqual(['analyses.0.baselineQuery']);
  });
});

describe('query templates', () => {
  it('expand to a label matcher of exactly the hosts named, metacharacters escaped for regex and string', () => {
    expect(hostMatcher('instance', ['h1', 'h2'])).toBe('instance=~"h1|h2"');
    expect(hostMatcher('host', ['web-1.example'])).toBe('host=~"web-1\\\\.example"');
    expect(hostMatcher('host', ['a"b', 'c|d'])).toBe('host=~"a\\"b|c\\\\|d"');
  });

  it('an empty set matches nothing', () => {
    expect(hostMatcher('instance', [])).toBe('instance=~"a^"');
  });

  it('replace each variable of a query, and nothing else', () => {
    const matchers = { wave_hosts: 'host=~"h1"', unpatched_hosts: 'host=~"h2|h3"' };
    expect(
      expandQuery('sum(rate(x{code=~"5..",$wave_hosts}[1m])) / sum(rate(x{$unpatched_hosts}[1m]))', matchers),
    ).toBe('sum(rate(x{code=~"5..",host=~"h1"}[1m])) / sum(rate(x{host=~"h2|h3"}[1m]))');
  });
});
