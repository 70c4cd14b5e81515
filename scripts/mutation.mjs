// @ts-check
// `npm run test:mutation`: one Stryker run per module of stryker.config.mjs, each with only its own
// unit tests, then a table of scores per module (also written to reports/mutation/summary.md).
// `npm run test:mutation:ci` (`--ci`): only the pure modules, each with its fast `ci` tests; the
// build fails when any of them scores under CI_BREAK_THRESHOLD.
//
// Flags: --ci   --module NAME (repeatable; names as in stryker.config.mjs)   --concurrency N
//        (Stryker's test runner processes; its default is the number of cores, less one above four)
import { mkdir, writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Stryker } from '@stryker-mutator/core';
import { baseOptions, CI_BREAK_THRESHOLD, MUTATION_MODULES } from '../stryker.config.mjs';

/** @import { MutantResult, PartialStrykerOptions } from '@stryker-mutator/api/core' */

const { values: flags } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    module: { type: 'string', multiple: true },
    concurrency: { type: 'string' },
  },
  strict: true,
});

const unknown = (flags.module ?? []).filter((name) => !MUTATION_MODULES.some((m) => m.name === name));
if (unknown.length > 0) {
  process.stderr.write(
    `unknown module ${unknown.join(', ')}; known: ${MUTATION_MODULES.map((m) => m.name).join(', ')}\n`,
  );
  process.exit(2);
}
const selected = MUTATION_MODULES.filter(
  (m) => (flags.ci ? m.ci !== undefined : true) && (flags.module === undefined || flags.module.includes(m.name)),
);
const concurrency = flags.concurrency === undefined ? undefined : Number.parseInt(flags.concurrency, 10);
if (concurrency !== undefined && !(concurrency >= 1)) {
  process.stderr.write('usage: mutation.mjs [--ci] [--module NAME]... [--concurrency N]\n');
  process.exit(2);
}

/**
 * @typedef {object} ModuleScore
 * @property {string} name
 * @property {number} score  Stryker's: (killed + timeout) / (killed + timeout + survived + no coverage)
 * @property {number} killed
 * @property {number} survived
 * @property {number} timeout
 * @property {number} noCoverage
 * @property {number} errors  mutants that do not compile or crash the runner: not counted in the score
 * @property {number} seconds
 */

/** @type {ModuleScore[]} */
const scores = [];
for (const module of selected) {
  const slug = module.name.replaceAll(/[^a-z0-9]+/g, '-');
  /** @type {PartialStrykerOptions} */
  const base = baseOptions();
  const options = {
    ...base,
    mutate: module.mutate,
    htmlReporter: { fileName: `reports/mutation/${slug}.html` },
    jsonReporter: { fileName: `reports/mutation/${slug}.json` },
    ...(flags.ci ? { thresholds: { ...base.thresholds, break: CI_BREAK_THRESHOLD } } : {}),
    ...(concurrency === undefined ? {} : { concurrency }),
  };
  process.stdout.write(`\n=== mutation: ${module.name} (${module.mutate.join(', ')})\n`);
  // Read by vitest.stryker.config.ts in Stryker's test runner processes, which inherit them.
  process.env.FLEETPATCH_MUTATION_MODULE = module.name;
  if (flags.ci) process.env.FLEETPATCH_MUTATION_CI = '1';
  const started = performance.now();
  const results = await new Stryker(options).runMutationTest();
  scores.push(scoreOf(module.name, results, (performance.now() - started) / 1000));
}

const table = renderTable(scores);
process.stdout.write(`\n${table}`);
await mkdir('reports/mutation', { recursive: true });
await writeFile(`reports/mutation/summary${flags.ci ? '-ci' : ''}.md`, table);

const failing = flags.ci ? scores.filter((s) => s.score < CI_BREAK_THRESHOLD) : [];
if (failing.length > 0) {
  process.stderr.write(
    `mutation score under the CI threshold of ${CI_BREAK_THRESHOLD}%: ${failing.map((s) => `${s.name} ${s.score.toFixed(2)}%`).join(', ')}\n`,
  );
  process.exit(1);
}

/**
 * @param {string} name
 * @param {MutantResult[]} results
 * @param {number} seconds
 * @returns {ModuleScore}
 */
function scoreOf(name, results, seconds) {
  /** @param {MutantResult['status'][]} statuses */
  const count = (...statuses) => results.filter((r) => statuses.includes(r.status)).length;
  const killed = count('Killed');
  const timeout = count('Timeout');
  const survived = count('Survived');
  const noCoverage = count('NoCoverage');
  const detected = killed + timeout;
  const valid = detected + survived + noCoverage;
  return {
    name,
    score: valid === 0 ? 100 : (detected / valid) * 100,
    killed,
    survived,
    timeout,
    noCoverage,
    errors: count('CompileError', 'RuntimeError'),
    seconds,
  };
}

/** @param {ModuleScore[]} rows */
function renderTable(rows) {
  const lines = [
    '| module | score | killed | survived | timeout | no coverage | errors | time |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (s) =>
        `| ${s.name} | ${s.score.toFixed(2)} % | ${s.killed} | ${s.survived} | ${s.timeout} | ${s.noCoverage} | ${s.errors} | ${Math.round(s.seconds)} s |`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}
