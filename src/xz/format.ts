/**
 * The .xz container (xz file format 1.2.0): stream header and footer, block headers, the index.
 * Only the container: compressed data is liblzma's business. Every size read from a file is a
 * claim, checked before it is used.
 */
import { crc32 } from '../crc/crc32.js';
import { ByteReader, ByteWriter } from '../cursor.js';
import { fail } from '../errors.js';

export const HEADER_MAGIC = Uint8Array.of(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00);
export const FOOTER_MAGIC = Uint8Array.of(0x59, 0x5a); // "YZ"
export const STREAM_HEADER_SIZE = 12;
export const STREAM_FOOTER_SIZE = 12;
/** xz varints (§1.2) are at most 9 bytes and encode at most 2^63 − 1. */
const VARINT_MAX_BYTES = 9;
const BLOCK_FLAG_FILTER_COUNT = 0x03;
const BLOCK_FLAG_COMPRESSED_SIZE = 0x40;
const BLOCK_FLAG_UNCOMPRESSED_SIZE = 0x80;
const BLOCK_FLAG_RESERVED = 0x3c;
export const FILTER_LZMA2 = 0x21;

export const CHECK_NONE = 0;
export const CHECK_CRC32 = 1;
export const CHECK_CRC64 = 4;
export const CHECK_SHA256 = 10;
export type CheckName = 'none' | 'crc32' | 'crc64' | 'sha256';
export const CHECK_IDS: Record<CheckName, number> = { none: CHECK_NONE, crc32: CHECK_CRC32, crc64: CHECK_CRC64, sha256: CHECK_SHA256 };
const SUPPORTED_CHECK_IDS = new Set(Object.values(CHECK_IDS));

/** Check sizes by check ID (§3.4): 0, 4, 8, 32 bytes for the defined ones; reserved IDs by range. */
export function checkSize(checkId: number): number {
  if (checkId === 0) return 0;
  return 4 << Math.floor((checkId - 1) / 3);
}

export function checkName(checkId: number): string {
  const known = Object.entries(CHECK_IDS).find(([, id]) => id === checkId);
  return known ? (known[0] === 'none' ? 'None' : known[0].toUpperCase().replace('CRC', 'CRC')) : `Unknown-${checkId}`;
}

export function padding4(length: number): number {
  return (4 - (length % 4)) % 4;
}

function readVarint(reader: ByteReader, what: string): number {
  let value = 0;
  let scale = 1;
  for (let index = 0; index < VARINT_MAX_BYTES; index++) {
    const byte = reader.u8(what);
    if (byte === 0 && index > 0) throw fail('XZ_BAD_DATA', `${what} is not in its shortest form`, reader.offset - 1);
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) {
      if (!Number.isSafeInteger(value)) throw fail('XZ_BAD_DATA', `${what} ${value} is larger than 2^53`, reader.offset);
      return value;
    }
    scale *= 128;
  }
  throw fail('XZ_BAD_DATA', `${what} is longer than 9 bytes`, reader.offset);
}

export interface StreamFlags {
  checkId: number;
}

function parseStreamFlags(bytes: Uint8Array, at: number): StreamFlags {
  // Stream Flags (§2.1.1.2): a zero byte, then 4 reserved bits and the 4-bit check ID.
  if (bytes[0] !== 0 || (bytes[1]! & 0xf0) !== 0) {
    throw fail('XZ_UNSUPPORTED', `stream flags ${bytes[0]} ${bytes[1]} at offset ${at} use reserved bits (xz: "Unsupported options"); a newer xz format or a damaged file`);
  }
  const checkId = bytes[1]! & 0x0f;
  // IDs 0x0–0xF are valid in the format, but only four are defined; for the others xz cannot
  // verify the data ("Unsupported type of integrity check") and neither can seekz, so it refuses.
  if (!SUPPORTED_CHECK_IDS.has(checkId)) {
    throw fail('XZ_UNSUPPORTED', `integrity check type ${checkId} in the stream flags at offset ${at} (xz: "Unsupported type of integrity check"); only None (0), CRC32 (1), CRC64 (4) and SHA-256 (10) can be verified`);
  }
  return { checkId };
}

/** Stream Header (§2.1.1): magic, flags, CRC32 of the flags. `at` is its file offset, for messages. */
export function parseStreamHeader(bytes: Uint8Array, at: number): StreamFlags {
  if (bytes.length < STREAM_HEADER_SIZE) throw fail('XZ_TRUNCATED', 'stream header', at);
  for (let index = 0; index < HEADER_MAGIC.length; index++) {
    if (bytes[index] !== HEADER_MAGIC[index]) throw fail('XZ_BAD_MAGIC', at);
  }
  const flags = bytes.subarray(6, 8);
  const stored = new DataView(bytes.buffer, bytes.byteOffset + 8, 4).getUint32(0, true);
  if (crc32(flags) !== stored) throw fail('XZ_BAD_CRC', 'stream header', at);
  return parseStreamFlags(flags, at + 6);
}

export interface StreamFooter extends StreamFlags {
  /** Size of the index in bytes. */
  indexSize: number;
}

/** Stream Footer (§2.1.2): CRC32, backward size, flags, "YZ". */
export function parseStreamFooter(bytes: Uint8Array, at: number): StreamFooter {
  if (bytes.length < STREAM_FOOTER_SIZE) throw fail('XZ_TRUNCATED', 'stream footer', at);
  if (bytes[10] !== FOOTER_MAGIC[0] || bytes[11] !== FOOTER_MAGIC[1]) throw fail('XZ_BAD_FOOTER', at);
  const view = new DataView(bytes.buffer, bytes.byteOffset, STREAM_FOOTER_SIZE);
  if (crc32(bytes.subarray(4, 10)) !== view.getUint32(0, true)) throw fail('XZ_BAD_CRC', 'stream footer', at);
  const flags = parseStreamFlags(bytes.subarray(8, 10), at + 8);
  // Backward Size: the index size in 4-byte units, minus one.
  return { ...flags, indexSize: (view.getUint32(4, true) + 1) * 4 };
}

export interface IndexRecord {
  unpaddedSize: number;
  uncompressedSize: number;
}

/**
 * Index (§4): indicator 0x00, record count, records, padding, CRC32. `limit` bounds the record
 * count by what the bytes could hold, so a hostile count cannot allocate.
 */
export function parseIndex(bytes: Uint8Array, at: number): IndexRecord[] {
  // The CRC first: a damaged index is reported as damaged, not as whatever its bytes now say.
  if (bytes.length < 8) throw fail('XZ_BAD_INDEX', `it is only ${bytes.length} bytes`, at);
  const crcAt = bytes.length - 4;
  if (crc32(bytes.subarray(0, crcAt)) !== new DataView(bytes.buffer, bytes.byteOffset + crcAt, 4).getUint32(0, true)) {
    throw fail('XZ_BAD_CRC', 'index', at);
  }
  const reader = new ByteReader(bytes, (what, offset) => fail('XZ_TRUNCATED', what, at + offset));
  if (reader.u8('index indicator') !== 0) throw fail('XZ_BAD_INDEX', 'it does not start with the index indicator 0x00', at);
  const count = readVarint(reader, 'index record count');
  // Each record takes at least 2 bytes.
  if (count > (bytes.length - 1) / 2) throw fail('XZ_BAD_INDEX', `${count} records cannot fit in ${bytes.length} bytes`, at);
  const records: IndexRecord[] = [];
  for (let index = 0; index < count; index++) {
    const unpaddedSize = readVarint(reader, 'unpadded size');
    const uncompressedSize = readVarint(reader, 'uncompressed size');
    // Unpadded size counts block header (≥ 8), compressed data (≥ 1).
    if (unpaddedSize < 5) throw fail('XZ_BAD_INDEX', `record ${index} has unpadded size ${unpaddedSize}`, at);
    records.push({ unpaddedSize, uncompressedSize });
  }
  const padded = reader.offset + padding4(reader.offset);
  while (reader.offset < padded) {
    if (reader.u8('index padding') !== 0) throw fail('XZ_BAD_INDEX', 'index padding is not zero', at + reader.offset - 1);
  }
  reader.u32le('index CRC32'); // checked above
  if (reader.remaining !== 0) throw fail('XZ_BAD_INDEX', `the footer says ${bytes.length} bytes but the index ends after ${reader.offset}`, at);
  return records;
}

export interface BlockHeader {
  size: number;
  filterCount: number;
  compressedSize?: number;
  uncompressedSize?: number;
  /** The raw Filter Flags, copied verbatim when a header is rewritten. */
  filterFlags: Uint8Array;
}

/** Block Header (§3.1). `bytes` starts at the header; at least its first byte must be there. */
export function parseBlockHeader(bytes: Uint8Array, at: number): BlockHeader {
  if (bytes.length < 1) throw fail('XZ_TRUNCATED', 'block header', at);
  if (bytes[0] === 0) throw fail('XZ_BAD_DATA', 'found the index where a block header was expected', at);
  const size = (bytes[0]! + 1) * 4;
  if (bytes.length < size) throw fail('XZ_TRUNCATED', 'block header', at);
  const stored = new DataView(bytes.buffer, bytes.byteOffset + size - 4, 4).getUint32(0, true);
  if (crc32(bytes.subarray(0, size - 4)) !== stored) throw fail('XZ_BAD_CRC', 'block header', at);
  const reader = new ByteReader(bytes.subarray(0, size - 4), (what) => fail('XZ_BAD_DATA', `${what} runs past the block header`, at));
  reader.offset = 1;
  const flags = reader.u8('block flags');
  if (flags & BLOCK_FLAG_RESERVED) throw fail('XZ_UNSUPPORTED', `block flags 0x${flags.toString(16)} at offset ${at} use reserved bits`);
  const header: BlockHeader = { size, filterCount: (flags & BLOCK_FLAG_FILTER_COUNT) + 1, filterFlags: new Uint8Array(0) };
  if (flags & BLOCK_FLAG_COMPRESSED_SIZE) header.compressedSize = readVarint(reader, 'compressed size');
  if (flags & BLOCK_FLAG_UNCOMPRESSED_SIZE) header.uncompressedSize = readVarint(reader, 'uncompressed size');
  const filtersStart = reader.offset;
  for (let index = 0; index < header.filterCount; index++) {
    readVarint(reader, 'filter ID');
    const propertiesSize = readVarint(reader, 'filter properties size');
    reader.bytesOf(propertiesSize, 'filter properties');
  }
  header.filterFlags = bytes.slice(filtersStart, reader.offset);
  while (reader.remaining > 0) {
    if (reader.u8('header padding') !== 0) throw fail('XZ_BAD_DATA', 'block header padding is not zero', at + reader.offset - 1);
  }
  return header;
}

export function writeVarint(writer: ByteWriter, value: number): void {
  writer.varint(value); // the same LEB128 as the seekz map; always minimal
}

/** A block header that records both sizes, so parallel decoders and `xz --list` can use them. */
export function buildBlockHeader(filterCount: number, filterFlags: Uint8Array, compressedSize: number, uncompressedSize: number): Uint8Array {
  const body = new ByteWriter();
  body.u8(0); // size byte, filled below
  body.u8(((filterCount - 1) & BLOCK_FLAG_FILTER_COUNT) | BLOCK_FLAG_COMPRESSED_SIZE | BLOCK_FLAG_UNCOMPRESSED_SIZE);
  writeVarint(body, compressedSize);
  writeVarint(body, uncompressedSize);
  body.bytes(filterFlags);
  const unpadded = body.length + 4;
  for (let index = 0; index < padding4(unpadded); index++) body.u8(0);
  const bytes = body.finish();
  bytes[0] = (bytes.length + 4) / 4 - 1;
  return new ByteWriter().bytes(bytes).u32le(crc32(bytes)).finish();
}

export function buildStreamHeader(checkId: number): Uint8Array {
  const flags = Uint8Array.of(0, checkId);
  return new ByteWriter().bytes(HEADER_MAGIC).bytes(flags).u32le(crc32(flags)).finish();
}

export function buildIndex(records: IndexRecord[]): Uint8Array {
  const body = new ByteWriter().u8(0);
  writeVarint(body, records.length);
  for (const record of records) {
    writeVarint(body, record.unpaddedSize);
    writeVarint(body, record.uncompressedSize);
  }
  const unpadded = body.length;
  for (let index = 0; index < padding4(unpadded); index++) body.u8(0);
  const bytes = body.finish();
  return new ByteWriter().bytes(bytes).u32le(crc32(bytes)).finish();
}

export function buildStreamFooter(checkId: number, indexSize: number): Uint8Array {
  const tail = new ByteWriter().u32le(indexSize / 4 - 1).u8(0).u8(checkId).finish();
  return new ByteWriter().u32le(crc32(tail)).bytes(tail).bytes(FOOTER_MAGIC).finish();
}
