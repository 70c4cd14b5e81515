import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  connectProofPayload,
  ed25519FromSeed,
  enrollProofPayload,
  generateAgentKeyPair,
  generateLoadedAgentKeyPair,
  loadPrivateKey,
  pemOfSeed,
  rawPublicKey,
  signPayload,
  verifyPayload,
  verifyPayloadOffThread,
} from '../src/agent-proof.js';

describe.each([
  ['on the event loop', async (...args: Parameters<typeof verifyPayload>) => verifyPayload(...args)],
  ['on the thread pool', verifyPayloadOffThread],
])('agent proof of possession, checked %s', (_where, verifies) => {
  const pair = generateAgentKeyPair();
  const key = loadPrivateKey(pair.privateKeyPem);
  const nonce = 'n'.repeat(43);

  it('verifies a signature over the challenge with the stored public key', async () => {
    const proof = signPayload(key, connectProofPayload('web-1', nonce));
    expect(await verifies(pair.publicKey, connectProofPayload('web-1', nonce), proof)).toBe(true);
  });

  it('refuses the same proof for another host, another nonce, or another purpose', async () => {
    const proof = signPayload(key, connectProofPayload('web-1', nonce));
    expect(await verifies(pair.publicKey, connectProofPayload('web-2', nonce), proof)).toBe(false);
    expect(await verifies(pair.publicKey, connectProofPayload('web-1', 'm'.repeat(43)), proof)).toBe(false);
    expect(await verifies(pair.publicKey, enrollProofPayload('web-1', nonce), proof)).toBe(false);
  });

  it('refuses another key pair, and never throws on malformed keys or signatures', async () => {
    const other = generateAgentKeyPair();
    const proof = signPayload(key, connectProofPayload('web-1', nonce));
    expect(await verifies(other.publicKey, connectProofPayload('web-1', nonce), proof)).toBe(false);
    for (const [publicKey, signature] of [
      ['', proof],
      ['A'.repeat(43), proof],
      [pair.publicKey, ''],
      [pair.publicKey, '!'.repeat(86)],
      [pair.publicKey, 'A'.repeat(86)],
    ] as const) {
      expect(await verifies(publicKey, connectProofPayload('web-1', nonce), signature)).toBe(false);
    }
  });
});

describe('the agent private key', () => {
  it('refuses a private key that is not ed25519', () => {
    expect(() => loadPrivateKey('not a key')).toThrow();
  });
});

describe('loading the agent key', () => {
  const payload = connectProofPayload('web-1', 'n'.repeat(43));

  it('loads the PEM it writes into the same key, from its seed', () => {
    const pair = generateAgentKeyPair();
    const key = loadPrivateKey(pair.privateKeyPem);
    const viaOpenSsl = createPrivateKey(pair.privateKeyPem);
    expect(rawPublicKey(createPublicKey(key))).toBe(pair.publicKey);
    expect(key.export({ format: 'jwk' })).toEqual(viaOpenSsl.export({ format: 'jwk' }));
    // …by the seed path, not OpenSSL's decoders.
    expect(ed25519FromSeed(pair.privateKeyPem)?.export({ format: 'jwk' })).toEqual(key.export({ format: 'jwk' }));
    expect(verifyPayload(pair.publicKey, payload, signPayload(key, payload))).toBe(true);
  });

  it('reads a PEM with CRLF line ends or without its last newline', () => {
    const pair = generateAgentKeyPair();
    for (const pem of [pair.privateKeyPem.replace(/\n/g, '\r\n'), pair.privateKeyPem.trimEnd()]) {
      expect(rawPublicKey(createPublicKey(loadPrivateKey(pem)))).toBe(pair.publicKey);
    }
  });

  it('leaves a PEM of another layout to OpenSSL, which reads it the same', () => {
    const pair = generateAgentKeyPair();
    // Text before the armour: OpenSSL skips it, the seed path does not take it.
    const pem = `an explanatory line\n${pair.privateKeyPem}`;
    expect(ed25519FromSeed(pem)).toBeUndefined();
    expect(rawPublicKey(createPublicKey(loadPrivateKey(pem)))).toBe(pair.publicKey);
  });

  it('refuses a PKCS#8 key of another algorithm and a seed of the wrong length', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => loadPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString())).toThrow(
      'must be ed25519',
    );
    const short = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.alloc(31)]);
    expect(() =>
      loadPrivateKey(`-----BEGIN PRIVATE KEY-----\n${short.toString('base64')}\n-----END PRIVATE KEY-----\n`),
    ).toThrow();
  });
});

describe('a new key pair, loaded', () => {
  const payload = enrollProofPayload('web-1', 'k'.repeat(43));

  it('writes the PEM OpenSSL writes, for key after key', () => {
    for (let i = 0; i < 50; i++) {
      const seed = randomBytes(32);
      const pem = pemOfSeed(seed);
      const key = createPrivateKey(pem);
      expect(key.export({ format: 'pem', type: 'pkcs8' }).toString()).toBe(pem);
      // The seed is the key: RFC 8032's private key, as OpenSSL reads it back.
      expect(Buffer.from(key.export({ format: 'jwk' }).d as string, 'base64url')).toEqual(seed);
    }
  });

  it('signs with the key its PEM and its public key stand for', () => {
    const pair = generateLoadedAgentKeyPair();
    expect(rawPublicKey(createPublicKey(pair.privateKey))).toBe(pair.publicKey);
    expect(createPrivateKey(pair.privateKeyPem).export({ format: 'jwk' })).toEqual(
      pair.privateKey.export({ format: 'jwk' }),
    );
    expect(verifyPayload(pair.publicKey, payload, signPayload(pair.privateKey, payload))).toBe(true);
    // The stored form carries no key object: generateAgentKeyPair gives the two strings only.
    expect(Object.keys(generateAgentKeyPair()).sort()).toEqual(['privateKeyPem', 'publicKey']);
  });

  it('refuses to write a PEM for a seed that is not 32 bytes', () => {
    for (const length of [0, 31, 33, 64]) {
      expect(() => pemOfSeed(Buffer.alloc(length))).toThrow('an ed25519 seed is 32 bytes');
    }
  });

  it('makes a new key from fresh random bytes each time', () => {
    const keys = new Set(Array.from({ length: 100 }, () => generateAgentKeyPair().publicKey));
    expect(keys.size).toBe(100);
  });
});
