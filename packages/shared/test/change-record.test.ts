import { describe, expect, it } from 'vitest';
import {
  ChangeRecordSchema,
  type ChangeRecordView,
  describePrecondition,
  hasControlCharacter,
  missingRecordFields,
  type PatchSpecInput,
  PatchSpecSchema,
  PreconditionSchema,
  patchContentDigest,
  renderChangeRecord,
} from '../src/index.js';

const SPEC: PatchSpecInput = {
  title: 'workers 8',
  problem: 'p',
  rootCause: 'r',
  intendedFix: 'f',
  ticket: 'OPS-1',
  change: { kind: 'file', path: '/etc/app.conf', content: 'workers = 8\n', mode: '0644', owner: 'root', group: 'root' },
};

function view(overrides: Partial<ChangeRecordView> = {}): ChangeRecordView {
  return {
    patch: {
      id: 'pat_1',
      title: 'workers 8',
      ticket: 'OPS-1',
      createdBy: 'alice',
      createdAt: '2026-12-04T08:00:00.000Z',
      contentDigest: 'c'.repeat(64),
      problem: 'requests queue',
      rootCause: 'sized for last year',
      intendedFix: 'workers = 8',
      change: 'file /etc/app.conf (mode 0644, root:root)',
      requires: [],
      revertable: true,
    },
    validation: [],
    validatedBy: [],
    rollbackPlan: null,
    risk: null,
    rollbackTriggers: [],
    missing: [],
    ...overrides,
  };
}

describe('patchContentDigest', () => {
  const digest = (spec: PatchSpecInput) => patchContentDigest(PatchSpecSchema.parse(spec));

  it('is the same for the same bytes, whatever the prose, encoding or mode spelling', () => {
    const base64 = {
      ...SPEC,
      title: 'another title',
      problem: 'other words',
      change: {
        ...SPEC.change,
        content: Buffer.from('workers = 8\n').toString('base64'),
        encoding: 'base64',
        mode: '644',
      },
    } as PatchSpecInput;
    expect(digest(base64)).toBe(digest(SPEC));
  });

  it('differs when the bytes, the owner or the health policy differ', () => {
    const file = SPEC.change as Extract<PatchSpecInput['change'], { kind: 'file' }>;
    expect(digest({ ...SPEC, change: { ...file, content: 'workers = 9\n' } })).not.toBe(digest(SPEC));
    expect(digest({ ...SPEC, change: { ...file, owner: 'app' } })).not.toBe(digest(SPEC));
    expect(digest({ ...SPEC, health: { healthyDeadlineSeconds: 30 } })).not.toBe(digest(SPEC));
  });
});

describe('missingRecordFields', () => {
  it('names each required field absent or empty, in the order required', () => {
    const record = ChangeRecordSchema.parse({ validation: [], risk: { level: 'low', impact: 'none' } });
    expect(missingRecordFields(record, ['rollbackPlan', 'validation', 'risk'])).toEqual(['rollbackPlan', 'validation']);
    expect(missingRecordFields(undefined, ['risk'])).toEqual(['risk']);
    expect(missingRecordFields(undefined, [])).toEqual([]);
  });
});

describe('renderChangeRecord', () => {
  it('prints a terminal change request with every section, and what is missing', () => {
    const text = renderChangeRecord(
      view({
        validation: [{ title: 'CI run 12', url: 'https://ci.example.com/12' }],
        validatedBy: [
          {
            rolloutId: 'ro_1',
            patchId: 'pat_0',
            state: 'succeeded',
            hostCount: 2,
            startedAt: '2026-12-04T08:01:00.000Z',
            finishedAt: '2026-12-04T08:02:00.000Z',
            reverted: false,
            overridden: false,
            environments: ['staging'],
          },
        ],
        rollbackPlan: { steps: ['revert', 'check'], irreversible: ['the schema migration'] },
        risk: { level: 'high', impact: 'all of it' },
        rollbackTriggers: [{ source: 'analysis', rolloutId: 'ro_1', description: 'analysis "5xx": ... < 0.01' }],
        missing: ['validation'],
      }),
      'text',
    );
    expect(text).toBe(
      [
        'CHANGE REQUEST pat_1: workers 8',
        '',
        '  Patch          pat_1',
        '  Ticket         OPS-1',
        '  Requested by   alice at 2026-12-04T08:00:00.000Z',
        '  Change         file /etc/app.conf (mode 0644, root:root)',
        `  Content digest ${'c'.repeat(64)}`,
        '  Risk           HIGH',
        '  INCOMPLETE     required field(s) empty: validation — no rollout of it is approved or started',
        '',
        'PROBLEM',
        'requests queue',
        '',
        'ROOT CAUSE',
        'sized for last year',
        '',
        'INTENDED FIX',
        'workers = 8',
        '',
        'RISK',
        'HIGH: all of it',
        '',
        'VALIDATION',
        '- CI run 12 <https://ci.example.com/12>',
        '- rollout ro_1 of pat_0 (same content) succeeded on staging (2 hosts), finished 2026-12-04T08:02:00.000Z',
        '',
        'ROLLBACK PLAN',
        '1. revert',
        '2. check',
        '',
        'CANNOT BE REVERSED:',
        '- the schema migration',
        '',
        'ROLLBACK TRIGGERS',
        '- analysis (ro_1): analysis "5xx": ... < 0.01',
        '',
      ].join('\n'),
    );
  });

  it('shows control characters of any text escaped: nothing printed can drive the terminal', () => {
    const hostile = view({
      patch: { ...view().patch, title: 'fix\u001b[2J\u001b[H', problem: 'line one\nline two\u0007\u009b' },
    });
    const text = renderChangeRecord(hostile, 'text');
    const markdown = renderChangeRecord(hostile, 'markdown');
    // Newlines are the only control characters left.
    for (const out of [text, markdown]) expect(hasControlCharacter(out.replaceAll('\n', ' '))).toBe(false);
    expect(text).toContain('CHANGE REQUEST pat_1: fix\\u001b[2J\\u001b[H\n');
    expect(text).toContain('PROBLEM\nline one\n  line two\\u0007\\u009b\n');
    // In Markdown the escape's backslash is escaped too, so it shows as typed.
    expect(markdown).toContain('# Change request: fix\\\\u001b\\[2J\\\\u001b\\[H\n');
    expect(markdown).toContain('## Problem\nline one\n  line two\\\\u0007\\\\u009b\n');
  });

  it('says plainly what is absent and that a one-way change is not reverted', () => {
    const text = renderChangeRecord(view({ patch: { ...view().patch, revertable: false } }), 'text');
    expect(text).toContain('RISK\nnot assessed');
    expect(text).toContain('VALIDATION\nno evidence given');
    expect(text).toContain(
      'ROLLBACK PLAN\nThe coordinator will NOT revert this change (marked "revertable": false).\nno documented plan',
    );
    expect(text).toContain('ROLLBACK TRIGGERS\nnone: no health check, analysis or rollout yet');
  });

  it('lists what the patch requires of a host, one precondition a line', () => {
    const requires = [
      { package: 'libfoo', version: '>= 1:1.2-3' },
      { file: '/etc/app/module.conf', sha256: 'ab'.repeat(32) },
      { command: ['/usr/local/bin/app-ready', '--quiet'] },
    ].map((p) => describePrecondition(PreconditionSchema.parse(p)));
    const text = renderChangeRecord(view({ patch: { ...view().patch, requires } }), 'text');
    expect(text).toContain(
      [
        '  Change         file /etc/app.conf (mode 0644, root:root)',
        '  Requires       package libfoo >= 1:1.2-3',
        '  Requires       file /etc/app/module.conf sha256 abababababab…',
        '  Requires       command /usr/local/bin/app-ready --quiet',
      ].join('\n'),
    );
    expect(renderChangeRecord(view({ patch: { ...view().patch, requires } }), 'markdown')).toContain(
      '- **Requires:** package libfoo \\>= 1:1.2-3\n',
    );
  });
});
