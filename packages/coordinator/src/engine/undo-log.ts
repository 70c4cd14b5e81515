/**
 * What an in-memory change made inside a store transaction takes to undo: the engine's boards (live
 * health, connected audit) decide there whether a row is written, and change their memory as they
 * decide. A transaction that rolls back — a busy store, or a batch of reports taken apart around
 * one the store refuses — must leave them as they were, or the attempt that finally commits would
 * find nothing new to write. Run in reverse order by `undoAll`.
 */
export type UndoLog = (() => void)[];

export function undoAll(undo: UndoLog): void {
  for (let i = undo.length - 1; i >= 0; i--) undo[i]?.();
  undo.length = 0;
}
