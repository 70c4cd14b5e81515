import { z } from 'zod';
import { hasControlCharacter } from './validation.js';

/*
 * Metric analyses: queries the coordinator runs against the team's Prometheus during each wave's
 * verify and bake, and the condition each answer must meet. The coordinator evaluates them, never
 * the agent; they are part of the signed change all the same (see SECURITY.md).
 */

/**
 * Template variables a query may use, each expanding to a Prometheus label matcher (put it inside
 * the braces of a selector: `http_requests_total{code=~"5..",$wave_hosts}`):
 * - `$wave_hosts`: the hosts of the wave now running (`instance=~"h1|h2"`);
 * - `$unpatched_hosts`: the rollout's hosts in later waves, not patched yet — the comparison group.
 */
export const ANALYSIS_VARIABLES = ['wave_hosts', 'unpatched_hosts'] as const;
export type AnalysisVariable = (typeof ANALYSIS_VARIABLES)[number];

const COMPARATORS = ['<=', '>=', '<', '>'] as const;
export type Comparator = (typeof COMPARATORS)[number];

/**
 * A parsed condition: the value must compare with `factor × baseline + offset` (a fixed threshold
 * is `factor: 0`, `usesBaseline: false`).
 */
export interface AnalysisCondition {
  comparator: Comparator;
  usesBaseline: boolean;
  factor: number;
  offset: number;
}

const NUMBER = String.raw`[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?`;
const SIGNED = `-?${NUMBER}`;
/**
 * The condition grammar (spaces optional):
 *   condition := comparator bound
 *   comparator := "<" | "<=" | ">" | ">="
 *   bound := number | [number "*"] "baseline" [("+" | "-") number]
 * e.g. `< 0.01`, `<= 1.5 * baseline`, `<= 1.5 * baseline + 0.001`. Equality is left out on purpose:
 * measured rates are floats, and `==` on floats is a coin toss.
 */
const CONDITION = new RegExp(
  String.raw`^\s*(<=|>=|<|>)\s*(?:(${SIGNED})|(?:(${NUMBER})\s*\*\s*)?baseline(?:\s*([+-])\s*(${NUMBER}))?)\s*$`,
);

/** The condition parsed, or undefined when it does not follow the grammar. */
export function parseCondition(text: string): AnalysisCondition | undefined {
  const match = CONDITION.exec(text);
  if (!match) return undefined;
  const [, comparator, constant, factor, sign, offset] = match;
  if (constant !== undefined) {
    const value = Number(constant);
    if (!Number.isFinite(value)) return undefined;
    return { comparator: comparator as Comparator, usesBaseline: false, factor: 0, offset: value };
  }
  const f = factor === undefined ? 1 : Number(factor);
  const o = offset === undefined ? 0 : Number(offset) * (sign === '-' ? -1 : 1);
  if (!Number.isFinite(f) || !Number.isFinite(o)) return undefined;
  return { comparator: comparator as Comparator, usesBaseline: true, factor: f, offset: o };
}

/** The threshold a value is held to, given the baseline (ignored by a fixed condition). */
export function thresholdOf(condition: AnalysisCondition, baseline: number | undefined): number {
  return condition.usesBaseline ? condition.factor * (baseline ?? Number.NaN) + condition.offset : condition.offset;
}

export function meetsCondition(value: number, comparator: Comparator, threshold: number): boolean {
  switch (comparator) {
    case '<':
      return value < threshold;
    case '<=':
      return value <= threshold;
    case '>':
      return value > threshold;
    case '>=':
      return value >= threshold;
  }
}

/** `$name` words in a query: every one must be a known variable. */
const VARIABLE_REFERENCE = /\$([A-Za-z_][A-Za-z0-9_]*)/g;

export function variablesOf(query: string): string[] {
  return [...query.matchAll(VARIABLE_REFERENCE)].map((m) => m[1] as string);
}

const QuerySchema = z
  .string()
  .trim()
  .min(1)
  .max(4000)
  .refine((q) => !hasControlCharacter(q.replace(/[\n\t]/g, ' ')), 'must not contain control characters')
  .superRefine((query, ctx) => {
    const unknown = variablesOf(query).filter((v) => !(ANALYSIS_VARIABLES as readonly string[]).includes(v));
    if (unknown.length > 0) {
      ctx.addIssue({
        code: 'custom',
        message: `unknown template variable $${unknown[0]}: use ${ANALYSIS_VARIABLES.map((v) => `$${v}`).join(' or ')}`,
      });
    }
  });

/** A Prometheus label name. */
const PrometheusLabelSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]{0,99}$/, 'must be a Prometheus label name ([A-Za-z_][A-Za-z0-9_]*)');

export const InconclusivePolicySchema = z.enum(['fail', 'pause', 'ignore']);
export type InconclusivePolicy = z.infer<typeof InconclusivePolicySchema>;

export const PrometheusAnalysisSchema = z
  .object({
    kind: z.literal('prometheus'),
    /** Names the analysis in the status and the audit trail; unique within a rollout. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$/, 'must be 1-63 of [A-Za-z0-9 ._-]'),
    /** The Prometheus server: `http(s)://host:port[/prefix]`; the coordinator calls `<address>/api/v1/query`. */
    address: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).max(2000),
    /** PromQL giving the value judged; one series, or several that must each meet the condition. */
    query: QuerySchema,
    /** PromQL giving one number that `baseline` in the condition stands for (e.g. the unpatched hosts' rate). */
    baselineQuery: QuerySchema.optional(),
    /** See `parseCondition`: `< 0.01`, `<= 1.5 * baseline + 0.001`. */
    condition: z.string().max(200),
    /** Seconds between measurements (the first is this long after the wave starts). */
    intervalSeconds: z.number().min(1).max(3600).default(30),
    /** Measurements a wave needs before it may pass (at least one of them during its bake). */
    count: z.number().int().min(1).max(1000).default(3),
    /** Failed measurements tolerated in one wave; one more fails the wave. */
    failureLimit: z.number().int().min(0).max(999).default(0),
    /** A measurement that cannot be made (Prometheus unreachable, an empty or NaN answer). */
    inconclusive: InconclusivePolicySchema.default('pause'),
    timeoutSeconds: z.number().min(0.1).max(60).default(10),
    /** The Prometheus label that names a host in the matchers the variables expand to. */
    hostLabel: PrometheusLabelSchema.default('instance'),
    /**
     * The admin label of a host whose value is its `hostLabel` value in Prometheus (e.g. an
     * `instance` of `10.0.0.5:9100`); without it, the host id is.
     */
    hostLabelFrom: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/, 'must be a label key')
      .optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    const condition = parseCondition(a.condition);
    if (!condition) {
      ctx.addIssue({
        code: 'custom',
        path: ['condition'],
        message:
          'must be a comparator (<, <=, >, >=) and a number or [number *] baseline [+|- number], e.g. "< 0.01" or "<= 1.5 * baseline"',
      });
    } else if (condition.usesBaseline && a.baselineQuery === undefined) {
      ctx.addIssue({ code: 'custom', path: ['baselineQuery'], message: 'is required: the condition uses baseline' });
    } else if (!condition.usesBaseline && a.baselineQuery !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['condition'],
        message: 'must use baseline (e.g. "<= 1.5 * baseline"): a baselineQuery is given',
      });
    }
    if (a.failureLimit >= a.count) {
      ctx.addIssue({
        code: 'custom',
        path: ['failureLimit'],
        message: `must be below count (${a.count}): otherwise the analysis could never fail`,
      });
    }
  });
export type PrometheusAnalysis = z.infer<typeof PrometheusAnalysisSchema>;
export type PrometheusAnalysisInput = z.input<typeof PrometheusAnalysisSchema>;

export const AnalysisSchema = PrometheusAnalysisSchema;
export type Analysis = PrometheusAnalysis;

export const AnalysesSchema = z
  .array(AnalysisSchema)
  .max(20)
  .superRefine((analyses, ctx) => {
    const seen = new Set<string>();
    analyses.forEach((a, i) => {
      if (seen.has(a.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `names ${a.name} twice` });
      seen.add(a.name);
    });
  });

/**
 * A label matcher for `hostLabel` matching exactly `values` (`instance=~"h1|h2"`): each value a
 * regex literal (metacharacters escaped), inside a PromQL string (backslash and quote escaped).
 * An empty set matches nothing (the regex `a^` cannot match), so the query answers empty.
 */
export function hostMatcher(hostLabel: string, values: readonly string[]): string {
  const regex = values.length === 0 ? 'a^' : values.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|');
  return `${hostLabel}=~"${regex.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The query with each variable replaced by its matcher. */
export function expandQuery(query: string, matchers: Readonly<Record<AnalysisVariable, string>>): string {
  return query.replace(VARIABLE_REFERENCE, (whole, name: string) =>
    name in matchers ? matchers[name as AnalysisVariable] : whole,
  );
}

// ---- what the coordinator records ---------------------------------------------------------

/** pass / fail: judged; inconclusive: could not be judged; skipped: nothing to compare with (no unpatched host left). */
export const MeasurementVerdictSchema = z.enum(['pass', 'fail', 'inconclusive', 'skipped']);
export type MeasurementVerdict = z.infer<typeof MeasurementVerdictSchema>;

/** running: measuring; passed: enough measurements, within the failure limit; failed: over it. */
export const AnalysisRunVerdictSchema = z.enum(['running', 'passed', 'failed']);
export type AnalysisRunVerdict = z.infer<typeof AnalysisRunVerdictSchema>;
