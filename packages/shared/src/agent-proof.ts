import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
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

export function generateAgentKeyPair(): AgentKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    publicKey: rawPublicKey(publicKey),
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
  };
}

export function rawPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('not an ed25519 key');
  return jwk.x;
}

export function loadPrivateKey(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the agent key must be ed25519');
  return key;
}

export function signPayload(privateKey: KeyObject, payload: Buffer): string {
  return sign(null, payload, privateKey).toString('base64url');
}

/** False for a wrong signature and for any malformed key or signature: never throws on hostile input. */
export function verifyPayload(publicKey: string, payload: Buffer, signature: string): boolean {
  if (!AgentPublicKeySchema.safeParse(publicKey).success || !SignatureSchema.safeParse(signature).success) return false;
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey }, format: 'jwk' });
    return verify(null, payload, key, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}
