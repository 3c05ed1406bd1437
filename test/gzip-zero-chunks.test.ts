/**
 * Zero chunks of a partial-deflate file are known from the map and the compressed bytes, and read
 * without inflating (src/gzip/reader.ts, zeroSegments). Files are written by our partial-deflate
 * CLI; gzip -dc is the oracle for every byte. A chunk that only looks zero (its CRC-32 forced to
 * the CRC of zeros, or its map CRC forged) must still read as what it holds, or fail.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32, crc32Zeros } from '../src/crc/crc32.js';
import { readGzipHeader } from '../src/gzip/header.js';
import { readSeekzMap } from '../src/gzip/layout.js';
import { combinedCrc, decodeMap, SEEKZ_SUBFIELD_ID } from '../src/gzip/map.js';
import { decoderOf, open, type OpenOptions } from '../src/open.js';
import { bufferSource } from '../src/source/buffer.js';
import { diskLikeData, requireTool, run, runCli, tempDir } from './helpers/tools.js';

/** The decoder under a file opened as every command opens it (journal, sidecar index). */
const openDecoder = async (path: string, options?: OpenOptions) => decoderOf(await open(path, options));

const MIB = 2 ** 20;
const CHUNK = MIB; // partial-deflate's default chunk size
const TAIL = 300_000; // a last chunk of zeros, shorter than the others: an encoding of its own

/** Chunk kinds, in file order. */
const LAYOUT = ['data', 'zero', 'data', 'zero', 'zero', 'forged', 'data', 'zero', 'half', 'zero', 'data'] as const;
const ZERO_CHUNKS = [1, 3, 4, 7, 9];
const FORGED = 5;

/**
 * Four bytes at `at` that make crc32(data) equal `target`. CRC-32 is affine over GF(2) in those
 * bits, so solve the 32 × 32 system by elimination.
 */
function forceCrc(data: Uint8Array, at: number, target: number): void {
  const withWord = (word: number) => {
    data[at] = word & 0xff;
    data[at + 1] = (word >>> 8) & 0xff;
    data[at + 2] = (word >>> 16) & 0xff;
    data[at + 3] = word >>> 24;
    return crc32(data);
  };
  const base = withWord(0);
  // rows: [column image, unit bit], reduced to solve A x = target ^ base.
  const rows = Array.from({ length: 32 }, (_unused, bit) => ({ image: (withWord(2 ** bit) ^ base) >>> 0, word: 2 ** bit }));
  let want = (target ^ base) >>> 0;
  let word = 0;
  for (let bit = 31; bit >= 0; bit--) {
    const pivot = rows.findIndex((row) => (row.image >>> bit) & 1);
    if (pivot < 0) continue;
    const [row] = rows.splice(pivot, 1);
    for (const other of rows) if ((other.image >>> bit) & 1) Object.assign(other, { image: (other.image ^ row!.image) >>> 0, word: (other.word ^ row!.word) >>> 0 });
    if ((want >>> bit) & 1) {
      want = (want ^ row!.image) >>> 0;
      word = (word ^ row!.word) >>> 0;
    }
  }
  expect(want, 'the four bytes reach every CRC').toBe(0);
  withWord(word);
}

function makeRaw(): Uint8Array {
  const raw = new Uint8Array(LAYOUT.length * CHUNK + TAIL);
  LAYOUT.forEach((kind, index) => {
    const chunk = raw.subarray(index * CHUNK, (index + 1) * CHUNK);
    if (kind === 'data') chunk.set(diskLikeData(CHUNK, index + 1));
    if (kind === 'half') chunk.set(diskLikeData(CHUNK / 2, 99));
    if (kind === 'forged') {
      // Almost all zeros, with the CRC-32 of all zeros: the map says what a zero chunk's says.
      chunk[1000] = 1;
      forceCrc(chunk, CHUNK - 4, crc32Zeros(CHUNK));
    }
  });
  return raw;
}

function isZero(bytes: Uint8Array): boolean {
  return bytes.every((byte) => byte === 0);
}

describe('partial-deflate zero chunks', () => {
  let dir: { path: string; remove: () => void };
  let raw: Uint8Array;
  let gz: string;

  beforeAll(() => {
    requireTool('gzip', 'gzip');
    dir = tempDir();
    raw = makeRaw();
    expect(crc32(raw.subarray(FORGED * CHUNK, (FORGED + 1) * CHUNK))).toBe(crc32Zeros(CHUNK));
    expect(isZero(raw.subarray(FORGED * CHUNK, (FORGED + 1) * CHUNK))).toBe(false);
    writeFileSync(join(dir.path, 'raw.img'), raw);
    gz = join(dir.path, 'raw.img.gz');
    const made = runCli('partial-deflate', ['-q', join(dir.path, 'raw.img'), gz]);
    expect(made.status, made.stderr).toBe(0);
    const oracle = run('gzip', ['-dc', gz]);
    expect(oracle.status).toBe(0);
    expect(Buffer.compare(oracle.stdout, raw)).toBe(0);
  });
  afterAll(() => dir?.remove());

  it('zeroRanges names exactly the zero chunks, and each reads as zeros (gzip -dc agrees)', async () => {
    const data = await openDecoder(gz);
    try {
      const zeros = await data.zeroRanges!(0, data.size);
      const expected = [
        { offset: 1 * CHUNK, length: CHUNK },
        { offset: 3 * CHUNK, length: 2 * CHUNK },
        { offset: 7 * CHUNK, length: CHUNK },
        { offset: 9 * CHUNK, length: CHUNK },
        { offset: LAYOUT.length * CHUNK, length: TAIL },
      ];
      expect(zeros).toEqual(expected);
      for (const range of zeros) expect(isZero(raw.subarray(range.offset, range.offset + range.length))).toBe(true);
      // Clipped to the request, and empty past the end.
      expect(await data.zeroRanges!(3 * CHUNK + 5, 10)).toEqual([{ offset: 3 * CHUNK + 5, length: 10 }]);
      expect(await data.zeroRanges!(2 * CHUNK - 7, 14)).toEqual([{ offset: 2 * CHUNK - 7, length: 7 }]);
      expect(await data.zeroRanges!(data.size, 10)).toEqual([]);
      expect(Buffer.compare(await data.read(0, data.size), raw)).toBe(0);
    } finally {
      await data.close?.();
    }
  });

  it('reads inflate one zero chunk per encoding, then none: the rest are known from their compressed bytes', async () => {
    const data = await openDecoder(gz);
    try {
      if (data.format !== 'gzip') throw new Error('expected gzip');
      const read = async (chunk: number, length = CHUNK) => {
        const before = data.segmentLoads!;
        const bytes = await data.read(chunk * CHUNK, length);
        expect(Buffer.compare(bytes, raw.subarray(chunk * CHUNK, chunk * CHUNK + length)), `chunk ${chunk}`).toBe(0);
        return data.segmentLoads! - before;
      };
      expect(await read(3)).toBe(1); // the first zero chunk: inflated and looked at, once
      expect(await read(3)).toBe(0);
      expect(await read(4)).toBe(0);
      expect(await read(7)).toBe(0);
      expect(await read(9)).toBe(0);
      expect(await read(1)).toBe(0);
      expect(await read(LAYOUT.length, TAIL)).toBe(1); // a shorter chunk: another encoding
      expect(await read(FORGED)).toBe(1); // zero CRC, other bytes: inflated, and not zeros
      expect(await read(0)).toBe(1);
    } finally {
      await data.close?.();
    }
  });

  it('forged zero CRC: a zero chunk whose map CRC-32 is changed fails its read, never reads as zeros', async () => {
    const bytes = new Uint8Array(readFileSync(gz));
    const source = bufferSource(bytes);
    const header = await readGzipHeader((offset, length) => source.read(offset, length), source.size);
    const mapped = (await readSeekzMap(source, header))!;
    const victim = mapped.map.segments.findIndex((segment) => segment.uStart === 7 * CHUNK);
    const at = mapped.mapOffset + mapped.map.segments[victim]!.crcOffset!;
    new DataView(bytes.buffer).setUint32(at, 0x12345678, true);
    // The trailer agrees with the forged map, so the file opens.
    const forgedHeader = await readGzipHeader((offset, length) => source.read(offset, length), source.size);
    const forgedMap = decodeMap(forgedHeader.extra.find((extra) => extra.id === SEEKZ_SUBFIELD_ID)!.data, bytes.length - forgedHeader.length - 8)!;
    expect(forgedMap.segments[victim]!.crc).toBe(0x12345678);
    new DataView(bytes.buffer).setUint32(bytes.length - 8, combinedCrc(forgedMap), true);
    const path = join(dir.path, 'forged-map.gz');
    writeFileSync(path, bytes);
    const data = await openDecoder(path);
    try {
      expect(await data.zeroRanges!(7 * CHUNK, CHUNK)).toEqual([]);
      await expect(data.read(7 * CHUNK, 4096)).rejects.toMatchObject({ code: 'GZIP_SEGMENT_CRC' });
      // Its neighbours are still zero chunks, known as such.
      expect(await data.zeroRanges!(9 * CHUNK, CHUNK)).toEqual([{ offset: 9 * CHUNK, length: CHUNK }]);
    } finally {
      await data.close?.();
    }
  });
});
