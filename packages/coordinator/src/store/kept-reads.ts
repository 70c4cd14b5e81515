/**
 * The last few values read of things that never change once written (a patch, a rollout's
 * request), by key: the hot paths read them after every burst of results, and a patch can carry a
 * megabyte of file content to parse each time. Frozen, because every reader now shares them;
 * bounded, the oldest going first.
 */
export class KeptReads<K, V> {
  private readonly values = new Map<K, V>();

  constructor(private readonly size: number) {}

  get(key: K): V | undefined {
    return this.values.get(key);
  }

  forget(key: K): void {
    this.values.delete(key);
  }

  keep(key: K, value: V): V {
    deepFreeze(value);
    if (this.values.size >= this.size) {
      const oldest = this.values.keys().next();
      if (!oldest.done) this.values.delete(oldest.value);
    }
    this.values.set(key, value);
    return value;
  }
}

function deepFreeze(value: unknown): void {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const inner of Object.values(value)) deepFreeze(inner);
}
