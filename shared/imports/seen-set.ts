/**
 * A compact set of 64-bit string hashes (open addressing over a Uint32Array): remembers every
 * address an import has seen in ~16 bytes each instead of a string per entry, so a file of
 * millions of rows stays far below the import pool's memory limit. Two different strings
 * sharing both 32-bit halves is astronomically rare (~1e-8 for 1M rows) and would only count
 * one row as a duplicate.
 */
export class SeenSet {
  private table: Uint32Array;
  private mask: number;
  size = 0;

  constructor(initialSlots = 1 << 16) {
    let slots = 1;
    while (slots < initialSlots) slots <<= 1;
    this.table = new Uint32Array(slots * 2);
    this.mask = slots - 1;
  }

  /** Adds s; returns false when it was already there. */
  add(s: string): boolean {
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193 ^ s.length;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x5bd1e995);
      h2 ^= h2 >>> 15;
    }
    h1 = (h1 ^ (h1 >>> 16)) >>> 0;
    h2 = (h2 ^ (h2 >>> 13)) >>> 0;
    if (h1 === 0 && h2 === 0) h2 = 1; // (0, 0) marks an empty slot
    if (!this.insert(h1, h2)) return false;
    this.size += 1;
    if (this.size * 2 > this.mask + 1) this.grow();
    return true;
  }

  private insert(h1: number, h2: number): boolean {
    const t = this.table;
    let slot = (h1 ^ Math.imul(h2, 0x9e3779b1)) & this.mask;
    for (;;) {
      const a = t[slot * 2]!;
      const b = t[slot * 2 + 1]!;
      if (a === 0 && b === 0) {
        t[slot * 2] = h1;
        t[slot * 2 + 1] = h2;
        return true;
      }
      if (a === h1 && b === h2) return false;
      slot = (slot + 1) & this.mask;
    }
  }

  private grow() {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.mask = old.length - 1; // old.length / 2 slots before, twice as many now
    for (let i = 0; i < old.length; i += 2) {
      const a = old[i]!;
      const b = old[i + 1]!;
      if (a !== 0 || b !== 0) this.insert(a, b);
    }
  }
}
