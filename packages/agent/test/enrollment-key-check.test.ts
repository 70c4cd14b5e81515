/**
 * A new agent key is offered only once its PEM — what outlives the process, in enrollment-key.json and
 * then credential.json — loads back into the very key. The key maker is replaced here by one whose PEM
 * holds another key, as a broken encoder would write.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

vi.mock('@fleetpatch/shared', async (importOriginal) => {
  const shared = await importOriginal<typeof import('@fleetpatch/shared')>();
  return {
    ...shared,
    // The PEM of one key beside the public key and key object of another.
    generateLoadedAgentKeyPair: () => ({
      ...shared.generateLoadedAgentKeyPair(),
      privateKeyPem: shared.generateAgentKeyPair().privateKeyPem,
    }),
  };
});

const { ENROLLMENT_KEY_FILE, enrollmentKeyPair } = await import('../src/agent-credential.js');

describe('a new enrollment key', () => {
  it('is refused when its PEM does not load back into it, and nothing is kept', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'agent-key-check-'));
    try {
      await expect(enrollmentKeyPair(dataDir)).rejects.toThrow('does not read back from its PEM');
      expect(existsSync(join(dataDir, ENROLLMENT_KEY_FILE))).toBe(false);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
