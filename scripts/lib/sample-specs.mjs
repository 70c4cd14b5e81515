// @ts-check
// Well-formed patches and rollouts for the end-to-end tests, the demo and the bench: one place that
// knows what the API takes, so a schema change is followed here once. Each builder fills in what a
// specification must say and lets the caller override only what its scenario is about.
import { createHash } from 'node:crypto';

/**
 * @import { Facts, PatchSpecInput, RolloutRequestInput } from '@fleetpatch/shared'
 */

/** @typedef {NonNullable<PatchSpecInput['health']>} HealthPolicyInput */

/** Hex SHA-256 of a file's content, as `expectedPriorSha256` and file health checks take it. */
export function sha256Of(/** @type {string | Buffer} */ content) {
  return createHash('sha256').update(content).digest('hex');
}

/** The uid and gid of this process as the patch schema writes them (numeric strings). */
export const CURRENT_OWNER = String(process.getuid?.() ?? 0);
export const CURRENT_GROUP = String(process.getgid?.() ?? 0);

/**
 * @typedef {object} SampleProse The single-patch discipline: what, why, the fix, and the ticket.
 * @property {string} [title]
 * @property {string} [problem]
 * @property {string} [rootCause]
 * @property {string} [intendedFix]
 * @property {string} [ticket]
 * @property {HealthPolicyInput} [health] Left out: the coordinator's default policy (no checks).
 */

/**
 * @typedef {SampleProse & {
 *   path?: string,
 *   content?: string,
 *   mode?: string,
 *   owner?: string,
 *   group?: string,
 *   expectedPriorSha256?: string,
 * }} SamplePatchOptions
 */

/**
 * @param {string} fix what the change does, for the default intended fix and title
 * @param {SampleProse} options
 */
function prose(fix, options) {
  return {
    title: options.title ?? `Sample patch: ${fix}`,
    problem: options.problem ?? 'The service misbehaves at peak.',
    rootCause: options.rootCause ?? 'Its configuration was sized for last year.',
    intendedFix: options.intendedFix ?? fix,
    ticket: options.ticket ?? 'OPS-1',
  };
}

/** @param {HealthPolicyInput | undefined} health */
const healthOf = (health) => (health === undefined ? {} : { health });

/**
 * A valid file patch. `path` defaults to /etc/app/app.conf, `mode` to 0644, owner and group to
 * this process's uid and gid; `expectedPriorSha256` (a hash or 'absent') and `health` are left out
 * unless given.
 * @param {SamplePatchOptions} [options]
 * @returns {PatchSpecInput}
 */
export function samplePatch(options = {}) {
  const path = options.path ?? '/etc/app/app.conf';
  const content = options.content ?? 'workers = 8\n';
  return {
    ...prose(`write ${path}`, options),
    change: {
      kind: 'file',
      path,
      content,
      mode: options.mode ?? '0644',
      owner: options.owner ?? CURRENT_OWNER,
      group: options.group ?? CURRENT_GROUP,
      ...(options.expectedPriorSha256 === undefined ? {} : { expectedPriorSha256: options.expectedPriorSha256 }),
    },
    ...healthOf(options.health),
  };
}

/**
 * A valid apt package patch: `name` at `version`, expecting `expectedPriorVersion` when given.
 * @param {SampleProse & { name: string, version: string, expectedPriorVersion?: string }} options
 * @returns {PatchSpecInput}
 */
export function samplePackagePatch(options) {
  return {
    ...prose(`install ${options.name} ${options.version}`, options),
    change: {
      kind: 'package',
      manager: 'apt',
      name: options.name,
      version: options.version,
      ...(options.expectedPriorVersion === undefined ? {} : { expectedPriorVersion: options.expectedPriorVersion }),
    },
    ...healthOf(options.health),
  };
}

/**
 * A valid rollout request of `patchId`: every host unless `overrides.target` says otherwise; the
 * rest (waves, approvals, budget…) is the schema's default unless overridden.
 * @param {string} patchId
 * @param {Partial<RolloutRequestInput>} [overrides]
 * @returns {RolloutRequestInput}
 */
export function sampleRollout(patchId, overrides = {}) {
  return { patchId, target: { all: true }, ...overrides };
}

/**
 * What a bench agent reports about its host: made-up facts, the same for every agent, so a run
 * neither reads this machine for each of thousands of agents nor depends on what it finds.
 * @param {string} hostname
 * @returns {Facts}
 */
export function sampleFacts(hostname) {
  return {
    hostname,
    os: 'linux',
    distro: 'Bench Linux',
    release: '1.0',
    kernel: '6.0.0-bench',
    arch: 'x64',
    cpus: 2,
    memoryBytes: 4 * 1024 ** 3,
  };
}
