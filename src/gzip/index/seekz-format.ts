import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { crc32 } from '../../crc/crc32.js';
import { ByteReader, ByteWriter } from '../../cursor.js';
import { fail } from '../../errors.js';
import type { AfterMember } from '../header.js';
import { WINDOW_SIZE, type AccessPoint, type GzipIndex } from './types.js';

/**
 * seekz's own index file (`FILE.gz.idx`): the points delta-coded as varints, each window
 * deflated on its own (windows are data, and compress like it: this is what makes the file a
 * fraction of a GZIDX, which stores them raw), and a CRC-32 over everything.
 *
 *   0   "SZIDX" u8 version "\n\0"            magic; version 2 (1 is still read)
 *   8   u64  compressed size              of the gzip file it indexes (checked on use)
 *   16  u64  uncompressed size
 *   24  varint spacing, varint point count
 *       per point: varint uOffset delta, varint cOffset delta, u8 bits,
 *                  varint window length, varint deflated window length, deflated window,
 *                  v2: u32 CRC-32 of the span's output (this point to the next, or to the end)
 *   v2: varint end offset (just after the last member's trailer), u8 what follows it
 *       (0 nothing, 1 zero bytes, 2 garbage, as gzip -d sees them)
 *   end u32  CRC-32 of all bytes before it
 *
 * Version 1 has no span CRCs: reads through it are checked for length and block boundaries
 * only, as for GZIDX and gztool files.
 */
const MAGIC_V1 = Uint8Array.of(0x53, 0x5a, 0x49, 0x44, 0x58, 0x01, 0x0a, 0x00);
const VERSION_AT = 5;
const VERSION = 2;
const AFTER_CODES: AfterMember[] = ['nothing', 'zeros', 'garbage'];

export function isSeekzIndex(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC_V1.length && MAGIC_V1.every((byte, index) => index === VERSION_AT || bytes[index] === byte) && [1, VERSION].includes(bytes[VERSION_AT]!);
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
    const packed = point.window.length > 0 ? deflateRawSync(point.window, { level: 9 }) : new Uint8Array(0);
    writer.varint(point.window.length).varint(packed.length).bytes(packed).u32le(point.crc);
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
    if (version >= 2) point.crc = reader.u32le('span CRC-32');
    points.push(point);
  }
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
