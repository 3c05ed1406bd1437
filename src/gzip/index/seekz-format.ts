import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { crc32, crc32Combine } from '../../crc/crc32.js';
import { ByteReader, ByteWriter } from '../../cursor.js';
import { fail } from '../../errors.js';
import type { AfterMember } from '../header.js';
import { WINDOW_SIZE, type AccessPoint, type Granule, type GzipIndex } from './types.js';

/**
 * seekz's own index file (`FILE.gz.idx`): the points delta-coded as varints, each window
 * deflated on its own (windows are data, and compress like it: this is what makes the file a
 * fraction of a GZIDX, which stores them raw), and a CRC-32 over everything.
 *
 *   0   "SZIDX" u8 version "\n\0"            magic; version 3 (1 and 2 are still read)
 *   8   u64  compressed size              of the gzip file it indexes (checked on use)
 *   16  u64  uncompressed size
 *   24  varint spacing, varint point count
 *       per point: varint uOffset delta, varint cOffset delta, u8 bits,
 *                  varint window length, varint deflated window length, deflated window,
 *                  v2: u32 CRC-32 of the span's output (this point to the next, or to the end)
 *                  v3 instead: varint granule count n, then for each granule but the last a
 *                  varint uncompressed length and a varint compressed end (types.ts Granule:
 *                  cEnd), as deltas from the point or the granule before (the last ends where
 *                  the span does), then n u32 CRC-32s of the granules' output
 *   v2: varint end offset (just after the last member's trailer), u8 what follows it
 *       (0 nothing, 1 zero bytes, 2 garbage, as gzip -d sees them)
 *   end u32  CRC-32 of all bytes before it
 *
 * Version 3 cuts each span into granules of 64 KiB of output (types.ts: Granule), so that a small
 * read inflates from its point to the end of its granule and checks that, not the whole span.
 * Version 2 has one CRC-32 per span. Version 1 has no span CRCs: reads through it are checked for length and block boundaries
 * only, as for GZIDX and gztool files.
 */
const MAGIC_V1 = Uint8Array.of(0x53, 0x5a, 0x49, 0x44, 0x58, 0x01, 0x0a, 0x00);
const VERSION_AT = 5;
const VERSION = 3;
const AFTER_CODES: AfterMember[] = ['nothing', 'zeros', 'garbage'];

export function isSeekzIndex(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC_V1.length && MAGIC_V1.every((byte, index) => index === VERSION_AT || bytes[index] === byte) && [1, 2, VERSION].includes(bytes[VERSION_AT]!);
}

const packed = new WeakMap<Uint8Array, Uint8Array>();

/**
 * A window as the index file stores it (raw deflate). Remembered per window, so that an index
 * builder can pack each window while it waits for zlib (BuildOptions.onWindow), instead of all of
 * them after the pass. Level 1: on the bench's 1 GiB pigz file the 256 windows took 101 ms at
 * level 1 and 249 ms at level 9, for a file 5 % larger (1.54 against 1.46 MB; GZIDX: 8.4 MB).
 */
export function packWindow(window: Uint8Array): Uint8Array {
  if (window.length === 0) return window;
  let bytes = packed.get(window);
  if (!bytes) {
    bytes = deflateRawSync(window, { level: 1 });
    packed.set(window, bytes);
  }
  return bytes;
}

export function serializeSeekzIndex(index: GzipIndex): Uint8Array {
  const magic = Uint8Array.from(MAGIC_V1);
  magic[VERSION_AT] = VERSION;
  const writer = new ByteWriter().bytes(magic).u64le(index.compressedSize).u64le(index.uncompressedSize);
  writer.varint(index.spacing).varint(index.points.length);
  let uAt = 0;
  let cAt = 0;
  for (const [number, point] of index.points.entries()) {
    if (point.crc === undefined) throw fail('BAD_ARGUMENT', `seekz index: point ${number} has no span CRC-32; build the index with buildGzipIndex`);
    writer.varint(point.uOffset - uAt).varint(point.cOffset - cAt).u8(point.bits);
    const packed = packWindow(point.window);
    writer.varint(point.window.length).varint(packed.length).bytes(packed);
    const granules = point.granules ?? [{ uEnd: 0, cEnd: 0, crc: point.crc }];
    writer.varint(granules.length);
    let [granuleU, granuleC] = [point.uOffset, point.cOffset];
    for (const granule of granules.slice(0, -1)) {
      writer.varint(granule.uEnd - granuleU).varint(granule.cEnd - granuleC);
      [granuleU, granuleC] = [granule.uEnd, granule.cEnd];
    }
    for (const granule of granules) writer.u32le(granule.crc);
    uAt = point.uOffset;
    cAt = point.cOffset;
  }
  const end = index.end ?? { offset: index.compressedSize, after: 'nothing' as const };
  writer.varint(end.offset).u8(AFTER_CODES.indexOf(end.after === 'member' ? 'nothing' : end.after));
  const body = writer.finish();
  return new ByteWriter().bytes(body).u32le(crc32(body)).finish();
}

export function parseSeekzIndex(bytes: Uint8Array): GzipIndex {
  if (!isSeekzIndex(bytes)) throw fail('INDEX_BAD_MAGIC', 'no SZIDX magic at offset 0');
  const version = bytes[VERSION_AT]!;
  if (bytes.length < MAGIC_V1.length + 16 + 4) throw fail('INDEX_BAD_DATA', `seekz index is only ${bytes.length} bytes`);
  const body = bytes.subarray(0, bytes.length - 4);
  const stored = new DataView(bytes.buffer, bytes.byteOffset + body.length, 4).getUint32(0, true);
  if (crc32(body) !== stored) throw fail('INDEX_BAD_DATA', 'seekz index fails its CRC-32; it was damaged, rebuild it with seekz index');
  const reader = new ByteReader(body, (what, at) => fail('INDEX_BAD_DATA', `${what} at offset ${at} runs past the end of the seekz index`));
  reader.offset = MAGIC_V1.length;
  const compressedSize = reader.u64le('compressed size');
  const uncompressedSize = reader.u64le('uncompressed size');
  const spacing = reader.varint('spacing');
  const count = reader.varint('point count');
  // Each point takes at least 5 bytes: a hostile count cannot make us allocate.
  if (count > reader.remaining / 5) throw fail('INDEX_BAD_DATA', `${count} points cannot fit in ${bytes.length} bytes`);
  const points: GzipIndex['points'] = [];
  let uAt = 0;
  let cAt = 0;
  for (let number = 0; number < count; number++) {
    uAt += reader.varint('uncompressed offset');
    cAt += reader.varint('compressed offset');
    const bits = reader.u8('bits');
    const windowLength = reader.varint('window length');
    const packedLength = reader.varint('packed window length');
    if (bits > 7 || windowLength > WINDOW_SIZE || uAt > uncompressedSize || cAt > compressedSize) {
      throw fail('INDEX_BAD_DATA', `point ${number} is impossible (bits ${bits}, window ${windowLength}, offsets ${uAt}/${cAt})`);
    }
    const packed = reader.bytesOf(packedLength, 'window');
    let window = new Uint8Array(0);
    if (windowLength > 0) {
      try {
        window = new Uint8Array(inflateRawSync(packed, { maxOutputLength: WINDOW_SIZE }));
      } catch {
        throw fail('INDEX_BAD_DATA', `the window of point ${number} does not inflate`);
      }
      if (window.length !== windowLength) throw fail('INDEX_BAD_DATA', `the window of point ${number} is ${window.length} bytes, not ${windowLength}`);
    }
    const point: AccessPoint = { uOffset: uAt, cOffset: cAt, bits, window };
    if (version === 2) point.crc = reader.u32le('span CRC-32');
    if (version >= 3) point.granules = readGranules(reader, point, number, uncompressedSize, compressedSize);
    points.push(point);
  }
  if (version >= 3) closeGranules(points, uncompressedSize, compressedSize);
  const index: GzipIndex = { compressedSize, uncompressedSize, spacing, points };
  if (version >= 2) {
    const offset = reader.varint('end offset');
    const after = AFTER_CODES[reader.u8('what follows the end')];
    if (after === undefined || offset > compressedSize) throw fail('INDEX_BAD_DATA', `the recorded end of the gzip data (offset ${offset}) is impossible`);
    index.end = { offset, after };
  }
  if (reader.remaining !== 0) throw fail('INDEX_BAD_DATA', `${reader.remaining} bytes follow the last field of the seekz index`);
  return index;
}

/** A v3 point's granules; the last one's end is filled in by closeGranules once the next point is known. */
function readGranules(reader: ByteReader, point: AccessPoint, number: number, uncompressedSize: number, compressedSize: number): Granule[] {
  const count = reader.varint('granule count');
  // Each granule takes at least 4 bytes (its CRC-32): a hostile count cannot make us allocate.
  if (count > reader.remaining / 4) throw fail('INDEX_BAD_DATA', `point ${number} claims ${count} granules, more than the index holds`);
  const granules: Granule[] = [];
  let [uEnd, cEnd] = [point.uOffset, point.cOffset];
  for (let at = 0; at + 1 < count; at++) {
    const uLength = reader.varint('granule length');
    cEnd += reader.varint('granule compressed end');
    uEnd += uLength;
    if (uLength === 0 || uEnd > uncompressedSize || cEnd > compressedSize) {
      throw fail('INDEX_BAD_DATA', `granule ${at} of point ${number} is impossible (ends at uncompressed ${uEnd}, file offset ${cEnd})`);
    }
    granules.push({ uEnd, cEnd, crc: 0 });
  }
  if (count > 0) granules.push({ uEnd: Number.NaN, cEnd: Number.NaN, crc: 0 });
  for (const granule of granules) granule.crc = reader.u32le('granule CRC-32');
  return granules;
}

/** Ends each span's last granule where the span ends, checks the granules lie inside their span, and derives the span CRC-32s. */
function closeGranules(points: AccessPoint[], uncompressedSize: number, compressedSize: number): void {
  for (const [number, point] of points.entries()) {
    const next = points[number + 1];
    const granules = point.granules!;
    const last = granules[granules.length - 1];
    if (last) [last.uEnd, last.cEnd] = next ? [next.uOffset, next.cOffset] : [uncompressedSize, compressedSize];
    let crc = 0;
    let at = point.uOffset;
    for (const granule of granules) {
      if (granule.uEnd < at || (granule !== last && (granule.uEnd >= last!.uEnd || granule.cEnd > last!.cEnd))) {
        throw fail('INDEX_BAD_DATA', `point ${number} has a granule ending at uncompressed ${granule.uEnd}, outside its span`);
      }
      crc = crc32Combine(crc, granule.crc, granule.uEnd - at);
      at = granule.uEnd;
    }
    point.crc = crc;
  }
}
