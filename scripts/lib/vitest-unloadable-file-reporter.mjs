// @ts-check
// A vitest reporter for mutation runs only (vitest.stryker.config.ts). A mutant that makes a module
// throw as it loads (an entry schema emptied, a discriminator renamed) fails every test file that
// imports it before any test is collected; Stryker's vitest runner (9.6.1) reads only collected
// tests, finds none failed, and scores the mutant Survived (stryker-js#6150). This gives each test
// file that failed with no test in it one failed test carrying the file's error, so such a mutant is
// Killed, and a file that cannot load in the initial run fails that run instead of vanishing.

/** @import { Reporter, Vitest } from 'vitest/node' */
/** @import { RunnerTestCase, RunnerTestFile } from 'vitest' */

/** @implements {Reporter} */
export class UnloadableFileReporter {
  /** @type {Vitest | undefined} */
  #vitest;

  /** @param {Vitest} vitest */
  onInit(vitest) {
    this.#vitest = vitest;
  }

  onTestRunEnd() {
    for (const file of this.#vitest?.state.getFiles() ?? []) {
      if (file.result?.state === 'fail' && file.tasks.length === 0) file.tasks.push(loadFailure(file));
    }
  }
}

/**
 * A finished, failed test of `file`. It has no test context (only vitest can build one), which
 * nothing reads once the run is over: hence the cast.
 * @param {RunnerTestFile} file
 * @returns {RunnerTestCase}
 */
function loadFailure(file) {
  const name = 'the test file loads';
  return /** @type {RunnerTestCase} */ (
    /** @type {unknown} */ ({
      type: 'test',
      id: `${file.id}_load`,
      name,
      fullName: `${file.name} > ${name}`,
      fullTestName: name,
      mode: 'run',
      file,
      suite: file,
      meta: {},
      timeout: 0,
      annotations: [],
      artifacts: [],
      result: { state: 'fail', errors: file.result?.errors ?? [] },
    })
  );
}
