import type { PatchSpecInput } from '@fleetpatch/shared';
import { samplePackagePatch } from '../../scripts/lib/sample-specs.mjs';

/**
 * The test package's patch: fptest 1.0 → `version`, its health the file every fptest ships
 * (`/usr/share/fptest/VERSION`), polled quickly. Shared by the e2e tests that roll fptest on real dpkg.
 */
export function fptestPatch(version: string, title: string): PatchSpecInput {
  return samplePackagePatch({
    title,
    name: 'fptest',
    version,
    expectedPriorVersion: '1.0',
    health: {
      checks: [{ kind: 'file', name: 'fptest ships its files', path: '/usr/share/fptest/VERSION' }],
      intervalSeconds: 0.1,
      minHealthySeconds: 0,
      healthyDeadlineSeconds: 10,
    },
  });
}
