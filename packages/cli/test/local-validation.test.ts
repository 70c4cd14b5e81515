import { describe, expect, it } from 'vitest';
import { describeError, LocalValidationError } from '../src/cli-errors.js';
import { validatePatchSpec, validateRolloutRequest } from '../src/local-validation.js';

const goodPatch = {
  title: 'More workers',
  problem: 'Requests queue at peak.',
  rootCause: 'Too few workers.',
  intendedFix: 'workers = 8',
  ticket: 'OPS-1',
  change: { kind: 'file', path: '/etc/app.conf', content: 'x', mode: '0644', owner: 'root', group: 'root' },
};

function refusal(fn: () => unknown): LocalValidationError {
  try {
    fn();
  } catch (err) {
    if (err instanceof LocalValidationError) return err;
    throw err;
  }
  throw new Error('expected a LocalValidationError');
}

describe('local validation with the shared schemas', () => {
  it('passes a good patch through unchanged (the server applies the defaults)', () => {
    expect(validatePatchSpec(goodPatch, 'patch.json')).toBe(goodPatch);
  });

  it('names every failing field path of a bad patch', () => {
    const err = refusal(() =>
      validatePatchSpec(
        { ...goodPatch, ticket: '', change: { ...goodPatch.change, path: 'etc/../x', mode: '999' } },
        'patch.json',
      ),
    );
    expect(err.message).toBe('patch.json is not a valid patch; nothing was sent');
    const paths = err.issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['ticket', 'change.path', 'change.mode']));
    expect(err.issues.find((i) => i.path === 'change.mode')?.message).toBe('must be an octal mode such as "0644"');
  });

  it('refuses, before sending, what the coordinator would refuse: special mode bits, bad base64, budgets over 100%', () => {
    const patch = refusal(() =>
      validatePatchSpec({ ...goodPatch, change: { ...goodPatch.change, mode: '4755', encoding: 'base64' } }, 'p.json'),
    );
    expect(patch.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['change.mode', 'change.content']));
    const special = { ...goodPatch, change: { ...goodPatch.change, mode: '4755', allowSpecialModes: true } };
    expect(validatePatchSpec(special, 'p.json')).toBe(special);
    const rollout = refusal(() =>
      validateRolloutRequest({ patchId: 'p', target: { all: true }, waves: ['150%'], maxFailures: '101%' }),
    );
    expect(rollout.issues.map((i) => i.path)).toEqual(expect.arrayContaining(['waves.0', 'maxFailures']));
  });

  it('prints the message and the paths, and exits 2 (bad input)', () => {
    const err = refusal(() => validatePatchSpec({ ...goodPatch, title: undefined }, 'p.json'));
    const { lines, exitCode } = describeError(err);
    expect(exitCode).toBe(2);
    expect(lines[0]).toBe('error: p.json is not a valid patch; nothing was sent');
    expect(lines[1]).toMatch(/^ {2}title: /);
  });

  it('refuses a rollout request with the failing paths', () => {
    const err = refusal(() =>
      validateRolloutRequest({ patchId: 'p', target: { hostIds: ['bad host'] }, waves: [0, '10'], maxParallel: 0 }),
    );
    expect(err.message).toBe('invalid rollout; nothing was sent');
    expect(err.issues.map((i) => i.path)).toEqual(
      expect.arrayContaining(['target.hostIds.0', 'waves.0', 'waves.1', 'maxParallel']),
    );
  });

  it('refuses a target that names no hosts', () => {
    const err = refusal(() => validateRolloutRequest({ patchId: 'p', target: {} }, 'rollout.json'));
    expect(err.message).toContain('rollout.json');
    expect(err.issues).toEqual([
      { path: 'target', message: 'name the hosts: hostIds, labels, facts, exposedTo, or all: true' },
    ]);
  });
});
