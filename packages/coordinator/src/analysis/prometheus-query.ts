import { abortAfter } from '@fleetpatch/shared';
import { boundedAnswerText } from './bounded-answer-text.js';

/** One number of a query's answer, with the labels of its series (none for a scalar). */
export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** What a query gave: samples to judge, or why there is nothing to judge (inconclusive). */
export type QueryAnswer = { ok: true; samples: Sample[] } | { ok: false; reason: string };

/** How the analysis runner asks a metric server; `queryPrometheus` in production, a test's own elsewhere. */
export type MetricQuery = (
  address: string,
  query: string,
  timeoutMs: number,
  signal: AbortSignal,
) => Promise<QueryAnswer>;

/** Prometheus writes non-finite values as these strings (and `Number("+Inf")` is NaN). */
function parseSampleValue(text: unknown): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return typeof text === 'string' ? Number(text) : Number.NaN;
}

/** The most of a query's answer that is read: an answer with more series than this is refused. */
const MAX_SAMPLES = 1000;
/** And the most bytes of it, counted while it is read. */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

/**
 * An instant query through Prometheus's HTTP API (`GET <address>/api/v1/query`), bounded by
 * `timeoutMs`. Scalar and vector answers give samples; anything else — the server unreachable, a
 * non-2xx status, an answer over MAX_ANSWER_BYTES, an error status in the body, a matrix or string
 * result — is inconclusive, never thrown.
 * NaN samples are kept: the runner decides what they mean.
 */
export async function queryPrometheus(
  address: string,
  query: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<QueryAnswer> {
  const url = new URL(`${address.replace(/\/+$/, '')}/api/v1/query`);
  url.searchParams.set('query', query);
  let body: unknown;
  const limited = abortAfter(signal, timeoutMs);
  try {
    const res = await fetch(url, {
      signal: limited.signal,
      headers: { accept: 'application/json' },
      redirect: 'error',
    });
    const text = await boundedAnswerText(res, MAX_ANSWER_BYTES);
    if (text === undefined) {
      return { ok: false, reason: `the answer from ${url.origin} exceeded ${MAX_ANSWER_BYTES} bytes` };
    }
    if (!res.ok) {
      const error = errorOf(text);
      return { ok: false, reason: `Prometheus answered HTTP ${res.status}${error ? `: ${error}` : ''}` };
    }
    body = JSON.parse(text);
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'TimeoutError') return { ok: false, reason: `no answer from ${url.origin} within ${timeoutMs} ms` };
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return {
      ok: false,
      reason: `query to ${url.origin} failed: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
    };
  } finally {
    limited.clear();
  }
  return samplesOf(body);
}

function errorOf(text: string): string | undefined {
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error.slice(0, 500) : undefined;
  } catch {
    return undefined;
  }
}

/** The samples of a parsed `/api/v1/query` answer. */
export function samplesOf(body: unknown): QueryAnswer {
  const answer = body as { status?: unknown; error?: unknown; data?: { resultType?: unknown; result?: unknown } };
  if (answer?.status !== 'success') {
    return {
      ok: false,
      reason: `Prometheus answered ${String(answer?.status)}: ${String(answer?.error ?? '')}`.trim(),
    };
  }
  const { resultType, result } = answer.data ?? {};
  if (resultType === 'scalar' && Array.isArray(result)) {
    return { ok: true, samples: [{ labels: {}, value: parseSampleValue(result[1]) }] };
  }
  if (resultType === 'vector' && Array.isArray(result)) {
    if (result.length > MAX_SAMPLES) return { ok: false, reason: `the query answered ${result.length} series` };
    const samples: Sample[] = [];
    for (const entry of result as { metric?: unknown; value?: unknown }[]) {
      const labels = typeof entry?.metric === 'object' && entry.metric !== null ? entry.metric : {};
      const value = Array.isArray(entry?.value) ? parseSampleValue(entry.value[1]) : Number.NaN;
      samples.push({ labels: labels as Record<string, string>, value });
    }
    return { ok: true, samples };
  }
  return { ok: false, reason: `the query answered a ${String(resultType)}, not a scalar or an instant vector` };
}
