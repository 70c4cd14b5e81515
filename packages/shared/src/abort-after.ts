/**
 * A signal that aborts when `signal` does or when `ms` milliseconds have passed, whichever is first:
 * what `AbortSignal.any([signal, AbortSignal.timeout(ms)])` means, but safe on Node 20. There the
 * combined signal holds its sources only weakly and the timeout's timer holds its signal only weakly
 * too, so a garbage collection during the wait takes the timeout away, and a request to a server that
 * never answers then waits for ever (a webhook lane stuck, an analysis that never ends). Here the
 * timer holds its controller. Call `clear()` once done, so the timer does not outlive the call.
 *
 * The timeout aborts with a `TimeoutError` DOMException, as `AbortSignal.timeout` does.
 */
export function abortAfter(signal: AbortSignal, ms: number): { signal: AbortSignal; clear: () => void } {
  const timeout = new AbortController();
  const timer = setTimeout(() => {
    timeout.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
  }, ms);
  // Like AbortSignal.timeout: a pending timeout alone does not keep the process running.
  timer.unref();
  return { signal: AbortSignal.any([signal, timeout.signal]), clear: () => clearTimeout(timer) };
}
