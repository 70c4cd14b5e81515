import { defineConfig } from 'vitest/config';

// Unit tests live beside each package; end-to-end tests in test/ run the built binaries
// (`npm test` builds first) as real processes on 127.0.0.1.
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'shared', include: ['packages/shared/test/**/*.test.ts'] } },
      { test: { name: 'agent', include: ['packages/agent/test/**/*.test.ts'], testTimeout: 30_000 } },
      { test: { name: 'cli', include: ['packages/cli/test/**/*.test.ts'], testTimeout: 30_000 } },
      { test: { name: 'coordinator', include: ['packages/coordinator/test/**/*.test.ts'], testTimeout: 30_000 } },
      {
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
