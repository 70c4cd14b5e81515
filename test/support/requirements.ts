/**
 * What a test needs from the machine it runs on (root, network namespaces, Debian's tools), and the
 * one way every project skips a test that cannot run here: loudly. The title always says what the
 * test needs ("… (needs root)"), so the name is the same wherever it runs and the CI skip
 * allow-list (test/skip-allowlist.json) can name it; where the need is not met, a warning says why.
 */
import { describe, it } from 'vitest';

export interface Requirement {
  /** What the test needs, as its title says it: `root`, `network namespaces`. */
  readonly needs: string;
  /** Why it is not met on this machine; undefined when it is. */
  readonly missing: string | undefined;
}

/** The form the older availability probes answer in (`debToolsAvailable`, `namespacesAvailable`). */
export type Availability = { available: true } | { available: false; reason: string };

export function requirement(needs: string, availability: Availability): Requirement {
  return { needs, missing: availability.available ? undefined : availability.reason };
}

const uid = process.getuid?.();

/** chown to another user, dpkg as root, namespaces: the agent's own privilege. */
export const root: Requirement = {
  needs: 'root',
  missing: uid === 0 ? undefined : `running as uid ${uid ?? 'unknown'}, not root`,
};

/** True when every requirement is met. */
export function met(...requirements: readonly Requirement[]): boolean {
  return requirements.every((r) => r.missing === undefined);
}

/** `title (needs a, b)`, and a warning naming what is missing when the test will be skipped. */
function titled(title: string, requirements: readonly Requirement[]): string {
  const full = `${title} (needs ${requirements.map((r) => r.needs).join(', ')})`;
  const missing = requirements.flatMap((r) => (r.missing === undefined ? [] : [r.missing]));
  if (missing.length > 0) console.warn(`SKIPPED "${full}": ${missing.join('; ')}`);
  return full;
}

/** A `describe` that runs only where every requirement is met, and says so in its title either way. */
export function describeNeeding(requirements: readonly Requirement[], title: string, body: () => void): void {
  describe.skipIf(!met(...requirements))(titled(title, requirements), body);
}

/** An `it` that runs only where every requirement is met, and says so in its title either way. */
export function itNeeding(
  requirements: readonly Requirement[],
  title: string,
  body: () => Promise<void> | void,
  timeout?: number,
): void {
  it.skipIf(!met(...requirements))(titled(title, requirements), body, timeout);
}
