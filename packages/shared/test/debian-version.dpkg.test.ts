/**
 * The shared Debian version code against the real `dpkg --compare-versions`, on thousands of
 * generated pairs (a fixed seed, so a failure reproduces): the same verdict for every pair, and the
 * same refusals — dpkg's warnings and errors, word for word — for every malformed version.
 *
 * One `dpkg` process per pair is unavoidable (it compares one pair per run), so the pairs go through
 * two `sh` loops side by side, each reading its share from a file: one spawn from here per loop.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNeeding, requirement } from '../../../test/support/requirements.js';
import {
  checkDebianVersion,
  compareParsed,
  type DebianVersionCheck,
  VERSION_RELATIONS,
  type VersionRelation,
} from '../src/debian-version.js';

const PAIRS = Number(process.env.FLEETPATCH_DPKG_PAIRS ?? 3000);
const SEED = 20_241_203;
const WORKERS = 2;

const dpkg = requirement(
  'dpkg',
  spawnSync('dpkg', ['--version'], { stdio: 'ignore' }).status === 0
    ? { available: true }
    : { available: false, reason: 'dpkg is not installed' },
);

// ---- generated versions: near one another, so that every rule of the order gets exercised -----

const digits = fc.constantFrom('0', '1', '2', '9', '10', '00', '01', '99', '100', '18446744073709551616');
const upstreamToken = fc.oneof(
  { weight: 6, arbitrary: digits },
  { weight: 4, arbitrary: fc.constantFrom('.', '+', '~', '-', 'a', 'b', 'Z', 'rc', 'dfsg', 'git', '~rc', '+ds') },
  { weight: 1, arbitrary: fc.constantFrom(':', '_', '!', ' ', '/') },
);
const revisionToken = fc.oneof(
  { weight: 6, arbitrary: digits },
  { weight: 4, arbitrary: fc.constantFrom('.', '+', '~', 'deb12u', 'a', 'Z', 'ubuntu', '+b', '~bpo') },
  { weight: 1, arbitrary: fc.constantFrom(':', '_', '-', '') },
);
const epoch = fc.oneof(
  { weight: 8, arbitrary: fc.constant('') },
  { weight: 4, arbitrary: fc.constantFrom('0:', '1:', '2:', '01:', '+1:') },
  { weight: 1, arbitrary: fc.constantFrom(':', 'a:', '1a:', '2147483648:', '-1:') },
);
const start = fc.oneof({ weight: 12, arbitrary: digits }, { weight: 1, arbitrary: fc.constantFrom('a', '.', '~') });
const version = fc
  .tuple(
    epoch,
    start,
    fc.array(upstreamToken, { maxLength: 5 }),
    fc.option(fc.array(revisionToken, { maxLength: 4 }), { freq: 2 }),
  )
  .map(([e, s, up, rev]) => `${e}${s}${up.join('')}${rev === null ? '' : `-${rev.join('')}`}`);

/** A version derived from another: the close calls (one more token, a tilde, a changed digit). */
const near = (base: string) =>
  fc.oneof(
    fc.constant(base),
    upstreamToken.map((t) => `${base}${t}`),
    fc.constantFrom('~', '~~', '+b1', '.0', '0', 'a').map((t) => `${base}${t}`),
    fc.nat({ max: Math.max(0, base.length - 1) }).map((i) => base.slice(0, i)),
    fc.tuple(fc.nat({ max: Math.max(0, base.length - 1) }), digits).map(([i, d]) => `${base.slice(0, i)}${d}`),
  );

const pair = version.chain((a) =>
  fc.tuple(fc.constant(a), fc.oneof(near(a), version), fc.constantFrom(...VERSION_RELATIONS)),
);

/** dpkg's command line reads a leading `-` as an option and an empty string as "no version". */
const fitsDpkgCli = (v: string) => v !== '' && !v.startsWith('-') && !v.includes('\t');

interface Case {
  a: string;
  relation: VersionRelation;
  b: string;
}

interface DpkgAnswer {
  exitCode: number;
  stderr: string[];
}

const LOOP = `
n=0
while IFS='	' read -r a op b; do
  echo "@$n" >&2
  dpkg --compare-versions "$a" "$op" "$b"
  echo "$?"
  n=$((n+1))
done`;

/** Runs one shell loop over `cases` (written to `file`); one answer per case, in order. */
async function askDpkg(cases: readonly Case[], file: string): Promise<DpkgAnswer[]> {
  await writeFile(file, cases.map((c) => `${c.a}\t${c.relation}\t${c.b}\n`).join(''));
  const child = spawn('sh', ['-c', `${LOOP} < "$1"`, 'sh', file], {
    env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin', LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`the dpkg loop exited ${code}: ${stderr.slice(-500)}`);
  const exits = stdout.trim().split('\n').map(Number);
  const blocks = stderr.split(/^@\d+\n/m).slice(1);
  if (exits.length !== cases.length || blocks.length !== cases.length) {
    throw new Error(`dpkg answered ${exits.length}/${blocks.length} of ${cases.length} pairs`);
  }
  return exits.map((exitCode, i) => ({
    exitCode,
    stderr: (blocks[i] ?? '').split('\n').filter((line) => line !== ''),
  }));
}

/** What dpkg prints and exits for `a relation b`, by the shared code. */
function predict({ a, relation, b }: Case): DpkgAnswer {
  const stderr: string[] = [];
  const say = (text: string, check: DebianVersionCheck) => {
    if (!check.ok) stderr.push(`dpkg: ${check.severity}: version '${text}' has bad syntax: ${check.reason}`);
  };
  const checkA = checkDebianVersion(a);
  say(a, checkA);
  if (!checkA.ok && checkA.severity === 'error') return { exitCode: 2, stderr };
  const checkB = checkDebianVersion(b);
  say(b, checkB);
  if (!checkB.ok && checkB.severity === 'error') return { exitCode: 2, stderr };
  const cmp = compareParsed(checkA.version, checkB.version);
  const holds = {
    lt: cmp < 0,
    le: cmp <= 0,
    eq: cmp === 0,
    ne: cmp !== 0,
    ge: cmp >= 0,
    gt: cmp > 0,
  }[relation];
  return { exitCode: holds ? 0 : 1, stderr };
}

describeNeeding([dpkg], 'shared Debian versions vs dpkg --compare-versions', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-dpkg-versions-'));
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it(`agrees with dpkg on ${PAIRS} generated pairs: verdicts, warnings and errors`, {
    timeout: 300_000,
  }, async () => {
    const cases = fc
      .sample(pair, { seed: SEED, numRuns: PAIRS * 2 })
      .map(([a, b, relation]) => ({ a, relation, b }))
      .filter((c) => fitsDpkgCli(c.a) && fitsDpkgCli(c.b))
      .slice(0, PAIRS);
    expect(cases.length).toBe(PAIRS);
    const shares = Array.from({ length: WORKERS }, (_, w) => cases.filter((_, i) => i % WORKERS === w));
    const answers = await Promise.all(shares.map((share, w) => askDpkg(share, join(work, `pairs-${w}.tsv`))));
    const mismatches: string[] = [];
    shares.forEach((share, w) => {
      share.forEach((c, i) => {
        const dpkg = answers[w]?.[i];
        const ours = predict(c);
        if (JSON.stringify(dpkg) !== JSON.stringify(ours))
          mismatches.push(`${c.a} ${c.relation} ${c.b}: dpkg ${JSON.stringify(dpkg)}, ours ${JSON.stringify(ours)}`);
      });
    });
    expect(mismatches.slice(0, 20)).toEqual([]);

    // The generator must reach every kind of answer, or the agreement says little.
    const outcomes = cases.map(predict);
    expect(outcomes.filter((o) => o.exitCode === 0).length).toBeGreaterThan(PAIRS / 10);
    expect(outcomes.filter((o) => o.exitCode === 1).length).toBeGreaterThan(PAIRS / 10);
    expect(outcomes.filter((o) => o.exitCode === 2).length).toBeGreaterThan(0);
    expect(outcomes.filter((o) => o.stderr.some((l) => l.includes('warning'))).length).toBeGreaterThan(0);
    const equalPairs = cases.filter((c) => {
      const [a, b] = [checkDebianVersion(c.a), checkDebianVersion(c.b)];
      return a.ok && b.ok && c.a !== c.b && compareParsed(a.version, b.version) === 0;
    });
    expect(equalPairs.length, 'pairs written differently but equal').toBeGreaterThan(0);
  });
});
