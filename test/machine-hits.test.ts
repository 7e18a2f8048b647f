/**
 * Rule 4 of machine-hits.ts (a message whose every link was clicked within the burst window is
 * a scanner's): the sliding window against the plain definition on generated clicks, and a
 * token replayed 200,000 times in one buffer (anyone holding one mail can), which the scan from
 * every click made quadratic: 4·10^10 steps inside a flush.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type ClickSeen, markScannerBursts } from "../shared/email/machine-hits";

/** The definition: a click is a machine's if some window of windowMs starting at a click of its message holds it and every link. */
function reference(clicks: readonly ClickSeen[], windowMs: number): boolean[] {
  return clicks.map((c) => {
    if (c.linkCount < 2) return false;
    const same = clicks.filter((o) => o.sendId === c.sendId);
    return same.some(
      (start) =>
        start.atMs <= c.atMs &&
        c.atMs - start.atMs <= windowMs &&
        new Set(same.filter((o) => o.atMs >= start.atMs && o.atMs - start.atMs <= windowMs).map((o) => o.linkIndex)).size >= start.linkCount,
    );
  });
}

describe("scanner bursts (rule 4)", () => {
  it("marks exactly the clicks the definition marks, for generated buffers", () => {
    const click = fc.record({
      sendId: fc.constantFrom("1", "2", "3"),
      linkIndex: fc.integer({ min: 0, max: 3 }),
      atMs: fc.integer({ min: 0, max: 10_000 }),
    });
    fc.assert(
      fc.property(fc.array(click, { maxLength: 40 }), fc.integer({ min: 2, max: 4 }), (raw, linkCount) => {
        const clicks: ClickSeen[] = raw.map((c) => ({ ...c, linkIndex: c.linkIndex % linkCount, linkCount, machine: false }));
        const expected = reference(clicks, 2_000);
        markScannerBursts(clicks, 2_000);
        expect(clicks.map((c) => c.machine)).toEqual(expected);
      }),
      { numRuns: 500 },
    );
  });

  it("a token replayed 200,000 times in one buffer is one linear pass", () => {
    const clicks: ClickSeen[] = Array.from({ length: 200_000 }, (_, i) => ({ sendId: "7", linkIndex: 0, linkCount: 2, atMs: i % 1_000, machine: false }));
    clicks.push({ sendId: "7", linkIndex: 1, linkCount: 2, atMs: 500, machine: false });
    markScannerBursts(clicks);
    expect(clicks.every((c) => c.machine)).toBe(true);
  });
});
