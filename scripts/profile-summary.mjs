#!/usr/bin/env node
// @ts-check
// Where a V8 CPU profile's time went, as text: busy time, the functions with the most self time, and
// self time summed per source file or package. For the profiles `npm run bench -- --cpu-prof DIR`
// writes; several files (e.g. every agent process's profile of one phase) are summed into one summary.
//
// usage: node scripts/profile-summary.mjs [--top N] FILE.cpuprofile...
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  options: { top: { type: 'string', default: '25' } },
  allowPositionals: true,
});
if (positionals.length === 0) {
  process.stderr.write('usage: profile-summary.mjs [--top N] FILE.cpuprofile...\n');
  process.exit(2);
}
const TOP = Number.parseInt(values.top ?? '25', 10);

/** @typedef {{ id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }} ProfileNode */

/** A source location without the checkout's path: `packages/…` or the package under `node_modules/`. @param {string} url */
const shortUrl = (url) => url.replace(/^.*\/(packages|node_modules)\//, '$1/').replace(/^file:\/\//, '');
/** The file or package a location belongs to. @param {string} url */
const groupOf = (url) =>
  shortUrl(url)
    .replace(/^(node_modules\/(@[^/]+\/)?[^/]+).*/, '$1')
    .replace(/^node:.*/, 'node (built-in)') || 'V8 / native';

/** @type {Map<string, number>} */
const selfByFunction = new Map();
/** @type {Map<string, number>} */
const selfByGroup = new Map();
let totalUs = 0;
let idleUs = 0;
for (const file of positionals) {
  /** @type {{ nodes: ProfileNode[], samples: number[], timeDeltas: number[] }} */
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const [i, sample] of profile.samples.entries()) {
    const us = profile.timeDeltas[i] ?? 0;
    const frame = byId.get(sample)?.callFrame;
    if (!frame) continue;
    totalUs += us;
    if (frame.functionName === '(idle)') {
      idleUs += us;
      continue;
    }
    const key = `${frame.functionName || '(anonymous)'} ${shortUrl(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
    selfByFunction.set(key, (selfByFunction.get(key) ?? 0) + us);
    const group = frame.url ? groupOf(frame.url) : frame.functionName;
    selfByGroup.set(group, (selfByGroup.get(group) ?? 0) + us);
  }
}
const busyUs = totalUs - idleUs;
const line = (/** @type {number} */ us, /** @type {string} */ what) =>
  `${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / busyUs).toFixed(1).padStart(5)} %  ${what}`;
const top = (/** @type {Map<string, number>} */ m) => [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP);

console.log(
  `${positionals.length} profile(s): ${(totalUs / 1000).toFixed(0)} ms sampled, ${(busyUs / 1000).toFixed(0)} ms busy`,
);
console.log('self time by function:');
for (const [what, us] of top(selfByFunction)) console.log(line(us, what));
console.log('self time by file or package:');
for (const [what, us] of top(selfByGroup)) console.log(line(us, what));
