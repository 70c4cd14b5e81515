/** Where commands write. main.ts binds it to process.stdout/stderr; tests collect it. */
export interface CliOutput {
  /** Writes one or more lines to stdout. */
  out(text: string): void;
  /** Writes one or more lines to stderr. */
  err(text: string): void;
  /** True when stdout is a terminal: `--watch` then redraws in place instead of appending lines. */
  readonly interactive: boolean;
  /** Whether to colour (NO_COLOR, FORCE_COLOR, a terminal: see terminal-style.ts); off when absent. */
  readonly colour?: boolean;
  /**
   * A region redrawn in place (log-update on the real terminal); only used when `interactive`. A
   * promise: the real one loads log-update then, which every command but a live watch would only pay for.
   */
  live?(): Promise<LiveRegion>;
}

/** What `--watch` redraws on a terminal: each `update` replaces the last frame; `done` leaves it on screen. */
export interface LiveRegion {
  update(frame: string): void;
  done(): void;
}

export function writeJson(output: CliOutput, value: unknown): void {
  output.out(JSON.stringify(value, null, 2));
}
