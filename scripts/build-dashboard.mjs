// @ts-check
// Builds the coordinator's dashboard into packages/coordinator/dist/dashboard: its own static files
// (packages/coordinator/dashboard) and preact + htm, vendored from npm as one ESM file. Users get it
// built: no bundler, nothing fetched from anywhere when the page loads. `npm run build` runs it.
import { cp, mkdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const coordinator = join(import.meta.dirname, '..', 'packages', 'coordinator');
const out = join(coordinator, 'dist', 'dashboard');
// htm's exports name neither its package.json nor, for require, a file that exists: find its folder
// from its main module, as the coordinator resolves it.
const htm = join(dirname(createRequire(join(coordinator, 'package.json')).resolve('htm')), '..');

await rm(out, { recursive: true, force: true });
await cp(join(coordinator, 'dashboard'), out, { recursive: true });
await mkdir(join(out, 'vendor'), { recursive: true });
// htm's standalone build: preact, its hooks and htm in one self-contained ES module.
await cp(join(htm, 'preact', 'standalone.mjs'), join(out, 'vendor', 'preact-htm.mjs'));
await cp(join(htm, 'LICENSE'), join(out, 'vendor', 'preact-htm.LICENSE.txt'));
