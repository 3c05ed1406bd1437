import { describe, expect, it } from 'vitest';
import { readChunks } from '../src/source/chunks.js';
import { sequentialFromSource } from '../src/source/sequential.js';
import { bufferSource } from '../src/source/buffer.js';
import { nextPiece, normaliseRanges } from '../src/stored-ranges.js';

/** The pieces stored-ranges.ts cuts `size` bytes into, one by one: what the chunks must add up to. */
function piecesOneByOne(size: number, pieceSize: number, storedMax: number, stored: { start: number; end: number }[]) {
  const pieces: { at: number; length: number; stored: boolean }[] = [];
  for (let at = 0; at < size; ) {
    const piece = nextPiece(at, pieceSize, storedMax, stored);
    const length = Math.min(piece.length, size - at);
    pieces.push({ at, length, stored: piece.stored });
    at += length;
  }
  return pieces;
}

describe('readChunks', () => {
  const cases = [
    { what: 'plain grid, the end mid-piece', size: 10 * 4096 + 123, stored: [] },
    { what: 'stored ranges off the grid', size: 20 * 4096 + 7, stored: [{ start: 5000, end: 30_000 }, { start: 30_001, end: 30_002 }, { start: 70_000, end: 200_000 }] },
    { what: 'a stored range to the end', size: 9 * 4096, stored: [{ start: 4096, end: 1 << 30 }] },
  ];
  for (const { what, size, stored } of cases) {
    it(`cuts the pieces one by one would, in one read per chunk (${what})`, async () => {
      const bytes = Uint8Array.from({ length: size }, (_, index) => (index * 7 + 3) & 255);
      const source = bufferSource(bytes);
      let reads = 0;
      const input = sequentialFromSource({ ...source, read: async (offset, length) => (reads++, source.read(offset, length)) });
      const ranges = normaliseRanges(stored);
      const chunks = readChunks(input, { pieceSize: 4096, storedMax: 8192, stored: ranges, bufferBytes: 4 * 4096, capacity: (at) => (at === 0 ? 4096 : 4 * 4096) });
      const got: { at: number; length: number; stored: boolean }[] = [];
      let count = 0;
      for (let at = 0; ; count++) {
        const chunk = await chunks.next();
        if (!chunk) break;
        for (const piece of chunk.pieces) {
          expect(chunk.data.subarray(piece.start, piece.start + piece.length)).toEqual(bytes.subarray(at, at + piece.length));
          got.push({ at, length: piece.length, stored: piece.stored });
          at += piece.length;
        }
        expect(chunk.pieces.reduce((sum, piece) => sum + piece.length, 0)).toBe(chunk.data.length);
        chunks.release(chunk.buffer);
      }
      expect(got).toEqual(piecesOneByOne(size, 4096, 8192, ranges));
      // One read per chunk, and one more that finds the end only when the last chunk was full.
      expect(reads).toBeGreaterThanOrEqual(count);
      expect(reads).toBeLessThanOrEqual(count + 1);
      expect(count).toBeLessThan(got.length);
    });
  }
});
