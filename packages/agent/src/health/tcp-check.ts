import { connect } from 'node:net';
import type { AllowedDestinations } from '../policy/allowed-destinations.js';
import { type CheckOfKind, type CheckOutcome, describeError, fail, pass } from './check-outcome.js';

/** Connects to the address the agent policy passed for `host:port` (never a second DNS answer). */
export async function runTcpCheck(
  check: CheckOfKind<'tcp'>,
  signal: AbortSignal,
  destinations: AllowedDestinations,
): Promise<CheckOutcome> {
  const target = `${check.host}:${check.port}`;
  if (signal.aborted) return fail('aborted');
  let address: string;
  try {
    address = (await destinations.addressFor(check.host, check.port)).address;
  } catch (err) {
    return fail(`refused by the agent policy: ${describeError(err)}`);
  }
  return new Promise((resolve) => {
    const socket = connect({ host: address, port: check.port });
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
