/**
 * An agent's frame with every `\u0000` escape (a NUL character once parsed) turned into `\ufffd`
 * (the replacement character). Why: PostgreSQL's text and jsonb cannot hold a NUL, so one report
 * carrying it — a fact, a version, a health check's output — failed its whole batch's transaction,
 * which is retried until it commits: one host's bytes stopped every agent's reports from being
 * recorded. On SQLite the NUL was kept; now both stores keep the same U+FFFD. In JSON text a NUL can
 * only be this escape (raw control characters are not JSON), so the text is changed before it is
 * parsed, keys and values alike; `\\u0000` (an escaped backslash, then `u0000`) is left as it is.
 */
export function withoutNulEscapes(text: string): string {
  return text.includes('\\u0000') ? text.replace(NUL_ESCAPE, '$1\\ufffd') : text;
}

/** A backslash ending an odd run of them, then `u0000`: the escape itself, not an escaped backslash. */
const NUL_ESCAPE = /(?<!\\)((?:\\\\)*)\\u0000/g;
