import { readFile } from 'node:fs/promises';
import {
  type Change,
  packageTargetsOf,
  Sha256Schema,
  type StatementRefusal,
  StatementRefusalCode,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { writeAll, writeFileAtomically } from '../fs/atomic-file.js';

const FILE = 'applied-sequences.json';

const AppliedSequencesSchema = z.record(
  z.string(),
  z.object({ sequence: z.number().int().min(1), statementDigest: Sha256Schema }).strict(),
);
type Applied = z.infer<typeof AppliedSequencesSchema>;

/**
 * What a sequence is counted per: the file the change writes, or each package of the set it
 * installs. A source change is counted per source package (its binaries are only known on the
 * host, after the signature check); an older signed set naming those binaries is still held back
 * by the policy's downgrade rule (apt.allowDowngrade).
 */
export function sequenceKeysOf(change: Change): string[] {
  if (change.kind === 'file') return [`file:${change.path}`];
  const targets = packageTargetsOf(change);
  return targets.kind === 'source'
    ? [`package-source:${targets.source}`]
    : targets.members.map((m) => `package:${m.name}`);
}

/**
 * The highest statement sequence accepted per file or package, in `<dataDir>/applied-sequences.json`:
 * a signed order whose sequence is not above it is a replay (the same statement again) or a rollback
 * (an older one, such as a signed earlier version of the file). One entry per file or package ever
 * changed under signing, so the file stays small.
 */
export class AppliedSequences {
  private writing: Promise<void> | null = null;
  private dirty = false;

  private constructor(
    private readonly dataDir: string,
    private applied: Applied,
  ) {}

  /**
   * Missing: nothing applied yet. Unreadable or corrupt: the agent does not start, because starting
   * from an empty table would let every old statement be applied again.
   */
  static async open(dataDir: string): Promise<AppliedSequences> {
    let text: string;
    try {
      text = await readFile(`${dataDir}/${FILE}`, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new AppliedSequences(dataDir, {});
      throw err;
    }
    const parsed = AppliedSequencesSchema.safeParse(JSON.parse(text));
    if (!parsed.success)
      throw new Error(`${dataDir}/${FILE} is corrupt: fix or restore it (it guards against replays)`);
    return new AppliedSequences(dataDir, parsed.data);
  }

  /**
   * `replayed` (same sequence, same statement) or `rollback` (not above the last accepted) for the
   * first of `keys` that refuses — or undefined when all accept.
   */
  check(keys: readonly string[], sequence: number, statementDigest: string): StatementRefusal | undefined {
    for (const key of keys) {
      const last = this.applied[key];
      if (last === undefined || sequence > last.sequence) continue;
      if (sequence === last.sequence && statementDigest === last.statementDigest) {
        return {
          ok: false,
          code: StatementRefusalCode.replayed,
          reason: `statement ${statementDigest.slice(0, 16)} was accepted for ${key} already`,
        };
      }
      return {
        ok: false,
        code: StatementRefusalCode.rollback,
        reason: `sequence ${sequence} is not above ${last.sequence}, the last accepted for ${key}`,
      };
    }
    return undefined;
  }

  /**
   * Checks again and records every key at once (no await between them, so two orders for one key
   * cannot both pass), then makes the record durable. Returns the refusal when another order got
   * there first.
   */
  async accept(
    keys: readonly string[],
    sequence: number,
    statementDigest: string,
  ): Promise<StatementRefusal | undefined> {
    const refusal = this.check(keys, sequence, statementDigest);
    if (refusal) return refusal;
    const recorded = Object.fromEntries(keys.map((key) => [key, { sequence, statementDigest }]));
    this.applied = { ...this.applied, ...recorded };
    this.dirty = true;
    this.writing ??= this.flush().finally(() => {
      this.writing = null;
    });
    await this.writing;
    return undefined;
  }

  private async flush(): Promise<void> {
    while (this.dirty) {
      this.dirty = false;
      const body = Buffer.from(JSON.stringify(this.applied));
      await writeFileAtomically(this.dataDir, FILE, { mode: 0o600 }, (fd) => writeAll(fd, body));
    }
  }
}
