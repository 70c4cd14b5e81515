/**
 * Size limits of the agent ⇄ coordinator wire, in one place: the zod schemas enforce them and the
 * agent cuts what it sends to them. A result the coordinator's schema refuses is a result never
 * recorded (the agent would re-report it for ever), so both sides must read the same numbers.
 */
export const WIRE_LIMITS = {
  /** One frame in either direction (ws `maxPayload`). */
  frameBytes: 4 * 1024 * 1024,
  /** `reason` of an order result, in characters. */
  reasonChars: 8192,
  /** Health check results in one order result. */
  resultHealthResults: 500,
  /** `message` of an order progress report, in characters. */
  progressMessageChars: 2000,
  /** Health check results in one order progress report (sent on every poll, so kept small). */
  progressHealthResults: 64,
  /** `observed` of one health check result, in characters. */
  observedChars: 4096,
  /**
   * `check` (its label: a name, a URL, a command line) of one health check result, in characters: the
   * agent cuts a longer label to it, and the coordinator cuts what it records to it (the schema does
   * not refuse a longer one: a result refused is one re-reported for ever).
   */
  healthLabelChars: 1024,
  /** `kind` of one health check result, in characters (the kinds are single words). */
  healthKindChars: 32,
  /** `at` of one health check result, in characters (an ISO time). */
  healthAtChars: 40,
  /**
   * Packages in one inventory frame (a part of `inventory.full`, or each list of `inventory.diff`): at
   * most ~900 bytes each with every field at its longest, so 2000 stay under half a frame.
   */
  inventoryPackagesPerFrame: 2000,
  /** Parts of one `inventory.full`. */
  inventoryParts: 50,
  /** Packages one host may report: `inventoryParts` full frames. A host with more reports none (unavailable). */
  inventoryMaxPackages: 100_000,
} as const;
