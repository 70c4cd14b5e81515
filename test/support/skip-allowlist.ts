/**
 * In CI a skipped test fails the run unless test/skip-allowlist.json names it with a reason. A CI
 * image without root, namespaces or dpkg would otherwise go green having proven nothing: every
 * guarded test says "(needs …)" and skips, and a skip is not a failure.
 *
 * The allow-list maps a test's name — `<file> > <describe> > <test>`, the file relative to the
 * repository — to why skipping it there is acceptable. An entry naming a file or a describe allows
 * every test under it. Registered by vitest.config.ts through a plugin (not `reporters`), so a
 * `--reporter` on the command line cannot drop it.
 */
import { readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import type { Reporter, TestModule, TestRunEndReason, Vite, Vitest } from 'vitest/node';

export type SkipAllowList = Readonly<Record<string, string>>;

/** Whether this run is CI's: `CI` set to anything but `false` or `0`, as CI services set it. */
export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env.CI?.trim().toLowerCase();
  return value !== undefined && value !== '' && value !== 'false' && value !== '0';
}

/** Reads and checks the allow-list: an object of non-empty reasons. A bad file fails the run at start. */
export function readSkipAllowList(file: string): SkipAllowList {
  const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${file}: expected an object of "test name": "reason"`);
  }
  for (const [name, reason] of Object.entries(parsed)) {
    if (typeof reason !== 'string' || reason.trim() === '') {
      throw new Error(`${file}: "${name}" needs a reason (a non-empty string)`);
    }
  }
  return parsed as SkipAllowList;
}

/** The skipped tests no entry allows: an entry allows the test it names and every test under it. */
export function unlistedSkips(skipped: readonly string[], allowList: SkipAllowList): string[] {
  const entries = Object.keys(allowList);
  return skipped.filter((name) => !entries.some((entry) => name === entry || name.startsWith(`${entry} > `)));
}

/** Every skipped test of the run, by `<file> > <describe> > <test>` with the file relative to `root`. */
export function skippedTests(modules: readonly TestModule[], root: string): string[] {
  return modules.flatMap((module) =>
    [...module.children.allTests()]
      .filter((test) => test.result().state === 'skipped')
      .map((test) => `${relative(root, module.moduleId)} > ${test.fullName}`),
  );
}

export class SkipAllowListReporter implements Reporter {
  private nameFilter: string | undefined;

  constructor(
    private readonly allowListFile: string,
    private readonly root: string,
  ) {}

  onInit(vitest: Vitest): void {
    // Tests left out by -t are reported as skipped; the rule is for whole runs, as CI's is.
    const pattern = vitest.config.testNamePattern;
    this.nameFilter = pattern === undefined ? undefined : String(pattern);
  }

  onTestRunEnd(modules: readonly TestModule[], _errors: readonly unknown[], reason: TestRunEndReason): void {
    if (reason === 'interrupted') return;
    if (this.nameFilter !== undefined) {
      console.warn(`skip allow-list not checked: tests were filtered by name (${this.nameFilter})`);
      return;
    }
    const unlisted = unlistedSkips(skippedTests(modules, this.root), readSkipAllowList(this.allowListFile));
    if (unlisted.length === 0) return;
    console.error(
      [
        `\nCI: ${unlisted.length} skipped test(s) not in ${this.allowListFile}.`,
        'A skipped test proves nothing: give the CI image what it needs, or list the test with the reason it may skip.',
        ...unlisted.map((name) => `  - ${name}`),
      ].join('\n'),
    );
    process.exitCode = 1;
  }
}

/**
 * A plugin that adds the reporter in CI (and does nothing elsewhere). Every project that extends the
 * root config runs the hook; the reporter is added once.
 */
export function skipAllowListPlugin(allowListFile: string, env: NodeJS.ProcessEnv = process.env): Vite.Plugin {
  let reporter: SkipAllowListReporter | undefined;
  return {
    name: 'fleetpatch:skip-allowlist',
    configureVitest({ vitest }) {
      if (!inCi(env) || reporter) return;
      readSkipAllowList(allowListFile); // a malformed list fails before any test runs
      reporter = new SkipAllowListReporter(resolve(allowListFile), vitest.config.root);
      vitest.config.reporters.push(reporter);
    },
  };
}
