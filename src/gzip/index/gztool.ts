import { deflateSync, inflateSync } from 'node:zlib';
import { ByteReader, ByteWriter } from '../../cursor.js';
import { fail, hexBytes, type SeekzError } from '../../errors.js';
import { WINDOW_SIZE, checkPoint, type AccessPoint, type GzipIndex } from './types.js';

/**
 * gztool's index file (`file.gzi`; serialize_index_to_file / deserialize_index_from_file in its
 * gztool.c). Checked against gztool 1.5.1. All integers are big-endian: gztool byte-swaps
 * everything it writes on little-endian machines.
 *
 *   0   u64      0 (where bgzip's .gzi keeps its entry count, so neither tool mistakes the other)
 *   8   8 bytes  "gzipindx" (version 0) or "gzipindX" (version 1, with line numbers; gztool 1.5
 *                writes it unless run with -z)
 *   v1: u32      line separator: 0 '\n', 1 '\r'
 *       u64      point count, written as points are added
 *       u64      equal to the point count once the index is complete; 2^64-1 while gztool is
 *                still writing it (-S, or an interrupted run). An incomplete index has no tail,
 *                and gztool reads it up to its end.
 *   points, one after another:
 *       u64      uncompressed offset
 *       u64      compressed offset of the first full byte (as zran.c)
 *       u32      bits of the byte before it that belong to the block (0-7)
 *       u32      L, the length of the compressed window (0: no window)
 *       L bytes  the window as a zlib stream (RFC 1950), at most 32 KiB once inflated. It holds
 *                only data of the point's own gzip member: gztool restarts it at each member.
 *       v1: u64  line number at the point (1-based)
 *   tail, when complete:
 *       u64      uncompressed size of the whole file (gztool's "file_size")
 *       v1: u64  line count
 *
 * What the format does not record maps to 0 in GzipIndex, meaning unknown: compressedSize
 * always (set it to the gzip file's size before using or converting the index), spacing always
 * (gztool's -s span is not stored), and uncompressedSize while the index is incomplete. Line
 * numbers are dropped: GzipIndex has no place for them.
 */
export const GZTOOL_MAGIC_V0 = 'gzipindx';
export const GZTOOL_MAGIC_V1 = 'gzipindX';
const FORMAT = 'gztool';
const FIX = 'rebuild it with gztool -i (delete the .gzi first)';
const MAGIC_AT = 8;
const MAGIC_END = 16;
/** out, in, bits, window length. */
const POINT_FIXED_LENGTH = 8 + 8 + 4 + 4;
const LINE_NUMBER_LENGTH = 8;

export function parseGztoolIndex(bytes: Uint8Array): GzipIndex {
  const truncated = (what: string, offset: number) => fail('INDEX_TRUNCATED', FORMAT, what, offset, bytes.length, FIX);
  const bad = (offset: number, what: string) => fail('INDEX_BAD_DATA', `${FORMAT} index at offset ${offset}: ${what}; the index is damaged: ${FIX}`);
  const reader = new ByteReader(bytes, truncated);
  /** A big-endian u64 that must be a safe integer: no real file or offset reaches 2^53. */
  const u64 = (what: string): number => {
    const at = reader.offset;
    const [high, low] = reader.u64beParts(what);
    if (high >= 2 ** 21) throw bad(at, `${what} is ${high} * 2^32 + ${low}, above 2^53`);
    return high * 2 ** 32 + low;
  };

  const head = bytes.subarray(0, MAGIC_END);
  const magic = new TextDecoder('latin1').decode(head.subarray(MAGIC_AT));
  const zeroPrefix = head.length === MAGIC_END && head.subarray(0, MAGIC_AT).every((byte) => byte === 0);
  if (!zeroPrefix || (magic !== GZTOOL_MAGIC_V0 && magic !== GZTOOL_MAGIC_V1)) {
    throw fail('INDEX_BAD_MAGIC', `a gztool index starts with 8 zero bytes and 'gzipindx' or 'gzipindX', found ${hexBytes(head) || 'an empty file'}; give the .gzi file that gztool -i wrote`);
  }
  const version = magic === GZTOOL_MAGIC_V1 ? 1 : 0;
  reader.offset = MAGIC_END;
  if (version === 1) reader.u32be('line separator'); // 16

  const countAt = reader.offset;
  const count = u64(`point count`);
  const [completeHigh, completeLow] = reader.u64beParts('completion mark');
  // gztool writes the count twice when it finishes; a file still being written says 2^64-1 in
  // the second field. gztool treats any disagreement as "incomplete" and so does this parser.
  const complete = completeHigh * 2 ** 32 + completeLow === count;

  const lineLength = version === 1 ? LINE_NUMBER_LENGTH : 0;
  const tailLength = complete ? 8 + lineLength : 0;
  const minimumPoint = POINT_FIXED_LENGTH + lineLength;
  // The count is a claim: every point takes at least its fixed fields, so it must fit before any is read.
  if (complete && count * minimumPoint + tailLength > reader.remaining) {
    throw truncated(`${count} points (at least ${count * minimumPoint} bytes) and the ${tailLength}-byte tail`, countAt);
  }

  const points: AccessPoint[] = [];
  const bodyEnd = bytes.length - tailLength;
  while (complete ? points.length < count : reader.offset + minimumPoint <= bodyEnd) {
    const at = reader.offset;
    const index = points.length;
    const uOffset = u64(`point ${index} uncompressed offset`);
    const cOffset = u64(`point ${index} compressed offset`);
    const bits = reader.u32be(`point ${index} bits`);
    const packedLength = reader.u32be(`point ${index} window length`);
    if (!complete && reader.offset + packedLength + lineLength > bodyEnd) break; // gztool is still writing this point
    if (bits > 7) throw bad(at + 16, `point ${index} has bits ${bits}; expected 0-7`);
    if (bits > 0 && cOffset === 0) throw bad(at + 8, `point ${index} starts ${bits} bits before byte 0`);
    const previous = points[index - 1];
    if (previous && (cOffset < previous.cOffset || uOffset < previous.uOffset)) {
      throw bad(at, `point ${index} (compressed ${cOffset}, uncompressed ${uOffset}) comes before point ${index - 1} (compressed ${previous.cOffset}, uncompressed ${previous.uOffset}); expected offsets that never decrease`);
    }
    if (packedLength + lineLength > bodyEnd - reader.offset) {
      throw truncated(`point ${index}'s ${packedLength}-byte window`, reader.offset);
    }
    const windowAt = reader.offset;
    const window = packedLength === 0 ? new Uint8Array(0) : inflateWindow(reader.bytesOf(packedLength, 'window'), windowAt, index, bad);
    if (window.length > uOffset) {
      throw bad(windowAt, `point ${index} has a ${window.length}-byte window before uncompressed offset ${uOffset}; a window cannot hold more than the data before it`);
    }
    if (version === 1) reader.u64beParts(`point ${index} line number`);
    points.push({ uOffset, cOffset, bits, window });
  }

  let uncompressedSize = 0;
  if (complete) {
    if (reader.offset !== bodyEnd) {
      throw bad(reader.offset, `${bodyEnd - reader.offset} bytes follow point ${count - 1}; expected the ${tailLength}-byte tail there`);
    }
    uncompressedSize = u64('uncompressed size');
    const last = points[points.length - 1];
    // 0 is how gztool says it never learned the size; anything else must cover every point.
    if (last && uncompressedSize > 0 && last.uOffset > uncompressedSize) {
      throw bad(bodyEnd, `the uncompressed size is ${uncompressedSize}, but point ${points.length - 1} is at uncompressed offset ${last.uOffset}`);
    }
  }
  return { compressedSize: 0, uncompressedSize, spacing: 0, points };
}

/**
 * Writes a complete version-0 index (no line numbers) that gztool 1.5 uses for -b extraction.
 * Windows are compressed with Node's zlib at the default level, so the bytes differ from what
 * gztool writes for the same points, though both decode to the same windows.
 */
export function serializeGztoolIndex(index: GzipIndex): Uint8Array {
  const writer = new ByteWriter();
  const u32 = (value: number) => writer.u8(value >>> 24).u8((value >>> 16) & 0xff).u8((value >>> 8) & 0xff).u8(value & 0xff);
  const u64be = (value: number) => {
    u32(Math.floor(value / 2 ** 32));
    u32(value % 2 ** 32);
  };
  const { points, uncompressedSize } = index;
  if (!Number.isSafeInteger(uncompressedSize) || uncompressedSize < 0) {
    throw fail('BAD_ARGUMENT', `gztool: uncompressedSize ${uncompressedSize} must be a whole number of bytes`);
  }
  u64be(0);
  writer.bytes(new TextEncoder().encode(GZTOOL_MAGIC_V0));
  u64be(points.length);
  u64be(points.length);
  points.forEach((point, at) => {
    checkPoint(point, at, 'gztool');
    const { uOffset, cOffset, bits, window } = point;
    const packed = window.length === 0 ? new Uint8Array(0) : deflateSync(window);
    u64be(uOffset);
    u64be(cOffset);
    u32(bits);
    u32(packed.length);
    writer.bytes(packed);
  });
  u64be(uncompressedSize);
  return writer.finish();
}

function inflateWindow(packed: Uint8Array, offset: number, index: number, bad: (offset: number, what: string) => SeekzError): Uint8Array {
  try {
    // The limit makes a hostile window fail after 32 KiB instead of inflating without end.
    return new Uint8Array(inflateSync(packed, { maxOutputLength: WINDOW_SIZE }));
  } catch (error) {
    const why = (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' ? `inflates to more than ${WINDOW_SIZE} bytes` : `is not a valid zlib stream (${(error as Error).message})`;
    throw bad(offset, `point ${index}'s window ${why}`);
  }
}
