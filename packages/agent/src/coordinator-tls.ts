import { X509Certificate } from 'node:crypto';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { type Clock, systemClock } from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { z } from 'zod';

/**
 * A SHA-256 certificate fingerprint as people paste it — `AB:CD:…` from `openssl x509 -fingerprint
 * -sha256`, or bare hex in any case — normalised to 64 lower-case hex digits.
 */
export const PinSha256Schema = z
  .string()
  .transform(normalizePin)
  .pipe(z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 fingerprint: 64 hex digits, colons allowed'));

export function normalizePin(pin: string): string {
  return pin.trim().replace(/:/g, '').toLowerCase();
}

/** Code of the Error our checkServerIdentity returns when the chain is fine but the pin is not. */
export const PIN_MISMATCH = 'ERR_FLEETPATCH_PIN_MISMATCH';

export interface CoordinatorTrust {
  /** PEM CA certificates that replace the system store for the coordinator connection. */
  ca?: string | undefined;
  /** Normalised SHA-256 of the coordinator's leaf certificate. */
  pinSha256?: string | undefined;
}

export interface CoordinatorTlsOptions {
  ca?: string;
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
}

/** Options for `tls.connect` (through ws): the configured CA and the pin on top of Node's host name check. */
export function coordinatorTlsOptions(trust: CoordinatorTrust): CoordinatorTlsOptions {
  return {
    ...(trust.ca ? { ca: trust.ca } : {}),
    checkServerIdentity: (host, cert) => {
      const hostError = checkServerIdentity(host, cert);
      if (hostError || !trust.pinSha256) return hostError;
      const got = normalizePin(cert.fingerprint256);
      if (got === trust.pinSha256) return undefined;
      return Object.assign(new Error(`certificate fingerprint ${got} is not the pinned ${trust.pinSha256}`), {
        code: PIN_MISMATCH,
        expected: trust.pinSha256,
        got,
      });
    },
  };
}

/** Checks a CA file's contents once, at start, so a wrong path or format is a config error, not a retry loop. */
export function checkCaPem(pem: string, file: string): void {
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new Error(`tls.caFile ${file} holds no PEM certificate: ${(err as Error).message}`);
  }
}

export interface TlsRefusal {
  /** Short, stable, for people and for grep: `expired`, `host name mismatch`, … */
  reason: string;
  code: string;
  fields: Record<string, unknown>;
}

const UNKNOWN_CA = 'unknown CA (not signed by tls.caFile or the system store)';
const REASONS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not yet valid',
  ERR_TLS_CERT_ALTNAME_INVALID: 'host name mismatch',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: UNKNOWN_CA,
  UNABLE_TO_GET_ISSUER_CERT: UNKNOWN_CA,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: UNKNOWN_CA,
  SELF_SIGNED_CERT_IN_CHAIN: UNKNOWN_CA,
  DEPTH_ZERO_SELF_SIGNED_CERT: UNKNOWN_CA,
  CERT_SIGNATURE_FAILURE: UNKNOWN_CA,
  CERT_UNTRUSTED: UNKNOWN_CA,
  CERT_REVOKED: 'revoked',
  [PIN_MISMATCH]: 'pin mismatch',
};

/** Names why a dial failed when the cause is the coordinator's certificate; undefined for other errors. */
export function describeTlsRefusal(err: unknown): TlsRefusal | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const { code, reason, host, expected, got } = err as Record<string, unknown>;
  if (typeof code !== 'string') return undefined;
  const text = REASONS[code];
  if (!text) return undefined;
  const fields: Record<string, unknown> = {};
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') Object.assign(fields, { host, detail: reason });
  if (code === PIN_MISMATCH) Object.assign(fields, { expected, got });
  return { reason: text, code, fields };
}

/** How often an unchanged refusal is logged at error level while the agent keeps redialling. */
const REPEAT_AFTER_MS = 60_000;

/**
 * Logs certificate refusals loud enough to be seen but not once per redial: at error when the reason
 * is new or a minute has passed, at debug otherwise. A successful connection forgets the last one.
 */
export class TlsRefusalLog {
  private last: { reason: string; at: number } | undefined;

  constructor(
    private readonly log: Logger,
    private readonly clock: Pick<Clock, 'now'> = systemClock,
  ) {}

  /** Logs `err` if it is a certificate refusal; says whether it was. */
  report(err: unknown): boolean {
    const refusal = describeTlsRefusal(err);
    if (!refusal) return false;
    const at = this.clock.now();
    const fields = { code: refusal.code, reason: refusal.reason, ...refusal.fields };
    const message = `coordinator certificate refused: ${refusal.reason}`;
    if (this.last?.reason === refusal.reason && at - this.last.at < REPEAT_AFTER_MS) {
      this.log.debug(fields, message);
    } else {
      this.log.error(fields, message);
      this.last = { reason: refusal.reason, at };
    }
    return true;
  }

  reset(): void {
    this.last = undefined;
  }
}
