// @ts-check
// Signed orders for the demo and the end-to-end tests: throwaway signing keys — what `fleetpatch key
// generate` makes (ed25519, PKCS#8 PEM, 0600), written in a scratch directory — the request bodies a
// person posts with them, and the agent config that trusts an author and an approver. Real keys are
// made by each person on their own machine and never sit beside each other like this.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateAgentKeyPair, keyIdOf, loadPrivateKey, signStatement } from '@fleetpatch/shared';

/**
 * @import { Statement, StatementSignature } from '@fleetpatch/shared'
 */

/**
 * The agent config section of four eyes on every host: `author` signs, `approver` approves, and an
 * order needs both signatures, each by its own key.
 * @param {string} authorPublicKey
 * @param {string} approverPublicKey
 */
export function authorAndApproverSigning(authorPublicKey, approverPublicKey) {
  return {
    signing: {
      trustedKeys: [
        { publicKey: authorPublicKey, roles: ['author'] },
        { publicKey: approverPublicKey, roles: ['approver'] },
      ],
      requiredSignatures: 2,
      requireRoles: ['author', 'approver'],
    },
  };
}

/**
 * @typedef {object} ThrowawayKey
 * @property {string} file the private key, PEM, mode 0600
 * @property {string} publicKey raw ed25519 public key, base64url: what an agent's `signing.trustedKeys` lists
 * @property {string} keyId
 * @property {(statement: Statement) => StatementSignature} sign
 * @property {(statement: Statement) => { statement: Statement, signature: StatementSignature, publicKey: string }} signed
 *   the body of `POST /v1/rollouts/:id/statement` and `/revert-statement`
 */

/**
 * Makes a key pair in `dir` as `<name>.pem` and reads it back from the file, as a signer would.
 * @param {string} dir
 * @param {string} name
 * @returns {Promise<ThrowawayKey>}
 */
export async function throwawayKey(dir, name) {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${name}.pem`);
  const pair = generateAgentKeyPair();
  await writeFile(file, pair.privateKeyPem, { mode: 0o600, flag: 'wx' });
  const privateKey = loadPrivateKey(await readFile(file, 'utf8'));
  /** @param {Statement} statement */
  const sign = (statement) => signStatement(privateKey, statement);
  return {
    file,
    publicKey: pair.publicKey,
    keyId: keyIdOf(pair.publicKey),
    sign,
    signed: (statement) => ({ statement, signature: sign(statement), publicKey: pair.publicKey }),
  };
}
