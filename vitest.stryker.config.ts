import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Mutation testing only (stryker.config.mjs): the unit tests of shared, agent and coordinator,
// against their TypeScript sources. `@fleetpatch/shared` normally resolves to its built dist, which
// Stryker never mutates; here it points at the (mutated) sources in Stryker's sandbox. The
// end-to-end tests in test/ run the built binaries, so they could never see a mutant and are left out.
export default defineConfig({
  resolve: {
    alias: { '@fleetpatch/shared': fileURLToPath(new URL('./packages/shared/src/index.ts', import.meta.url)) },
  },
  test: {
    include: [
      'packages/shared/test/**/*.test.ts',
      'packages/agent/test/**/*.test.ts',
      'packages/coordinator/test/**/*.test.ts',
    ],
    testTimeout: 30_000,
  },
});
