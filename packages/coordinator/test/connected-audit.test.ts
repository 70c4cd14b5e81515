/** Which hellos become `agent.connected` audit rows: bounded per agent per window, nothing lost. */
import { describe, expect, it } from 'vitest';
import { ConnectedAudit } from '../src/engine/connected-audit.js';
import { type UndoLog, undoAll } from '../src/engine/undo-log.js';

const WINDOW = 60_000;

describe('ConnectedAudit', () => {
  it('writes the first hello, counts the reconnects of a storm, and writes them into the next row', () => {
    const audit = new ConnectedAudit(WINDOW);
    expect(audit.note('a', '1.0', 0)).toEqual({ agentVersion: '1.0', reconnectsCoalesced: 0 });
    for (let t = 1; t <= 500; t++) expect(audit.note('a', '1.0', t * 10)).toBeUndefined();
    expect(audit.note('a', '1.0', WINDOW)).toEqual({ agentVersion: '1.0', reconnectsCoalesced: 500 });
    expect(audit.note('b', '1.0', WINDOW)).toEqual({ agentVersion: '1.0', reconnectsCoalesced: 0 });
  });

  it('undoes what a rolled-back transaction noted: the hello that commits writes the row', () => {
    const audit = new ConnectedAudit(60_000);
    const undo: UndoLog = [];
    expect(audit.note('a1', '1.0', 0, undo)).toEqual({ agentVersion: '1.0', reconnectsCoalesced: 0 });
    expect(audit.note('a1', '1.0', 1, undo)).toBeUndefined();
    undoAll(undo);
    expect(audit.note('a1', '1.0', 2)).toEqual({ agentVersion: '1.0', reconnectsCoalesced: 0 });
    // A counted hello undone is not counted.
    const again: UndoLog = [];
    expect(audit.note('a1', '1.0', 3, again)).toBeUndefined();
    undoAll(again);
    expect(audit.note('a1', '1.0', 60_002)).toEqual({ agentVersion: '1.0', reconnectsCoalesced: 0 });
  });

  it('writes a version change at once, but at most one extra row per window however the version flips', () => {
    const audit = new ConnectedAudit(WINDOW);
    audit.note('a', '1.0', 0);
    expect(audit.note('a', '1.1', 1000)).toEqual({
      agentVersion: '1.1',
      previousVersion: '1.0',
      reconnectsCoalesced: 0,
    });
    const rows = [2000, 3000, 4000, 5000].map((t, i) => audit.note('a', i % 2 ? '1.1' : '1.0', t));
    expect(rows.filter((row) => row !== undefined)).toHaveLength(0);
    expect(audit.note('a', '1.0', 1000 + WINDOW)).toMatchObject({
      agentVersion: '1.0',
      previousVersion: '1.1',
      reconnectsCoalesced: 4,
    });
  });
});
