import { PatchSpecSchema, type Statement, StatementSchema, signedPatchOf } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { describeStatement } from '../src/render-statement.js';

const spec = PatchSpecSchema.parse({
  title: 'Load module 2',
  problem: 'p',
  rootCause: 'r',
  intendedFix: 'f',
  ticket: 'OPS-13',
  change: {
    kind: 'file',
    path: '/etc/app/app.conf',
    content: 'module = 2\n',
    mode: '0644',
    owner: 'root',
    group: 'root',
    requires: [{ package: 'libfoo', version: '>= 1.2-3' }, { command: ['/usr/local/bin/app-ready'] }],
  },
});

const statement: Statement = StatementSchema.parse({
  kind: 'apply',
  statementVersion: 1,
  patch: signedPatchOf(spec),
  revertOnHealthFailure: true,
  target: { kind: 'hosts', hostIds: ['web-1'] },
  notBefore: '2026-12-04T00:00:00Z',
  expiresAt: '2026-12-05T00:00:00Z',
  sequence: 1,
});

describe('what a signer reads', () => {
  it('names every host precondition the statement signs, after the change', () => {
    const lines = describeStatement(statement, 'd'.repeat(64));
    expect(lines.slice(2, 5)).toEqual([
      expect.stringMatching(/^ {2}change {4}file \/etc\/app\/app.conf {2}sha256 /),
      '  requires  package libfoo >= 1.2-3',
      '  requires  command /usr/local/bin/app-ready',
    ]);
  });
});
