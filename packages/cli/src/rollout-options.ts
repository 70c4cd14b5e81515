import type { FailureBudget, WaveStep } from '@fleetpatch/shared';
import { InvalidArgumentError } from 'commander';
import { UsageError } from './cli-errors.js';

// Command-line words → request fields. Each parser checks only the shape of the words (a usage
// error, exit 2); ranges and the rest are left to the shared zod schema (exit 1 with field paths).

const COUNT = /^\d+$/;
const PERCENT = /^\d+(?:\.\d+)?%$/;

/** "1,10%,50%,100%" → [1, "10%", "50%", "100%"] (Ansible's `serial` grammar). */
export function parseWaves(value: string): WaveStep[] {
  const steps = splitList(value);
  if (steps.length === 0) throw new InvalidArgumentError('give at least one wave, e.g. 1,10%,100%');
  return steps.map((step) => {
    if (COUNT.test(step)) return Number(step);
    if (PERCENT.test(step)) return step;
    throw new InvalidArgumentError(`"${step}" is neither a host count nor a percentage (e.g. 1,10%,100%)`);
  });
}

/** "3" → 3, "5%" → "5%". */
export function parseFailureBudget(value: string): FailureBudget {
  const v = value.trim();
  if (COUNT.test(v)) return Number(v);
  if (PERCENT.test(v)) return v;
  throw new InvalidArgumentError('give a count (3) or a percentage (5%)');
}

/** "role=web,env=prod" → { role: "web", env: "prod" }. */
export function parseLabels(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of splitList(value)) Object.assign(labels, parseLabel(pair));
  if (Object.keys(labels).length === 0) throw new InvalidArgumentError('give labels as k=v,k2=v2');
  return labels;
}

/** Commander collector for a repeatable `--label k=v`. */
export function collectLabel(value: string, previous: Record<string, string> = {}): Record<string, string> {
  return { ...previous, ...parseLabel(value) };
}

function parseLabel(pair: string): Record<string, string> {
  const eq = pair.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`"${pair}" is not a label; write key=value`);
  return { [pair.slice(0, eq).trim()]: pair.slice(eq + 1).trim() };
}

/** "openssl=3.0.15-1~deb12u1" → { source: "openssl", fixed: "3.0.15-1~deb12u1" }; both checked by the schema. */
export function parseExposedTo(value: string): { source: string; fixed: string } {
  const eq = value.indexOf('=');
  if (eq <= 0 || eq === value.length - 1) {
    throw new InvalidArgumentError(`"${value}" is not source=fixed-version, e.g. openssl=3.0.15-1~deb12u1`);
  }
  return { source: value.slice(0, eq).trim(), fixed: value.slice(eq + 1).trim() };
}

/** "web-1, web-2" → ["web-1", "web-2"]. */
export function parseHosts(value: string): string[] {
  const hosts = splitList(value);
  if (hosts.length === 0) throw new InvalidArgumentError('give host ids as a,b,c');
  return hosts;
}

export function parseWholeNumber(value: string): number {
  if (!COUNT.test(value.trim())) throw new InvalidArgumentError('must be a whole number');
  return Number(value);
}

/** A count that must be 1 or more: a 1-based wave number, a `--limit`. */
export function parsePositiveCount(value: string): number {
  const n = parseWholeNumber(value);
  if (n < 1) throw new InvalidArgumentError('must be 1 or more');
  return n;
}

/** A wave as people count them: 1 is the canary; the API's 0-based `wave` goes up to 10,000. */
export function parseWaveNumber(value: string): number {
  const n = parsePositiveCount(value);
  if (n > 10_001) throw new InvalidArgumentError('must be 10001 or less');
  return n;
}

export function parseSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError('must be a number of seconds');
  return n;
}

/** A limit in seconds that must be more than zero (`--timeout 0` would end a watch before it began). */
export function parsePositiveSeconds(value: string): number {
  const n = parseSeconds(value);
  if (n <= 0) throw new InvalidArgumentError('must be more than 0 seconds');
  return n;
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export const AUTO_REVERT_CHOICES = ['none', 'host', 'wave', 'rollout'] as const;

export interface RolloutCreateFlags {
  patch?: string | undefined;
  labels?: Record<string, string> | undefined;
  reportedLabels?: Record<string, string> | undefined;
  hosts?: string[] | undefined;
  all?: boolean | undefined;
  exposedTo?: { source: string; fixed: string } | undefined;
  waves?: WaveStep[] | undefined;
  maxParallel?: number | undefined;
  maxFailures?: FailureBudget | undefined;
  bake?: number | undefined;
  autoRevert?: string | undefined;
  staleServices?: string | undefined;
  approvals?: number | undefined;
  draft?: boolean | undefined;
  rehearseRevert?: boolean | undefined;
}

/**
 * The rollout request body: `base` (from --file) with the flags laid over it. Exactly one target
 * flag may be given; it replaces the file's target. `--reported-labels` is no target of its own: it
 * narrows the one given (by flag or file) to hosts that report those labels. `--exposed-to` is a
 * target of its own, or narrows the one given to the hosts exposed. Not validated here — see
 * local-validation.ts.
 */
export function buildRolloutRequest(
  flags: RolloutCreateFlags,
  base: Record<string, unknown> = {},
): Record<string, unknown> {
  const targets = [flags.labels && '--labels', flags.hosts && '--hosts', flags.all && '--all'].filter(Boolean);
  if (targets.length > 1) throw new UsageError(`choose one target: ${targets.join(', ')} were all given`);
  const request: Record<string, unknown> = { ...base };
  if (flags.patch !== undefined) request.patchId = flags.patch;
  if (flags.labels) request.target = { labels: flags.labels };
  if (flags.hosts) request.target = { hostIds: flags.hosts };
  if (flags.all) request.target = { all: true };
  if (flags.reportedLabels) {
    if (flags.all) throw new UsageError('--reported-labels narrow --labels or --hosts, not --all');
    if (request.target === undefined)
      throw new UsageError('--reported-labels only narrow a target: add --labels k=v,... or --hosts a,b');
    request.target = { ...(request.target as Record<string, unknown>), reportedLabels: flags.reportedLabels };
  }
  if (flags.exposedTo) {
    request.target = { ...(request.target as Record<string, unknown> | undefined), exposedTo: flags.exposedTo };
  }
  if (flags.waves !== undefined) request.waves = flags.waves;
  if (flags.maxParallel !== undefined) request.maxParallel = flags.maxParallel;
  if (flags.maxFailures !== undefined) request.maxFailures = flags.maxFailures;
  if (flags.bake !== undefined) request.bakeSeconds = flags.bake;
  if (flags.autoRevert !== undefined) request.autoRevert = flags.autoRevert;
  if (flags.staleServices !== undefined) request.staleServices = flags.staleServices;
  if (flags.approvals !== undefined) request.requiredApprovals = flags.approvals;
  if (flags.draft) request.draft = true;
  if (flags.rehearseRevert) request.rehearseRevert = true;
  if (request.patchId === undefined) throw new UsageError('which patch? pass --patch <id>');
  if (request.target === undefined)
    throw new UsageError('which hosts? pass --labels k=v,..., --hosts a,b, --all or --exposed-to source=version');
  return request;
}
