import {
  type Analysis,
  type MeasurementVerdict,
  meetsCondition,
  parseCondition,
  thresholdOf,
} from '@fleetpatch/shared';
import type { QueryAnswer, Sample } from './prometheus-query.js';

/** One measurement judged: what was seen, what it was held to, and the verdict. */
export interface Judgement {
  verdict: MeasurementVerdict;
  value: number | null;
  baseline: number | null;
  threshold: number | null;
  reason: string | null;
}

const inconclusive = (reason: string, baseline: number | null = null): Judgement => ({
  verdict: 'inconclusive',
  value: null,
  baseline,
  threshold: null,
  reason,
});

const seriesName = (sample: Sample) => {
  const labels = Object.entries(sample.labels).map(([k, v]) => `${k}="${v}"`);
  return labels.length > 0 ? ` {${labels.join(', ')}}` : '';
};

/**
 * Judges an answer against the analysis's condition. Every series of the answer must meet it (the
 * value shown is the worst one); the baseline must be exactly one number. No answer, an empty
 * one or a NaN is inconclusive: nothing was measured, so nothing passed.
 */
export function judgeMeasurement(analysis: Analysis, answer: QueryAnswer, baselineAnswer?: QueryAnswer): Judgement {
  const condition = parseCondition(analysis.condition);
  // The schema refused any other condition; a stored one that does not parse is a bug, said out loud.
  if (!condition) throw new Error(`analysis ${analysis.name}: condition ${analysis.condition} does not parse`);
  let baseline: number | null = null;
  if (condition.usesBaseline) {
    if (!baselineAnswer) return inconclusive('no baseline query to compare with');
    if (!baselineAnswer.ok) return inconclusive(`baseline: ${baselineAnswer.reason}`);
    if (baselineAnswer.samples.length !== 1) {
      return inconclusive(
        `baseline: the query answered ${baselineAnswer.samples.length} series; it must answer one number (aggregate it, e.g. sum(...))`,
      );
    }
    baseline = (baselineAnswer.samples[0] as Sample).value;
    if (Number.isNaN(baseline)) return inconclusive('baseline is NaN (no data for the unpatched hosts?)');
  }
  if (!answer.ok) return inconclusive(answer.reason, baseline);
  if (answer.samples.length === 0) return inconclusive('the query answered no series', baseline);
  const nan = answer.samples.find((s) => Number.isNaN(s.value));
  if (nan) return inconclusive(`the value${seriesName(nan)} is NaN (no data?)`, baseline);

  const threshold = thresholdOf(condition, baseline ?? undefined);
  // The worst series: the largest for an upper bound, the smallest for a lower one.
  const upper = condition.comparator === '<' || condition.comparator === '<=';
  const worst = answer.samples.reduce((a, b) => ((upper ? b.value > a.value : b.value < a.value) ? b : a));
  const ok = answer.samples.every((s) => meetsCondition(s.value, condition.comparator, threshold));
  const shown = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : '-Inf');
  return {
    verdict: ok ? 'pass' : 'fail',
    value: worst.value,
    baseline,
    threshold,
    reason: ok
      ? null
      : `${shown(worst.value)}${seriesName(worst)} is not ${condition.comparator} ${shown(threshold)} (${analysis.condition})`,
  };
}
