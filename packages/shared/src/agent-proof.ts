import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, sign, verify } from 'node:crypto';
import { z } from 'zod';

/**
 * Agent credentials are ed25519 key pairs the agent makes itself when it enrolls. The coordinator
 * stores only the public key; on every connect it sends a fresh random challenge and the agent
 * proves possession of the private key by signing it. A copy of the coordinator's database therefore
 * holds nothing that lets anyone speak for a host, and a recorded handshake cannot be replayed.
 */

/** The upgrade request names the agent it speaks for; the proof comes after the challenge. */
export const AGENT_ID_HEADER = 'x-fleetpatch-agent';

/** An ed25519 public key: the raw 32 bytes, base64url (43 characters, no padding). */
export const AgentPublicKeySchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{43}$/, 'must be a raw ed25519 public key, base64url');

/** A challenge nonce: 32 random bytes, base64url. */
export const ChallengeNonceSchema = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be 32 bytes, base64url');

/** An ed25519 signature: 64 bytes, base64url (86 characters). */
export const SignatureSchema = z.string().regex(/^[A-Za-z0-9_-]{86}$/, 'must be an ed25519 signature, base64url');

/** Domain-separated so a proof for one purpose can never be replayed as another. */
export function connectProofPayload(agentId: string, nonce: string): Buffer {
  return Buffer.from(`fleetpatch-agent-connect-v1\n${agentId}\n${nonce}`, 'utf8');
}

export function enrollProofPayload(hostId: string, publicKey: string): Buffer {
  return Buffer.from(`fleetpatch-agent-enroll-v1\n${hostId}\n${publicKey}`, 'utf8');
}

export interface AgentKeyPair {
  /** Raw public key, base64url: what the coordinator stores. */
  publicKey: string;
  /** PKCS#8 PEM: what the agent keeps, mode 0600, in its data dir. */
  privateKeyPem: string;
}

/** A key pair as an agent holds it: its stored form, and the private key loaded for signing. */
export interface LoadedAgentKeyPair extends AgentKeyPair {
  privateKey: KeyObject;
}

export function generateAgentKeyPair(): AgentKeyPair {
  const { publicKey, privateKeyPem } = generateLoadedAgentKeyPair();
  return { publicKey, privateKeyPem };
}

/**
 * A new key pair with its private key loaded: an enrolling agent signs with the key it just made
 * instead of importing its PEM again (~60 µs, and an enrollment is on every new host's first start).
 *
 * Made from 32 random bytes, its seed (RFC 8032: an ed25519 private key is any 32 bytes), not by
 * `generateKeyPairSync`. On Node 20 exporting a key that a key-generation job made can hang the
 * process for good: the export holds the key's lock while it makes strings, a garbage collection
 * in between finalizes the job, and the job's destructor waits for that same lock. An agent process
 * of the bench stopped so in the middle of a first start (main thread in `KeyGenJob::~KeyGenJob`,
 * under `ExportJWKEdKey`); `agent-key-deadlock.test.ts` makes it happen in under a second. A key
 * imported from its seed has no job to finalize.
 */
export function generateLoadedAgentKeyPair(): LoadedAgentKeyPair {
  const privateKeyPem = pemOfSeed(randomBytes(32));
  const privateKey = loadPrivateKey(privateKeyPem);
  return { publicKey: rawPublicKey(createPublicKey(privateKey)), privateKeyPem, privateKey };
}

export function rawPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('not an ed25519 key');
  return jwk.x;
}

/**
 * The DER of every PKCS#8 (v1) ed25519 private key up to its 32-byte seed: SEQUENCE, version 0, the
 * algorithm id 1.3.101.112, then an OCTET STRING holding an OCTET STRING of 32 bytes. It is what
 * `generateAgentKeyPair` writes (RFC 8410 §7).
 */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const PEM_BODY = /^-----BEGIN PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END PRIVATE KEY-----\r?\n?$/;

/**
 * The PKCS#8 PEM of the ed25519 private key with this 32-byte seed, made from the prefix above: the
 * same text as `export({ format: 'pem', type: 'pkcs8' })` (48 bytes of DER: one 64-character base64
 * line), which goes through OpenSSL's encoder for ~40 µs where this takes ~2.
 */
export function pemOfSeed(seed: Buffer): string {
  if (seed.length !== 32) throw new Error('an ed25519 seed is 32 bytes');
  const der = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64')}\n-----END PRIVATE KEY-----\n`;
}

export function loadPrivateKey(pem: string): KeyObject {
  const key = ed25519FromSeed(pem) ?? createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the agent key must be ed25519');
  return key;
}

/**
 * The key of a plain PKCS#8 ed25519 PEM, imported from its seed as a JWK; undefined for anything else,
 * which OpenSSL's decoder then reads. Why: OpenSSL 3 tries decoder after decoder on a PEM, ~0.5 ms of
 * CPU, where the JWK import takes ~30 µs, and every agent start and enrollment loads its key. The
 * public half comes from the seed: the JWK form requires an `x`, which Node 20 checks is a string and
 * otherwise ignores.
 */
export function ed25519FromSeed(pem: string): KeyObject | undefined {
  const body = PEM_BODY.exec(pem)?.[1];
  if (body === undefined) return undefined;
  const der = Buffer.from(body.replace(/\r?\n/g, ''), 'base64');
  if (
    der.length !== ED25519_PKCS8_PREFIX.length + 32 ||
    !der.subarray(0, ED25519_PKCS8_PREFIX.length).equals(ED25519_PKCS8_PREFIX)
  )
    return undefined;
  const d = der.subarray(ED25519_PKCS8_PREFIX.length).toString('base64url');
  try {
    return createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d, x: '' }, format: 'jwk' });
  } catch {
    // A Node that checks `x` against the seed: the PEM path reads it, only slower.
    return undefined;
  }
}

export function signPayload(privateKey: KeyObject, payload: Buffer): string {
  return sign(null, payload, privateKey).toString('base64url');
}

/** False for a wrong signature and for any malformed key or signature: never throws on hostile input. */
export function verifyPayload(publicKey: string, payload: Buffer, signature: string): boolean {
  const key = wellFormedKey(publicKey, signature);
  if (key === undefined) return false;
  try {
    return verify(null, payload, key, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}

/**
 * `verifyPayload` on libuv's thread pool, with the same answers; never rejects. One ed25519
 * verification is ~110 µs of CPU (OpenSSL 3 on a 2-core EPYC VM): a coordinator that checks the proofs
 * of 10,000 agents reconnecting at once spent a fifth of its event loop on them, while their
 * handshakes, hellos and the store's writes waited behind. The loop now spends ~20 µs on each.
 */
export function verifyPayloadOffThread(publicKey: string, payload: Buffer, signature: string): Promise<boolean> {
  const key = wellFormedKey(publicKey, signature);
  if (key === undefined) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      verify(null, payload, key, Buffer.from(signature, 'base64url'), (err, valid) => resolve(err === null && valid));
    } catch {
      resolve(false);
    }
  });
}

/** The public key to check `signature` with, or undefined when either is not what an agent sends. */
function wellFormedKey(publicKey: string, signature: string): KeyObject | undefined {
  if (!AgentPublicKeySchema.safeParse(publicKey).success || !SignatureSchema.safeParse(signature).success)
    return undefined;
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey }, format: 'jwk' });
  } catch {
    return undefined;
  }
}
