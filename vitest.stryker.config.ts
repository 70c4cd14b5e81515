import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { UnloadableFileReporter } from './scripts/lib/vitest-unloadable-file-reporter.mjs';
import { MUTATION_MODULES } from './stryker.config.mjs';

// Mutation testing only (stryker.config.mjs): unit tests of shared, agent and coordinator, against
// their TypeScript sources. `@fleetpatch/shared` normally resolves to its built dist, which Stryker
// never mutates; here it points at the (mutated) sources in Stryker's sandbox. The end-to-end tests
// in test/ run the built binaries, so they could never see a mutant and are left out.
//
// scripts/mutation.mjs names the module under test in FLEETPATCH_MUTATION_MODULE, and only that
// module's tests run (its `ci` tests when FLEETPATCH_MUTATION_CI is set). Stryker's own `testFiles` option would select them too, but in 9.6.1 it makes
// a module-level ("static") mutant activate only after its module has loaded, so the mutant is
// never seen and survives falsely (stryker-js#6144).
const moduleName = process.env.FLEETPATCH_MUTATION_MODULE;
const ci = process.env.FLEETPATCH_MUTATION_CI !== undefined;
const selected = MUTATION_MODULES.filter((module) => moduleName === undefined || module.name === moduleName);
if (selected.length === 0) throw new Error(`FLEETPATCH_MUTATION_MODULE names no module: ${moduleName}`);
const testFiles = selected.flatMap((module) => (ci ? (module.ci ?? []) : module.testFiles));

export default defineConfig({
  resolve: {
    alias: { '@fleetpatch/shared': fileURLToPath(new URL('./packages/shared/src/index.ts', import.meta.url)) },
  },
  test: {
    include: [...new Set(testFiles)],
    // As in vitest.config.ts: a test in which no expect() ran fails (a mutant that skips one is killed).
    expect: { requireAssertions: true },
    testTimeout: 30_000,
    reporters: ['default', new UnloadableFileReporter()],
  },
});
