/**
 * How a writer cuts its input when some ranges must stay editable in place (seekxz --store,
 * seekzstd --store): a stored range is cut into pieces of at most `storedMax` bytes counted from
 * its own start, and elsewhere pieces end at multiples of the piece size or at the next stored
 * range, so a compressed piece never holds a stored byte. With no stored ranges the cut is the
 * plain grid, so the output is what it was before --store existed. Pinned by test/xz-edit.test.ts
 * and test/zstd-edit.test.ts.
 */
export interface ByteRange {
  start: number;
  end: number;
}

/** Sorted, merged, non-empty ranges. */
export function normaliseRanges(ranges: ByteRange[]): ByteRange[] {
  const merged: ByteRange[] = [];
  for (const range of [...ranges].filter((range) => range.end > range.start).sort((a, b) => a.start - b.start)) {
    const last = merged[merged.length - 1];
    if (last && range.start <= last.end) last.end = Math.max(last.end, range.end);
    else merged.push({ ...range });
  }
  return merged;
}

/** The piece that starts at `at`: its length, and whether it is stored. `ranges` as normaliseRanges gives them. */
export function nextPiece(at: number, pieceSize: number, storedMax: number, ranges: ByteRange[]): { length: number; stored: boolean } {
  const range = ranges.find((candidate) => candidate.end > at);
  if (range && range.start <= at) return { length: Math.min(storedMax - ((at - range.start) % storedMax), range.end - at), stored: true };
  const boundary = (Math.floor(at / pieceSize) + 1) * pieceSize;
  return { length: Math.min(boundary, range ? range.start : Infinity) - at, stored: false };
}
