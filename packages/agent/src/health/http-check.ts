import { type CheckOfKind, type CheckOutcome, describeError, fail, pass } from './check-outcome.js';

/** A health endpoint that streams more than this is not searched further for `bodyContains`. */
const MAX_BODY_BYTES = 1024 * 1024;

export async function runHttpCheck(check: CheckOfKind<'http'>, signal: AbortSignal): Promise<CheckOutcome> {
  const timeout = AbortSignal.timeout(check.timeoutMs);
  const combined = AbortSignal.any([signal, timeout]);
  const { min, max } = check.expectStatus;
  try {
    // 'manual' so a redirect to a login page or a maintenance host is judged as the 3xx it is.
    const response = await fetch(check.url, { redirect: 'manual', signal: combined, headers: { accept: '*/*' } });
    const status = `HTTP ${response.status}`;
    if (response.status < min || response.status > max) {
      await response.body?.cancel().catch(() => undefined);
      const location = response.headers.get('location');
      const where = location !== null && response.status >= 300 && response.status < 400 ? ` → ${location}` : '';
      return fail(`${status}${where} (expected ${min}-${max})`);
    }
    if (check.bodyContains === undefined) {
      await response.body?.cancel().catch(() => undefined);
      return pass(status);
    }
    const body = await readCapped(response, MAX_BODY_BYTES);
    return body.includes(check.bodyContains)
      ? pass(`${status}, body contains ${JSON.stringify(check.bodyContains)}`)
      : fail(`${status}, body lacks ${JSON.stringify(check.bodyContains)}${excerpt(body)}`);
  } catch (err) {
    if (signal.aborted) return fail('aborted');
    if (timeout.aborted) return fail(`no response within ${check.timeoutMs} ms`);
    return fail(describeFetchError(err));
  }
}

async function readCapped(response: Response, cap: number): Promise<string> {
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < cap) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks).subarray(0, cap).toString('utf8');
}

function excerpt(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  if (flat === '') return ' (empty body)';
  return flat.length > 200 ? ` (body: ${flat.slice(0, 200)}…)` : ` (body: ${flat})`;
}

/** undici hides the useful part in `cause`: "fetch failed" alone tells an operator nothing. */
function describeFetchError(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
  const code = cause?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `host not found (${code})`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `host unreachable (${code})`;
    case 'UND_ERR_SOCKET':
      return `connection closed: ${cause?.message ?? 'socket error'}`;
    default:
      if (cause instanceof Error) return describeError(cause);
      return describeError(err);
  }
}
