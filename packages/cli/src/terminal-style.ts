import { styleText } from 'node:util';

type Colour = 'green' | 'red' | 'yellow' | 'cyan' | 'gray' | 'bold';

/** Colours for a view, or none: every function returns its text unchanged when colour is off. */
export interface Style {
  readonly enabled: boolean;
  paint(colour: Colour, text: string): string;
}

/**
 * Whether to colour, by the conventions terminals and CI agree on: `NO_COLOR` (any non-empty
 * value, no-color.org) turns colour off; `FORCE_COLOR` (anything but "0" or "false") turns it on
 * even off a terminal; otherwise colour only on a terminal. `NO_COLOR` wins over `FORCE_COLOR`.
 */
export function wantsColour(
  env: { NO_COLOR?: string | undefined; FORCE_COLOR?: string | undefined },
  isTerminal: boolean,
): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return isTerminal;
}

/**
 * Sequences come from node:util's styleText, never written by hand. Whether to colour was decided
 * above (wantsColour), so styleText is told not to second-guess it from process.stdout.
 */
export function createStyle(enabled: boolean): Style {
  return {
    enabled,
    paint: (colour, text) => (enabled && text !== '' ? styleText(colour, text, { validateStream: false }) : text),
  };
}
