import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { crc32 } from '../../crc/crc32.js';
import { ByteReader, ByteWriter } from '../../cursor.js';
import { fail } from '../../errors.js';
import { WINDOW_SIZE, type GzipIndex } from './types.js';

/**
 * seekz's own index file (`FILE.gz.idx`): the points delta-coded as varints, each window
 * deflated on its own (windows are data, and compress like it: this is what makes the file a
 * fraction of a GZIDX, which stores them raw), and a CRC-32 over everything.
 *
 *   0   "SZIDX\x01\n\0"                   magic and version
 *   8   u64  compressed size              of the gzip file it indexes (checked on use)
 *   16  u64  uncompressed size
 *   24  varint spacing, varint point count
 *       per point: varint uOffset delta, varint cOffset delta, u8 bits,
 *                  varint window length, varint deflated window length, deflated window
 *   end u32  CRC-32 of all bytes before it
 */
const MAGIC = Uint8Array.of(0x53, 0x5a, 0x49, 0x44, 0x58, 0x01, 0x0a, 0x00);

export function isSeekzIndex(bytes: Uint8Array): boolean {
  return bytes.length >= MAGIC.length && MAGIC.every((byte, index) => bytes[index] === byte);
}

export function serializeSeekzIndex(index: GzipIndex): Uint8Array {
  const writer = new ByteWriter().bytes(MAGIC).u64le(index.compressedSize).u64le(index.uncompressedSize);
  writer.varint(index.spacing).varint(index.points.length);
  let uAt = 0;
  let cAt = 0;
  for (const point of index.points) {
    writer.varint(point.uOffset - uAt).varint(point.cOffset - cAt).u8(point.bits);
    const packed = point.window.length > 0 ? deflateRawSync(point.window, { level: 9 }) : new Uint8Array(0);
    writer.varint(point.window.length).varint(packed.length).bytes(packed);
    uAt = point.uOffset;
    cAt = point.cOffset;
  }
  const body = writer.finish();
  return new ByteWriter().bytes(body).u32le(crc32(body)).finish();
}

export function parseSeekzIndex(bytes: Uint8Array): GzipIndex {
  if (!isSeekzIndex(bytes)) throw fail('INDEX_BAD_MAGIC', 'no SZIDX magic at offset 0');
  if (bytes.length < MAGIC.length + 16 + 4) throw fail('INDEX_BAD_DATA', `seekz index is only ${bytes.length} bytes`);
  const body = bytes.subarray(0, bytes.length - 4);
  const stored = new DataView(bytes.buffer, bytes.byteOffset + body.length, 4).getUint32(0, true);
  if (crc32(body) !== stored) throw fail('INDEX_BAD_DATA', 'seekz index fails its CRC-32; it was damaged, rebuild it with seekz index');
  const reader = new ByteReader(body, (what, at) => fail('INDEX_BAD_DATA', `${what} at offset ${at} runs past the end of the seekz index`));
  reader.offset = MAGIC.length;
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
    points.push({ uOffset: uAt, cOffset: cAt, bits, window });
  }
  return { compressedSize, uncompressedSize, spacing, points };
}
