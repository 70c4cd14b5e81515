import { describe, expect, it } from 'vitest';
import {
  connectProofPayload,
  enrollProofPayload,
  generateAgentKeyPair,
  loadPrivateKey,
  signPayload,
  verifyPayload,
} from '../src/agent-proof.js';

describe('agent proof of possession', () => {
  const pair = generateAgentKeyPair();
  const key = loadPrivateKey(pair.privateKeyPem);
  const nonce = 'n'.repeat(43);

  it('verifies a signature over the challenge with the stored public key', () => {
    const proof = signPayload(key, connectProofPayload('web-1', nonce));
    expect(verifyPayload(pair.publicKey, connectProofPayload('web-1', nonce), proof)).toBe(true);
  });

  it('refuses the same proof for another host, another nonce, or another purpose', () => {
    const proof = signPayload(key, connectProofPayload('web-1', nonce));
    expect(verifyPayload(pair.publicKey, connectProofPayload('web-2', nonce), proof)).toBe(false);
    expect(verifyPayload(pair.publicKey, connectProofPayload('web-1', 'm'.repeat(43)), proof)).toBe(false);
    expect(verifyPayload(pair.publicKey, enrollProofPayload('web-1', nonce), proof)).toBe(false);
  });

  it('refuses another key pair, and never throws on malformed keys or signatures', () => {
    const other = generateAgentKeyPair();
    const proof = signPayload(key, connectProofPayload('web-1', nonce));
    expect(verifyPayload(other.publicKey, connectProofPayload('web-1', nonce), proof)).toBe(false);
    for (const [publicKey, signature] of [
      ['', proof],
      ['A'.repeat(43), proof],
      [pair.publicKey, ''],
      [pair.publicKey, '!'.repeat(86)],
      [pair.publicKey, 'A'.repeat(86)],
    ] as const) {
      expect(verifyPayload(publicKey, connectProofPayload('web-1', nonce), signature)).toBe(false);
    }
  });

  it('refuses a private key that is not ed25519', () => {
    expect(() => loadPrivateKey('not a key')).toThrow();
  });
});
