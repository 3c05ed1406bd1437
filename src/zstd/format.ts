/**
 * The zstd frame format (RFC 8878) and the seekable format (facebook/zstd
 * contrib/seekable_format/zstd_seekable_compression_format.md), as far as a reader needs it to
 * find frames without decoding them: frame headers, block headers, skippable frames and the seek
 * table. Every size read here is a claim: it is checked against the bytes it describes and the
 * file size before anything is allocated or read. Never imports fs: callers bring the bytes.
 * Pinned by test/zstd-format.test.ts.
 */
import { fail } from '../errors.js';

export const FRAME_MAGIC = 0xfd2fb528;
/** The magic as it is stored (little-endian), for open()'s table of formats. */
export const FRAME_MAGIC_BYTES = Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd);
/** Skippable frames use 0x184D2A50 to 0x184D2A5F; the seek table uses the last. */
export const SKIPPABLE_MAGIC_MIN = 0x184d2a50;
export const SKIPPABLE_MAGIC_MASK = 0xfffffff0;
/** The first skippable magic as stored: pzstd opens its files with such a frame. */
export const SKIPPABLE_MAGIC_BYTES = Uint8Array.of(0x50, 0x2a, 0x4d, 0x18);
export const SEEK_TABLE_MAGIC = 0x184d2a5e;
export const SEEKABLE_MAGIC = 0x8f92eab1;
export const SEEK_TABLE_FOOTER_SIZE = 9;
/** The reference implementation's limits (zstd_seekable.h): frames per table, bytes per frame. */
export const SEEKABLE_MAX_FRAMES = 0x8000000;
export const SEEKABLE_MAX_FRAME_SIZE = 0x80000000;
/** Largest frame header: magic 4 + descriptor 1 + window 1 + dictionary 4 + content size 8. */
export const MAX_FRAME_HEADER = 18;
export const BLOCK_HEADER_SIZE = 3;
/** A block never holds more than 128 KiB (Block_Maximum_Size). */
export const MAX_BLOCK_SIZE = 128 * 1024;

export interface FrameHeader {
  /** Bytes of the header, magic included. */
  headerSize: number;
  /** Frame_Content_Size, when the header states it. */
  contentSize?: number;
  windowSize: number;
  dictionaryId: number;
  checksum: boolean;
  singleSegment: boolean;
}

const u32 = (bytes: Uint8Array, at: number) => (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;

export function isSkippableMagic(magic: number): boolean {
  return (magic & SKIPPABLE_MAGIC_MASK) >>> 0 === SKIPPABLE_MAGIC_MIN;
}

/**
 * Parses the frame header in `bytes` (at least MAX_FRAME_HEADER bytes, or all the file has left)
 * that sits at file offset `offset`.
 */
export function parseFrameHeader(bytes: Uint8Array, offset: number): FrameHeader {
  if (bytes.length < 5) throw fail('ZSTD_TRUNCATED', 'frame header', offset);
  const magic = u32(bytes, 0);
  if (magic !== FRAME_MAGIC) throw fail('ZSTD_BAD_MAGIC', offset, magic);
  // Frame_Header_Descriptor (byte 4): FCS flag 7-6, single segment 5, unused 4, reserved 3, checksum 2, dictionary ID flag 1-0
  const descriptor = bytes[4]!;
  if (descriptor & 0x08) throw fail('ZSTD_BAD_FRAME', offset, 'the reserved bit of the frame header descriptor is set');
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor & 0x20) !== 0;
  const checksum = (descriptor & 0x04) !== 0;
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  const headerSize = 5 + (singleSegment ? 0 : 1) + dictionaryBytes + fcsBytes;
  if (bytes.length < headerSize) throw fail('ZSTD_TRUNCATED', 'frame header', offset);
  let at = 5;
  let windowSize = 0;
  if (!singleSegment) {
    // Window_Descriptor: exponent 7-3, mantissa 2-0
    const window = bytes[at++]!;
    const windowLog = 10 + (window >> 3);
    const base = 2 ** windowLog;
    windowSize = base + (base / 8) * (window & 7);
  }
  let dictionaryId = 0;
  for (let index = 0; index < dictionaryBytes; index++) dictionaryId += bytes[at++]! * 2 ** (8 * index);
  let contentSize: number | undefined;
  if (fcsBytes > 0) {
    let value = 0;
    for (let index = 0; index < fcsBytes; index++) value += bytes[at + index]! * 2 ** (8 * index);
    if (fcsBytes === 2) value += 256;
    if (!Number.isSafeInteger(value)) throw fail('ZSTD_BAD_FRAME', offset, `its content size is above 2^53`);
    contentSize = value;
  }
  if (singleSegment) windowSize = contentSize!;
  return { headerSize, contentSize, windowSize, dictionaryId, checksum, singleSegment };
}

export interface BlockHeader {
  last: boolean;
  /** 0 raw, 1 RLE, 2 compressed. */
  type: number;
  /** Bytes the block takes after its header. */
  storedSize: number;
  /** Bytes it decodes to, where the header says (raw and RLE). */
  decodedSize?: number;
}

/** Parses the 3-byte block header at file offset `offset`. */
export function parseBlockHeader(bytes: Uint8Array, at: number, offset: number): BlockHeader {
  if (bytes.length < at + BLOCK_HEADER_SIZE) throw fail('ZSTD_TRUNCATED', 'block header', offset);
  const value = bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16);
  const last = (value & 1) !== 0;
  const type = (value >> 1) & 3;
  const size = value >>> 3;
  if (type === 3) throw fail('ZSTD_BAD_FRAME', offset, 'a block has the reserved type 3');
  if (size > MAX_BLOCK_SIZE) throw fail('ZSTD_BAD_FRAME', offset, `a block claims ${size} bytes, more than the 128 KiB a block may hold`);
  if (type === 0) return { last, type, storedSize: size, decodedSize: size };
  if (type === 1) return { last, type, storedSize: 1, decodedSize: size };
  return { last, type, storedSize: size };
}

/** One frame of a .zst file as found in it, before any decoding. */
export interface FrameLocation {
  /** File offset of the frame (its magic). */
  offset: number;
  /** Bytes of the whole frame in the file. */
  compressedSize: number;
  /** Bytes it decodes to, when known (frame header or seek table). */
  contentSize?: number;
  /** The frame's own Content_Checksum (low 32 bits of XXH64), when it has one. */
  checksum?: number;
  /** A skippable frame (its data is not part of the content). */
  skippable: boolean;
}

/** Reads bytes of the compressed file: what the walk asks of its caller (a Source's read). */
export type ReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/**
 * Finds the frame at `offset` and its size by walking its block headers (3 bytes each, one read
 * per block; a 1 MiB frame has about 8): no decoding. Skippable frames are one read.
 */
export async function walkFrame(read: ReadAt, offset: number, fileSize: number): Promise<FrameLocation> {
  const head = await read(offset, Math.min(MAX_FRAME_HEADER, fileSize - offset));
  if (head.length < 8 && !(head.length >= 5 && u32(head, 0) === FRAME_MAGIC)) throw fail('ZSTD_TRUNCATED', 'frame header', offset);
  const magic = u32(head, 0);
  if (isSkippableMagic(magic)) {
    const size = 8 + u32(head, 4);
    if (offset + size > fileSize) throw fail('ZSTD_TRUNCATED', `skippable frame of ${size} bytes`, offset);
    return { offset, compressedSize: size, skippable: true };
  }
  const header = parseFrameHeader(head, offset);
  let at = offset + header.headerSize;
  for (;;) {
    const bytes = await read(at, BLOCK_HEADER_SIZE);
    const block = parseBlockHeader(bytes, 0, at);
    at += BLOCK_HEADER_SIZE + block.storedSize;
    if (at > fileSize) throw fail('ZSTD_TRUNCATED', 'a block', at - block.storedSize - BLOCK_HEADER_SIZE);
    if (block.last) break;
  }
  let checksum: number | undefined;
  if (header.checksum) {
    if (at + 4 > fileSize) throw fail('ZSTD_TRUNCATED', 'content checksum', at);
    checksum = u32(await read(at, 4), 0);
    at += 4;
  }
  return { offset, compressedSize: at - offset, contentSize: header.contentSize, checksum, skippable: false };
}

/** One seek table entry: a frame's sizes and its checksum (when the table has them). */
export interface SeekEntry {
  compressedSize: number;
  decompressedSize: number;
  checksum?: number;
}

export interface SeekTable {
  entries: SeekEntry[];
  checksums: boolean;
  /** Bytes of the whole skippable frame that holds the table. */
  size: number;
}

/** Bytes of the seek table frame for `frames` entries. */
export function seekTableSize(frames: number, checksums: boolean): number {
  return 8 + frames * (checksums ? 12 : 8) + SEEK_TABLE_FOOTER_SIZE;
}

/**
 * Reads the Seek_Table_Footer (the last 9 bytes of the file): undefined when the file does not
 * end in the seekable magic, so it is not a seekable file.
 */
export function parseSeekTableFooter(footer: Uint8Array, fileSize: number): { frames: number; checksums: boolean } | undefined {
  if (footer.length < SEEK_TABLE_FOOTER_SIZE || u32(footer, 5) !== SEEKABLE_MAGIC) return undefined;
  const at = fileSize - SEEK_TABLE_FOOTER_SIZE;
  // Number_Of_Frames (0-3), Seek_Table_Descriptor (4): checksum flag 7, reserved 6-2, unused 1-0
  const frames = u32(footer, 0);
  const descriptor = footer[4]!;
  if (descriptor & 0x7c) throw fail('ZSTD_BAD_SEEK_TABLE', at, 'the reserved bits of its descriptor are set');
  if (frames > SEEKABLE_MAX_FRAMES) throw fail('ZSTD_BAD_SEEK_TABLE', at, `it claims ${frames} frames, more than the ${SEEKABLE_MAX_FRAMES} the format allows`);
  const checksums = (descriptor & 0x80) !== 0;
  if (seekTableSize(frames, checksums) > fileSize) throw fail('ZSTD_BAD_SEEK_TABLE', at, `its ${frames} entries need ${seekTableSize(frames, checksums)} bytes, more than the file's ${fileSize}`);
  return { frames, checksums };
}

/**
 * Parses the whole seek table frame (`bytes`, which ends the file at `fileSize`) and holds its
 * entries against the file: their compressed sizes must add up to exactly the bytes before it.
 */
export function parseSeekTable(bytes: Uint8Array, fileSize: number, frames: number, checksums: boolean): SeekTable {
  const size = seekTableSize(frames, checksums);
  const tableAt = fileSize - size;
  if (bytes.length !== size) throw fail('ZSTD_TRUNCATED', 'seek table', tableAt);
  if (u32(bytes, 0) !== SEEK_TABLE_MAGIC) throw fail('ZSTD_BAD_SEEK_TABLE', tableAt, `expected the skippable magic 5e 2a 4d 18 where its ${frames} entries put the table, found ${hex(u32(bytes, 0))}`);
  if (u32(bytes, 4) !== size - 8) throw fail('ZSTD_BAD_SEEK_TABLE', tableAt, `its frame size says ${u32(bytes, 4)} bytes, ${frames} entries take ${size - 8}`);
  const entrySize = checksums ? 12 : 8;
  const entries: SeekEntry[] = [];
  let compressed = 0;
  let decompressed = 0;
  for (let index = 0, at = 8; index < frames; index++, at += entrySize) {
    const entry: SeekEntry = { compressedSize: u32(bytes, at), decompressedSize: u32(bytes, at + 4) };
    if (checksums) entry.checksum = u32(bytes, at + 8);
    if (entry.decompressedSize > SEEKABLE_MAX_FRAME_SIZE) throw fail('ZSTD_BAD_SEEK_TABLE', tableAt + at, `entry ${index + 1} claims ${entry.decompressedSize} bytes, more than a frame may hold`);
    compressed += entry.compressedSize;
    decompressed += entry.decompressedSize;
    entries.push(entry);
  }
  if (compressed !== tableAt) throw fail('ZSTD_BAD_SEEK_TABLE', tableAt, `its entries add up to ${compressed} compressed bytes, the file holds ${tableAt} before the table`);
  if (!Number.isSafeInteger(decompressed)) throw fail('ZSTD_BAD_SEEK_TABLE', tableAt, 'its sizes add up to more than 2^53');
  return { entries, checksums, size };
}

/** The seek table frame for `entries`, with a checksum per entry. */
export function buildSeekTable(entries: readonly SeekEntry[]): Uint8Array {
  const size = seekTableSize(entries.length, true);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, SEEK_TABLE_MAGIC, true);
  view.setUint32(4, size - 8, true);
  let at = 8;
  for (const entry of entries) {
    view.setUint32(at, entry.compressedSize, true);
    view.setUint32(at + 4, entry.decompressedSize, true);
    view.setUint32(at + 8, entry.checksum ?? 0, true);
    at += 12;
  }
  view.setUint32(at, entries.length, true);
  out[at + 4] = 0x80; // Checksum_Flag
  view.setUint32(at + 5, SEEKABLE_MAGIC, true);
  return out;
}

/** The frame's Content_Checksum: its last four bytes (a frame written with the checksum flag). */
export function frameChecksum(frame: Uint8Array): number {
  return u32(frame, frame.length - 4);
}

function hex(value: number): string {
  return Array.from({ length: 4 }, (_, index) => ((value >>> (8 * index)) & 0xff).toString(16).padStart(2, '0')).join(' ');
}
