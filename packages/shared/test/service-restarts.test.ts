import { describe, expect, it } from 'vitest';
import { PatchSpecSchema, ServiceRestartsSchema } from '../src/index.js';

describe('the restart list of a change', () => {
  it('takes service units by full name, each list at most 20 and no repeats', () => {
    expect(ServiceRestartsSchema.parse({ afterApply: ['nginx.service', 'getty@tty1.service'] })).toEqual({
      afterApply: ['nginx.service', 'getty@tty1.service'],
      afterRevert: [],
    });
    const refused = (restart: unknown) =>
      ServiceRestartsSchema.safeParse(restart).error?.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(refused({ afterApply: ['--now.service'] })?.[0]).toMatch(/^afterApply\.0: must be a systemd service unit/);
    expect(refused({ afterApply: ['nginx'] })?.[0]).toMatch(/^afterApply\.0: must be a systemd service unit/);
    expect(refused({ afterApply: ['sockets.target'] })?.[0]).toMatch(/^afterApply\.0: must be a systemd service unit/);
    expect(refused({ afterApply: ['a b.service'] })?.[0]).toMatch(/^afterApply\.0: must be a systemd service unit/);
    expect(refused({ afterRevert: ['a.service', 'a.service'] })).toEqual(['afterRevert.1: a.service is listed twice']);
    expect(refused({ afterApply: Array.from({ length: 21 }, (_, i) => `u${i}.service`) })?.[0]).toMatch(
      /^afterApply: /,
    );
    expect(refused({ afterApply: [], reload: [] })?.[0]).toMatch(/Unrecognized key/);
  });

  it('is part of the change, in file and package patches alike', () => {
    const prose = { title: 't', problem: 'p', rootCause: 'r', intendedFix: 'f', ticket: 'T-1' };
    const restart = { afterApply: ['app.service'] };
    const pkg = PatchSpecSchema.parse({
      ...prose,
      change: { kind: 'package', manager: 'apt', name: 'libssl3', version: '3.0.15-1~deb12u1', restart },
    });
    expect(pkg.change.restart).toEqual({ afterApply: ['app.service'], afterRevert: [] });
    const file = PatchSpecSchema.parse({
      ...prose,
      change: {
        kind: 'file',
        path: '/etc/app.conf',
        content: 'x',
        mode: '0644',
        owner: 'root',
        group: 'root',
        restart,
      },
    });
    expect(file.change.restart).toEqual({ afterApply: ['app.service'], afterRevert: [] });
  });
});
