import { request as httpRequest } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import {
  type EnrollResult,
  EnrollResultSchema,
  enrollProofPayload,
  generateLoadedAgentKeyPair,
  type LoadedAgentKeyPair,
  signPayload,
} from '@fleetpatch/shared';
import type { AgentCredential } from './agent-credential.js';
import { enrollmentKeyPair, forgetEnrollmentKeyPair, writeCredential } from './agent-credential.js';
import type { AgentConfig } from './config.js';
import { coordinatorTlsOptions } from './coordinator-tls.js';

/** Refused by the coordinator (bad join token, host taken, …): retrying will not help, a human must act. */
export class EnrollmentRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'EnrollmentRefused';
  }
}

/** Client errors that mean "try again later". */
const TRANSIENT_STATUSES = new Set([408, 429]);

export interface EnrollmentInput {
  coordinatorUrl: string;
  joinToken: string;
  hostId: string;
  /** TLS options for an https:// coordinator (CA, pin), as for the agent socket. */
  tls?: Pick<RequestOptions, 'ca' | 'checkServerIdentity'>;
  /** The key pair to offer (the same on every retry: see enrollmentKeyPair); a new one when absent. */
  keyPair?: LoadedAgentKeyPair;
}

export interface Enrolled {
  result: EnrollResult;
  /** The credential to store (its private key as PEM), and to connect with (the key loaded). */
  credential: AgentCredential & { privateKeyPem: string };
}

/**
 * Registers the public half of a key pair with the coordinator under the join token. The private key
 * never leaves this host; the caller stores the credential only once the coordinator said yes.
 */
export async function enrollWithCoordinator(input: EnrollmentInput): Promise<Enrolled> {
  const pair = input.keyPair ?? generateLoadedAgentKeyPair();
  const proof = signPayload(pair.privateKey, enrollProofPayload(input.hostId, pair.publicKey));
  const body = JSON.stringify({ hostId: input.hostId, publicKey: pair.publicKey, proof });
  const url = new URL(input.coordinatorUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : url.protocol === 'ws:' ? 'http:' : url.protocol;
  url.pathname = `${url.pathname.replace(/\/$/, '')}/v1/enroll`;
  const { status, text } = await post(url, body, input);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (status !== 201) {
    const message = (json as { error?: { message?: string } } | undefined)?.error?.message ?? text.slice(0, 200);
    // 408 (the coordinator timed the request out, e.g. in a reconnect storm) and 429 (rate-limited)
    // say "not now", not "no": the join token was not spent, so the agent tries again.
    if (status >= 400 && status < 500 && !TRANSIENT_STATUSES.has(status)) throw new EnrollmentRefused(status, message);
    throw new Error(`enrollment failed: HTTP ${status}: ${message}`);
  }
  const result = EnrollResultSchema.parse(json);
  return { result, credential: { hostId: input.hostId, ...pair } };
}

/**
 * No coordinator of the list took the enrollment: each was unreachable, refused by its certificate, or
 * answered "not now". The join token is not spent, so trying again later is right.
 */
export class EnrollmentUnanswered extends Error {
  constructor(readonly failures: readonly { coordinatorUrl: string; err: Error }[]) {
    super(failures.map((f) => `${f.coordinatorUrl}: ${f.err.message}`).join('; '));
    this.name = 'EnrollmentUnanswered';
  }
}

/**
 * Enrolls `hostId` with the join token and TLS trust of the agent's config at the first of its
 * coordinators that answers (they share one store, so any of them will do), and once that coordinator
 * accepted the key, stores it in the data dir (0600); the old key stays until then. A refusal ends it
 * at once: the others hold the same join tokens and would refuse too. Gives the credential stored,
 * its key loaded: the agent connects with it without reading the file back.
 */
export async function enrollAndStore(
  config: Pick<AgentConfig, 'coordinatorUrls' | 'tls' | 'dataDir'>,
  joinToken: string,
  hostId: string,
): Promise<{ result: EnrollResult; coordinatorUrl: string; credential: AgentCredential }> {
  const failures: { coordinatorUrl: string; err: Error }[] = [];
  const keyPair = await enrollmentKeyPair(config.dataDir);
  for (const coordinatorUrl of config.coordinatorUrls) {
    let enrolled: Enrolled;
    try {
      enrolled = await enrollWithCoordinator({
        coordinatorUrl,
        joinToken,
        hostId,
        tls: coordinatorTlsOptions(config.tls),
        keyPair,
      });
    } catch (err) {
      if (err instanceof EnrollmentRefused) throw err;
      failures.push({ coordinatorUrl, err: err instanceof Error ? err : new Error(String(err)) });
      continue;
    }
    await writeCredential(config.dataDir, enrolled.credential, new Date().toISOString());
    await forgetEnrollmentKeyPair(config.dataDir);
    const { hostId: enrolledAs, publicKey, privateKey } = enrolled.credential;
    return { result: enrolled.result, coordinatorUrl, credential: { hostId: enrolledAs, publicKey, privateKey } };
  }
  throw new EnrollmentUnanswered(failures);
}

function post(url: URL, body: string, input: EnrollmentInput): Promise<{ status: number; text: string }> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${input.joinToken}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
        timeout: 30_000,
        ...(url.protocol === 'https:' ? (input.tls ?? {}) : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          // An answer this large is not the coordinator's: stop reading.
          if (size > 64 * 1024) req.destroy(new Error('enrollment answer too large'));
          else chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('enrollment request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}
