import { connect } from 'node:net';
import { type CheckOfKind, type CheckOutcome, describeError, fail, pass } from './check-outcome.js';

export function runTcpCheck(check: CheckOfKind<'tcp'>, signal: AbortSignal): Promise<CheckOutcome> {
  const target = `${check.host}:${check.port}`;
  if (signal.aborted) return Promise.resolve(fail('aborted'));
  return new Promise((resolve) => {
    const socket = connect({ host: check.host, port: check.port });
    const finish = (outcome: CheckOutcome): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.removeAllListeners();
      // Swallow late errors from a socket we are abandoning.
      socket.on('error', () => undefined);
      socket.destroy();
      resolve(outcome);
    };
    const onAbort = (): void => finish(fail('aborted'));
    const timer = setTimeout(
      () => finish(fail(`no connection to ${target} within ${check.timeoutMs} ms`)),
      check.timeoutMs,
    );
    signal.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => finish(pass(`connected to ${target}`)));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const reason = err.code === 'ECONNREFUSED' ? 'connection refused' : describeError(err);
      finish(fail(`${reason} (${target})`));
    });
  });
}
