import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { abortAfter } from '@fleetpatch/shared';
import type { AllowedDestinations } from '../policy/allowed-destinations.js';
import { type CheckOfKind, type CheckOutcome, describeError, fail, pass } from './check-outcome.js';

/** A health endpoint that streams more than this is not searched further for `bodyContains`. */
const MAX_BODY_BYTES = 1024 * 1024;

/**
 * GET the URL and judge the status (and whether the body contains a text). Only the status, the
 * match yes/no and the time taken are reported: never a byte of the body nor a header, so a check
 * cannot carry an internal service's answer back to the coordinator. The connection goes to the
 * address the agent policy passed, never to a second DNS answer (rebinding gains nothing).
 */
export async function runHttpCheck(
  check: CheckOfKind<'http'>,
  signal: AbortSignal,
  destinations: AllowedDestinations,
): Promise<CheckOutcome> {
  const url = new URL(check.url);
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  let target: { address: string; family: 4 | 6 };
  try {
    target = await destinations.addressFor(url.hostname, port);
  } catch (err) {
    return fail(`refused by the agent policy: ${describeError(err)}`);
  }
  const limited = abortAfter(signal, check.timeoutMs);
  const started = performance.now();
  const took = () => `${Math.round(performance.now() - started)} ms`;
  const { min, max } = check.expectStatus;
  try {
    const response = await get(url, { signal: limited.signal, lookup: pinnedLookup(target) });
    const status = `HTTP ${response.statusCode ?? 0}`;
    const code = response.statusCode ?? 0;
    if (code < min || code > max) {
      response.destroy();
      return fail(`${status} (expected ${min}-${max}, ${took()})`);
    }
    if (check.bodyContains === undefined) {
      response.destroy();
      return pass(`${status} (${took()})`);
    }
    const found = await bodyContains(response, check.bodyContains);
    return found
      ? pass(`${status}, body contains the expected text (${took()})`)
      : fail(`${status}, body lacks the expected text (${took()})`);
  } catch (err) {
    if (signal.aborted) return fail('aborted');
    if (limited.signal.aborted) return fail(`no response within ${check.timeoutMs} ms`);
    return fail(describeRequestError(err));
  } finally {
    limited.clear();
  }
}

function get(url: URL, options: { signal: AbortSignal; lookup: LookupFunction }): Promise<IncomingMessage> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const requestOptions: RequestOptions = {
    method: 'GET',
    headers: { accept: '*/*' },
    signal: options.signal,
    lookup: options.lookup,
    // A fresh connection each time: a pooled socket may lead to an address judged for another check.
    agent: false,
  };
  return new Promise((resolve, reject) => {
    const req = send(url, requestOptions, resolve);
    req.once('error', reject);
    req.end();
  });
}

/** Answers every lookup with the address the policy passed. */
function pinnedLookup(target: { address: string; family: 4 | 6 }): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
}

/** Reads at most MAX_BODY_BYTES; the text stays here, only whether it matched leaves. */
function bodyContains(response: IncomingMessage, needle: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      response.removeAllListeners('data');
      response.destroy();
      resolve(Buffer.concat(chunks).subarray(0, MAX_BODY_BYTES).toString('utf8').includes(needle));
    };
    response.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.byteLength;
      if (size >= MAX_BODY_BYTES) done();
    });
    response.once('end', done);
    response.once('error', reject);
  });
}

function describeRequestError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `host unreachable (${code})`;
    default:
      return describeError(err);
  }
}
