import {
  describePrecondition,
  type RolloutSigning,
  type Statement,
  type StatementSignatureView,
  type StatementTarget,
} from '@fleetpatch/shared';
import { oneLine } from './terminal-text.js';

const short = (digest: string) => digest.slice(0, 16);

/**
 * What the person about to sign reads: the statement's digest and what it lets agents do — the
 * change (for a file: the sha256 and length of the exact bytes), where, and until when. The
 * statement comes from the coordinator (titles, paths, queries written by others): each line is
 * written with oneLine, so what the signer reads is each field on its own line, as signed.
 */
export function describeStatement(statement: Statement, digest: string): string[] {
  const lines = [oneLine`statement ${digest}`];
  if (statement.kind === 'apply') {
    const { patch } = statement;
    const change =
      patch.change.kind === 'file'
        ? oneLine`file ${patch.change.path}  sha256 ${patch.change.contentSha256} (${patch.change.contentBytes} bytes)  mode ${patch.change.mode}  ${patch.change.owner}:${patch.change.group}`
        : oneLine`package ${patch.change.name} ${patch.change.version}`;
    lines.push(
      oneLine`  patch     "${patch.title}" (${patch.ticket})`,
      `  change    ${change}`,
      // What a host must hold before it changes: signed, so a stolen coordinator cannot drop a check.
      ...(patch.change.requires ?? []).map((p) => oneLine`  requires  ${describePrecondition(p)}`),
      oneLine`  health    ${patch.health.checks.length} check(s); ${statement.revertOnHealthFailure ? 'a host reverts itself when they fail' : 'a failing host is left changed'}`,
    );
    if (statement.rehearseRevert) {
      lines.push(
        '  rehearse  a host may revert and apply again once, within its order (the canary rehearses its revert)',
      );
    }
    // Run by the coordinator, not the agents: signed so that what gates the rollout is what was approved.
    for (const a of statement.analyses ?? []) {
      lines.push(
        oneLine`  analysis  ${a.name}: ${a.query}  ${a.condition}  (${a.count} × ${a.intervalSeconds}s, ${a.address})`,
      );
    }
  } else {
    lines.push(oneLine`  reverts   statement ${statement.revertsStatementDigest}`);
  }
  lines.push(
    oneLine`  target    ${describeTarget(statement.target)}`,
    oneLine`  valid     ${statement.notBefore} → ${statement.expiresAt} (sequence ${statement.sequence})`,
  );
  return lines;
}

export function describeTarget(target: StatementTarget): string {
  if (target.kind === 'hosts') {
    const shown = target.hostIds.slice(0, 10).join(', ');
    return `hosts ${shown}${target.hostIds.length > 10 ? ` and ${target.hostIds.length - 10} more` : ''}`;
  }
  return `selector ${JSON.stringify(target.selector)}`;
}

const signer = (s: StatementSignatureView) => oneLine`${s.signer} (key ${s.keyId})`;

/**
 * A signed rollout's lines in `rollout status`:
 *
 *   signed    statement 5e3c0a9d1f2b4c6e by alice (key …) as author, bob (key …) as approver; valid until …
 *   revert    statement 77aa01b2c3d4e5f6 pending: 1 of 2 signatures (alice (key …))
 */
export function renderSigning(signing: RolloutSigning, now: Date): string[] {
  const { apply } = signing;
  const lines = [
    oneLine`signed    statement ${short(apply.digest)} by ${apply.signatures.map((s) => oneLine`${signer(s)} as ${s.role}`).join(', ')}; valid until ${apply.statement.expiresAt}`,
  ];
  for (const revert of signing.reverts) {
    const scope = revert.hostId ? oneLine` for ${revert.hostId}` : '';
    const who = revert.signatures.map(signer).join(', ');
    lines.push(
      revert.usedAt
        ? oneLine`revert    statement ${short(revert.digest)}${scope} used ${revert.usedAt} (${who})`
        : Date.parse(revert.statement.expiresAt) <= now.getTime()
          ? oneLine`revert    statement ${short(revert.digest)}${scope} expired unused (${who})`
          : oneLine`revert    statement ${short(revert.digest)}${scope} pending: ${revert.signatures.length} of ${signing.revertSignaturesNeeded} signatures (${who})`,
    );
  }
  return lines;
}
