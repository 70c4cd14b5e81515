import {
  type ApplyStatement,
  generateAgentKeyPair,
  keyIdOf,
  loadPrivateKey,
  type Statement,
  type StatementSignature,
  signStatement,
} from '@fleetpatch/shared';

/** A person's signing key, as `fleetpatch key generate` makes it, and what they post with it. */
export interface StatementSigner {
  publicKey: string;
  keyId: string;
  sign(statement: Statement): StatementSignature;
  /** `{statement, signature, publicKey}`: the body of /statement and /revert-statement. */
  submission<S extends Statement>(statement: S): { statement: S; signature: StatementSignature; publicKey: string };
  /** `{signature, publicKey}`: the body of /approve for a signed rollout. */
  approval(statement: ApplyStatement): { signature: StatementSignature; publicKey: string };
}

export function statementSigner(): StatementSigner {
  const pair = generateAgentKeyPair();
  const key = loadPrivateKey(pair.privateKeyPem);
  const sign = (statement: Statement) => signStatement(key, statement);
  return {
    publicKey: pair.publicKey,
    keyId: keyIdOf(pair.publicKey),
    sign,
    submission: (statement) => ({ statement, signature: sign(statement), publicKey: pair.publicKey }),
    approval: (statement) => ({ signature: sign(statement), publicKey: pair.publicKey }),
  };
}
