import { configDefaults, defineConfig } from 'vitest/config';
import { skipAllowListPlugin } from './test/support/skip-allowlist.js';

// Unit tests live beside each package; end-to-end tests in test/ run the built binaries
// (`npm test` builds first) as real processes on 127.0.0.1. Every project extends this root config,
// so what is set here holds for every test file.
export default defineConfig({
  // In CI (CI=true) a skipped test fails the run unless test/skip-allowlist.json lists it with a reason.
  plugins: [skipAllowListPlugin(new URL('./test/skip-allowlist.json', import.meta.url).pathname)],
  test: {
    // A test in which no expect() ran fails: a test that cannot fail proves nothing.
    expect: { requireAssertions: true },
    // Two files at a time, even on a 2-core runner: the end-to-end files mostly wait on their child
    // processes, and left to itself vitest ran them one after another here (737 s vs ~400 s).
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'shared', include: ['packages/shared/test/**/*.test.ts'] } },
      { extends: true, test: { name: 'agent', include: ['packages/agent/test/**/*.test.ts'], testTimeout: 30_000 } },
      { extends: true, test: { name: 'cli', include: ['packages/cli/test/**/*.test.ts'], testTimeout: 30_000 } },
      {
        extends: true,
        test: { name: 'coordinator', include: ['packages/coordinator/test/**/*.test.ts'], testTimeout: 30_000 },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/**/*.test.ts'],
          // The fault suite has its own run (`npm run test:faults`, vitest.faults.config.ts).
          exclude: [...configDefaults.exclude, 'test/faults/**'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
