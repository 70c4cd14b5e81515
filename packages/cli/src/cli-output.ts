/** Where commands write. main.ts binds it to process.stdout/stderr; tests collect it. */
export interface CliOutput {
  /** Writes one or more lines to stdout. */
  out(text: string): void;
  /** Writes one or more lines to stderr. */
  err(text: string): void;
  /** True when stdout is a terminal: `--watch` then redraws in place instead of appending frames. */
  readonly interactive: boolean;
}

export function writeJson(output: CliOutput, value: unknown): void {
  output.out(JSON.stringify(value, null, 2));
}
