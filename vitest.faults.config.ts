import { defineConfig } from 'vitest/config';
import { skipAllowListPlugin } from './test/support/skip-allowlist.js';

// The fault suite (`npm run test:faults`): real agents in network namespaces under partitions,
// packet loss, duplication, latency and SIGKILLs, each scenario ending with the checker of
// test/support/fault-checker.ts. One file at a time: every scenario loads the machine on purpose.
export default defineConfig({
  plugins: [skipAllowListPlugin(new URL('./test/skip-allowlist.json', import.meta.url).pathname)],
  test: {
    name: 'faults',
    include: ['test/faults/**/*.test.ts'],
    // The scenarios' PostgreSQL variants (test/support/store-variants.ts) use one cluster for the run.
    globalSetup: ['test/faults/print-results.ts', 'test/support/postgres-global-setup.ts'],
    expect: { requireAssertions: true },
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
