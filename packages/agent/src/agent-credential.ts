import { createPublicKey, type KeyObject } from 'node:crypto';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import {
  AgentPublicKeySchema,
  generateLoadedAgentKeyPair,
  HostIdSchema,
  type LoadedAgentKeyPair,
  loadPrivateKey,
  rawPublicKey,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { makeDirectoryDurably, writeAll, writeFileAtomically } from './fs/atomic-file.js';

/** The agent's identity, made by the agent itself at enrollment: `<dataDir>/credential.json`, mode 0600. */
export const CREDENTIAL_FILE = 'credential.json';

const CredentialFileSchema = z
  .object({
    hostId: HostIdSchema,
    publicKey: AgentPublicKeySchema,
    privateKeyPem: z.string().min(1).max(10_000),
    enrolledAt: z.string(),
  })
  .strict();

export interface AgentCredential {
  hostId: string;
  publicKey: string;
  privateKey: KeyObject;
}

/** Undefined when the agent has not enrolled yet; throws on a file that exists but is not a credential. */
export async function readCredential(dataDir: string): Promise<AgentCredential | undefined> {
  let raw: string;
  try {
    // Synchronous: a small file, read at start and after a refusal, where the thread pool's four round
    // trips would cost more CPU than the read.
    raw = readFileSync(`${dataDir}/${CREDENTIAL_FILE}`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: z.infer<typeof CredentialFileSchema>;
  try {
    parsed = CredentialFileSchema.parse(JSON.parse(raw));
  } catch {
    throw new Error(
      `${dataDir}/${CREDENTIAL_FILE} is not a fleetpatch agent credential; move it away and enroll again`,
    );
  }
  return { hostId: parsed.hostId, publicKey: parsed.publicKey, privateKey: loadPrivateKey(parsed.privateKeyPem) };
}

/**
 * Atomically (a crash leaves the old credential or the new one), readable by root only.
 *
 * This file's calls are synchronous, as the journal's reads at open: they run at an agent's start or
 * enrollment (and when the coordinator refuses its key), where nothing else waits on the thread, and
 * the thread pool's round trips cost ~50–80 µs of CPU per call against ~2–12 µs, paid by every host
 * of a fleet started at once.
 */
export async function writeCredential(
  dataDir: string,
  credential: { hostId: string; publicKey: string; privateKeyPem: string },
  enrolledAt: string,
): Promise<void> {
  await makeDirectoryDurably(dataDir, 0o700);
  chmodSync(dataDir, 0o700);
  const { hostId, publicKey, privateKeyPem } = credential;
  const bytes = Buffer.from(`${JSON.stringify({ hostId, publicKey, privateKeyPem, enrolledAt }, null, 2)}\n`);
  await writeFileAtomically(dataDir, CREDENTIAL_FILE, { mode: 0o600 }, (fd) => writeAll(fd, bytes));
}

/**
 * The key pair an enrollment offers, kept in `<dataDir>/enrollment-key.json` (0600) from before the
 * first attempt until the credential is written: every retry, and an agent restarted meanwhile, offers
 * the same key. A retry whose first answer was lost (the coordinator enrolled the key, the reply never
 * came) is then the same enrollment again, which the coordinator answers again; a new key would find the
 * host taken (409) for ever.
 */
export const ENROLLMENT_KEY_FILE = 'enrollment-key.json';

const EnrollmentKeyFileSchema = z
  .object({ publicKey: AgentPublicKeySchema, privateKeyPem: z.string().min(1).max(10_000) })
  .strict();

/**
 * The pending enrollment's key pair, its private key loaded: the one kept, or a new one, kept durably
 * before it is offered.
 */
export async function enrollmentKeyPair(dataDir: string): Promise<LoadedAgentKeyPair> {
  const kept = keptEnrollmentKeyPair(dataDir);
  if (kept) return kept;
  // Absent, or not a key (a torn file cannot be: it is written atomically): a new one.
  const pair = generateLoadedAgentKeyPair();
  // The PEM is what outlives this process (here, then in credential.json): it must load back into this
  // very key, or the agent would find out only at its next start, with the enrollment key gone.
  if (!keyOf(pair.privateKeyPem, pair.publicKey)) {
    throw new Error('a new agent key does not read back from its PEM; nothing was offered or stored');
  }
  await makeDirectoryDurably(dataDir, 0o700);
  chmodSync(dataDir, 0o700);
  const bytes = Buffer.from(`${JSON.stringify({ publicKey: pair.publicKey, privateKeyPem: pair.privateKeyPem })}\n`);
  await writeFileAtomically(dataDir, ENROLLMENT_KEY_FILE, { mode: 0o600 }, (fd) => writeAll(fd, bytes));
  return pair;
}

function keptEnrollmentKeyPair(dataDir: string): LoadedAgentKeyPair | undefined {
  let kept: z.infer<typeof EnrollmentKeyFileSchema>;
  try {
    const parsed = EnrollmentKeyFileSchema.safeParse(
      JSON.parse(readFileSync(`${dataDir}/${ENROLLMENT_KEY_FILE}`, 'utf8')),
    );
    if (!parsed.success) return undefined;
    kept = parsed.data;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof SyntaxError) return undefined;
    throw err;
  }
  // A PEM that does not load, or holds another key than the public key beside it: not a key to offer.
  const privateKey = keyOf(kept.privateKeyPem, kept.publicKey);
  return privateKey ? { ...kept, privateKey } : undefined;
}

/** The private key a PEM holds, if it loads and is the private half of `publicKey`. */
function keyOf(pem: string, publicKey: string): KeyObject | undefined {
  try {
    const privateKey = loadPrivateKey(pem);
    return rawPublicKey(createPublicKey(privateKey)) === publicKey ? privateKey : undefined;
  } catch {
    return undefined;
  }
}

/** The enrollment is over (its credential written): its key lives on in the credential only. */
export async function forgetEnrollmentKeyPair(dataDir: string): Promise<void> {
  rmSync(`${dataDir}/${ENROLLMENT_KEY_FILE}`, { force: true });
}
