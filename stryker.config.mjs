// @ts-check
// Mutation testing (StrykerJS): does a test fail when the code that carries an invariant is broken?
// `npm run test:mutation` runs every module below, one Stryker run each, with only the unit tests
// that should kill its mutants (scripts/mutation.mjs; vitest.stryker.config.ts picks the tests);
// `npm run test:mutation:ci` runs the `ci` ones with `thresholds.break`. `npx stryker run` on this
// file runs everything in one go (slower: a mutant of a module-level table then runs every test
// file listed here, not only its module's).

/**
 * @typedef {object} MutationModule
 * @property {string} name         how the module is called in reports and the README
 * @property {string[]} mutate     the sources whose mutants are scored
 * @property {string[]} testFiles  the unit tests expected to kill them (globs)
 * @property {string[]} [ci]       for a pure module, the fast tests that check it on every CI build
 *                                 (`npm run test:mutation:ci`, with a break threshold)
 */

/** The rollout engine's specification by example (the property test aside: it takes seconds a run). */
const ENGINE_SPECIFICATION = [
  'abort-retry',
  'approval',
  'events',
  'failure-budget',
  'lifecycle',
  'live-health',
  'offline',
  'restart',
  'revert',
  'targets',
  'waves',
  'windows',
].map((topic) => `packages/coordinator/test/rollout-${topic}.test.ts`);

/** The state machines' specification and their two writers, called directly. */
const STATE_TABLE_TESTS = ['state-machines', 'host-run-transition', 'rollout-transition'].map(
  (topic) => `packages/coordinator/test/${topic}.test.ts`,
);

/** @type {MutationModule[]} */
export const MUTATION_MODULES = [
  {
    name: 'journal',
    mutate: ['packages/agent/src/journal.ts'],
    // The journal's own tests and its main user; a module-level mutant (the entry schemas) runs
    // all of them, so the slow agent-level ones (hello-paging, limits) stay out.
    testFiles: ['packages/agent/test/journal*.test.ts', 'packages/agent/test/order-executor.test.ts'],
  },
  {
    name: 'atomic writer',
    mutate: ['packages/agent/src/fs/atomic-file.ts'],
    testFiles: [
      'packages/agent/test/atomic-file*.test.ts',
      'packages/agent/test/journal*.test.ts',
      'packages/agent/test/file-driver*.test.ts',
    ],
  },
  {
    name: 'file driver',
    mutate: ['packages/agent/src/drivers/file-driver.ts', 'packages/agent/src/drivers/file-state.ts'],
    testFiles: ['packages/agent/test/file-driver*.test.ts', 'packages/agent/test/file-state*.test.ts'],
  },
  {
    name: 'safe paths',
    mutate: ['packages/agent/src/drivers/safe-path.ts'],
    testFiles: ['packages/agent/test/safe-path.test.ts', 'packages/agent/test/file-driver*.test.ts'],
    ci: ['packages/agent/test/safe-path.test.ts'],
  },
  {
    name: 'report isolation',
    mutate: ['packages/coordinator/src/engine/report-isolation.ts'],
    testFiles: ['packages/coordinator/test/report-isolation.test.ts'],
    ci: ['packages/coordinator/test/report-isolation.test.ts'],
  },
  {
    name: 'wave planner',
    mutate: ['packages/shared/src/wave-plan.ts'],
    testFiles: ['packages/shared/test/wave-plan.test.ts'],
    ci: ['packages/shared/test/wave-plan.test.ts'],
  },
  {
    name: 'state tables',
    mutate: [
      'packages/coordinator/src/engine/host-run-states.ts',
      'packages/coordinator/src/engine/host-run-transition.ts',
      'packages/coordinator/src/engine/rollout-states.ts',
      'packages/coordinator/src/engine/rollout-transition.ts',
    ],
    // The tables' specification, then the engine's: every transition is taken by some example. A
    // mutant of a module-level table runs all of these, so the CI run takes the specification only.
    testFiles: [...STATE_TABLE_TESTS, ...ENGINE_SPECIFICATION],
    ci: STATE_TABLE_TESTS,
  },
  {
    name: 'report recorder',
    mutate: ['packages/coordinator/src/engine/report-recorder.ts'],
    testFiles: [
      'packages/coordinator/test/report-recorder.test.ts',
      ...ENGINE_SPECIFICATION,
      'packages/coordinator/test/rollout-engine.property.test.ts',
      'packages/coordinator/test/preflight-collector.test.ts',
      'packages/coordinator/test/connected-audit.test.ts',
      // Where it audits a refused order, and where its crash point result:committed stands.
      'packages/coordinator/test/order-refusal-audit.test.ts',
      'packages/coordinator/test/crash-points.test.ts',
    ],
  },
  {
    // The primitives every path, digest, package name and label goes through.
    name: 'validation schemas',
    mutate: ['packages/shared/src/validation.ts'],
    testFiles: ['packages/shared/test/validation.test.ts'],
    ci: ['packages/shared/test/validation.test.ts'],
  },
  {
    // What a host must hold before a change: the schema, dpkg's relations (and the refused < and >).
    name: 'host preconditions',
    mutate: ['packages/shared/src/preconditions.ts'],
    testFiles: ['packages/shared/test/preconditions.test.ts'],
    ci: ['packages/shared/test/preconditions.test.ts'],
  },
  {
    // Nearly every mutant of a zod schema is module-level and runs every test listed: the schemas' own.
    name: 'patch and rollout schemas',
    mutate: ['packages/shared/src/patch.ts', 'packages/shared/src/rollout.ts'],
    testFiles: ['packages/shared/test/patch-schema.test.ts', 'packages/shared/test/rollout-schema.test.ts'],
    ci: ['packages/shared/test/patch-schema.test.ts', 'packages/shared/test/rollout-schema.test.ts'],
  },
];

/** What the CI subset must score, in percent; below it `npm run test:mutation:ci` fails the build. */
export const CI_BREAK_THRESHOLD = 80;

/**
 * What every run shares; a fresh object each call, because Stryker merges the options it is given
 * into those of this file in place.
 * @returns {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export function baseOptions() {
  return {
    testRunner: 'vitest',
    // The unit tests only, against the TypeScript sources (see vitest.stryker.config.ts, which also
    // picks the module's tests); `related` would pick test files by import graph instead.
    vitest: { configFile: 'vitest.stryker.config.ts', related: false },
    coverageAnalysis: 'perTest',
    // Log lines are not mutated: see the ignorer for why.
    plugins: ['@stryker-mutator/*', './scripts/lib/stryker-log-ignorer.mjs'],
    ignorers: ['log-lines'],
    tempDirName: '.stryker-tmp',
    reporters: ['clear-text', 'progress', 'html', 'json'],
    htmlReporter: { fileName: 'reports/mutation/mutation.html' },
    jsonReporter: { fileName: 'reports/mutation/mutation.json' },
    thresholds: { high: 90, low: 75 },
  };
}

export default { ...baseOptions(), mutate: MUTATION_MODULES.flatMap((module) => module.mutate) };
