import { ByteReader, ByteWriter } from '../../cursor.js';
import { fail, hexBytes, type SeekzError } from '../../errors.js';
import { WINDOW_SIZE, checkPoint, type AccessPoint, type GzipIndex } from './types.js';

/**
 * indexed_gzip's index file (zran_export_index / zran_import_index in its zran.c). Checked
 * against python3-indexed-gzip 1.7.0, which writes version 1. zran.c fwrites its integers in the
 * machine's byte order; seekz reads little-endian, what x86 and ARM builds write. (A file from a
 * big-endian build such as s390x fails the size and count checks below.)
 *
 *   0   5 bytes  magic "GZIDX"
 *   5   u8       version: 0 or 1 (1.7.0 writes 1)
 *   6   u8       flags, unused (0)
 *   7   u64      compressed size: the gzip file's size; indexed_gzip refuses the index for a
 *                file of another size
 *   15  u64      uncompressed size, 0 when the index was exported before reaching the end
 *   23  u32      spacing between points (uncompressed bytes)
 *   27  u32      window size W: always 32768. indexed_gzip refuses less on import, and zlib
 *                cannot build with more (IndexedGzipFile(window_size=65536) fails)
 *   31  u32      point count N
 *   35  N points, 18 bytes each in version 1 (17 in version 0):
 *         u64 compressed offset (first full byte, as zran.c), u64 uncompressed offset,
 *         u8 bits (0-7), and in version 1 only: u8 1 when a window follows, 0 when not
 *   then one W-byte window for each point that has one, in point order, and nothing after.
 *
 * Version 0 has no per-point flag: the first point has no window and every other point has one.
 * Points without a window are where a gzip member's deflate data starts (after its header);
 * indexed_gzip also writes a last point at the end of the file (compressed offset = file size)
 * that has a window.
 *
 * Windows are the 32 KiB before the point, zero-filled in front when fewer came before it.
 * parseGzidx keeps at most `uOffset` bytes, so a window is always real data; serializeGzidx fills
 * the front with zeros again, which restores the bytes indexed_gzip wrote.
 */
export const GZIDX_MAGIC = Uint8Array.of(0x47, 0x5a, 0x49, 0x44, 0x58); // "GZIDX"
export const GZIDX_VERSION = 1;
const HEADER_LENGTH = 35;
const POINT_LENGTH_V0 = 17;
const POINT_LENGTH_V1 = 18;
const FORMAT = 'gzidx';
const FIX = 'rebuild it with indexed_gzip (IndexedGzipFile.build_full_index, then export_index)';
const U32_MAX = 2 ** 32 - 1;

export function parseGzidx(bytes: Uint8Array): GzipIndex {
  const truncated = (what: string, offset: number) => fail('INDEX_TRUNCATED', FORMAT, what, offset, bytes.length, FIX);
  const bad = (offset: number, what: string) => fail('INDEX_BAD_DATA', `${FORMAT} index at offset ${offset}: ${what}; the index is damaged: ${FIX}`);
  const reader = new ByteReader(bytes, truncated);

  const magic = bytes.subarray(0, GZIDX_MAGIC.length);
  if (magic.length < GZIDX_MAGIC.length || !magic.every((byte, at) => byte === GZIDX_MAGIC[at])) {
    throw fail('INDEX_BAD_MAGIC', `an indexed_gzip index starts with 'GZIDX' (${hexBytes(GZIDX_MAGIC)}), found ${hexBytes(magic) || 'an empty file'}; give the file that indexed_gzip's export_index wrote`);
  }
  reader.offset = GZIDX_MAGIC.length;
  const version = reader.u8('version'); // 5
  if (version > GZIDX_VERSION) {
    throw fail('INDEX_UNSUPPORTED', FORMAT, `version ${version}; seekz reads versions 0 and 1`, 'export the index with indexed_gzip 1.x');
  }
  reader.u8('flags'); // 6: unused; indexed_gzip ignores it too
  const compressedSize = readU64(reader, 'compressed size', bad); // 7
  const uncompressedSize = readU64(reader, 'uncompressed size', bad); // 15
  const spacing = reader.u32le('spacing'); // 23
  const windowAt = reader.offset;
  const windowSize = reader.u32le('window size'); // 27
  const count = reader.u32le('point count'); // 31
  if (windowSize !== WINDOW_SIZE) throw bad(windowAt, `window size ${windowSize}; expected ${WINDOW_SIZE}, the only size indexed_gzip builds with`);

  // The count is a claim: the point table alone must fit in what follows before anything is built.
  const pointLength = version === 0 ? POINT_LENGTH_V0 : POINT_LENGTH_V1;
  if (count * pointLength > reader.remaining) {
    throw truncated(`a table of ${count} points (${count * pointLength} bytes, ${pointLength} per point)`, HEADER_LENGTH);
  }

  const table: { uOffset: number; cOffset: number; bits: number; hasWindow: boolean }[] = [];
  for (let index = 0; index < count; index++) {
    const at = reader.offset;
    const cOffset = readU64(reader, `point ${index} compressed offset`, bad);
    const uOffset = readU64(reader, `point ${index} uncompressed offset`, bad);
    const bits = reader.u8(`point ${index} bits`);
    const flag = version === 0 ? (index === 0 ? 0 : 1) : reader.u8(`point ${index} window flag`);
    if (bits > 7) throw bad(at + 16, `point ${index} has bits ${bits}; expected 0-7`);
    if (bits > 0 && cOffset === 0) throw bad(at, `point ${index} starts ${bits} bits before byte 0`);
    if (flag > 1) throw bad(at + 17, `point ${index} has window flag ${flag}; expected 0 or 1`);
    const previous = table[index - 1];
    if (previous && (cOffset < previous.cOffset || uOffset < previous.uOffset)) {
      throw bad(at, `point ${index} (compressed ${cOffset}, uncompressed ${uOffset}) comes before point ${index - 1} (compressed ${previous.cOffset}, uncompressed ${previous.uOffset}); expected offsets that never decrease`);
    }
    if (compressedSize > 0 && cOffset > compressedSize) {
      throw bad(at, `point ${index} is at compressed offset ${cOffset}, past the ${compressedSize}-byte file`);
    }
    if (uncompressedSize > 0 && uOffset > uncompressedSize) {
      throw bad(at + 8, `point ${index} is at uncompressed offset ${uOffset}, past the ${uncompressedSize} uncompressed bytes`);
    }
    table.push({ cOffset, uOffset, bits, hasWindow: flag === 1 });
  }

  const windowCount = table.filter((point) => point.hasWindow).length;
  const windowBytes = windowCount * windowSize;
  if (windowBytes > reader.remaining) {
    throw truncated(`${windowCount} windows of ${windowSize} bytes (${windowBytes} bytes)`, reader.offset);
  }
  if (windowBytes < reader.remaining) {
    throw bad(reader.offset + windowBytes, `${reader.remaining - windowBytes} bytes follow the last window; expected the file to end there`);
  }

  const points: AccessPoint[] = table.map((point, index) => {
    if (!point.hasWindow) return { uOffset: point.uOffset, cOffset: point.cOffset, bits: point.bits, window: new Uint8Array(0) };
    const stored = reader.bytesOf(windowSize, `point ${index} window`);
    // Deflate never reaches back before the start of the data: the rest is indexed_gzip's padding.
    const keep = Math.min(WINDOW_SIZE, point.uOffset);
    return { uOffset: point.uOffset, cOffset: point.cOffset, bits: point.bits, window: stored.slice(windowSize - keep) };
  });
  return { compressedSize, uncompressedSize, spacing, points };
}

/**
 * Writes version 1, which indexed_gzip 1.x imports with `IndexedGzipFile(path, index_file=…)` or
 * `import_index`. Windows are padded in front with zeros to 32 KiB; a point with an empty window
 * is written without one, which indexed_gzip inflates with no history.
 *
 * Throws for an index indexed_gzip could not use: compressedSize 0 (indexed_gzip compares it
 * with the file's size; set it to the gzip file's size first), a window above 32 KiB, or a value
 * that does not fit its field.
 */
export function serializeGzidx(index: GzipIndex): Uint8Array {
  const { compressedSize, uncompressedSize, points } = index;
  if (!Number.isSafeInteger(compressedSize) || compressedSize < 1) {
    throw fail('BAD_ARGUMENT', `gzidx: compressedSize is ${compressedSize}; indexed_gzip refuses an index whose size differs from the gzip file's, so set it to the file's size`);
  }
  if (!Number.isSafeInteger(uncompressedSize) || uncompressedSize < 0) {
    throw fail('BAD_ARGUMENT', `gzidx: uncompressedSize ${uncompressedSize} must be a whole number of bytes (0 when unknown)`);
  }
  if (points.length > U32_MAX) throw fail('BAD_ARGUMENT', `gzidx: ${points.length} points do not fit the 32-bit point count`);
  // indexed_gzip refuses a spacing below the window size; the spacing only guides how it would
  // extend an index, so an index built with a finer one is written with the smallest it accepts.
  const spacing = Math.min(Math.max(index.spacing, WINDOW_SIZE), U32_MAX);

  const writer = new ByteWriter();
  writer.bytes(GZIDX_MAGIC).u8(GZIDX_VERSION).u8(0);
  writer.u64le(compressedSize).u64le(uncompressedSize).u32le(spacing).u32le(WINDOW_SIZE).u32le(points.length);
  points.forEach((point, at) => {
    checkPoint(point, at, 'gzidx');
    const { uOffset, cOffset, bits, window } = point;
    writer.u64le(cOffset).u64le(uOffset).u8(bits).u8(window.length > 0 ? 1 : 0);
  });
  for (const { window } of points) {
    if (window.length === 0) continue;
    writer.bytes(new Uint8Array(WINDOW_SIZE - window.length)).bytes(window);
  }
  return writer.finish();
}

/** A u64 that must be a safe integer: no real file or offset reaches 2^53. */
function readU64(reader: ByteReader, what: string, bad: (offset: number, what: string) => SeekzError): number {
  const at = reader.offset;
  const low = reader.u32le(what);
  const high = reader.u32le(what);
  if (high >= 2 ** 21) throw bad(at, `${what} is ${high} * 2^32 + ${low}, above 2^53`);
  return high * 2 ** 32 + low;
}
