/**
 * Stored blocks: xz blocks made only of LZMA2 uncompressed chunks, so their bytes lie verbatim in
 * the file and can be overwritten in place; afterwards only the block's check changes (the block
 * header, the index and the footer record sizes, which stay the same).
 *
 * LZMA2 (xz's src/liblzma/lzma/lzma2_decoder.c): a chunk starts with a control byte. 0x00 ends
 * the stream; 0x01 is an uncompressed chunk that resets the dictionary, 0x02 one that does not;
 * each is followed by its size minus one (16 bits, big-endian) and at most 64 KiB of bytes.
 * Control bytes ≥ 0x80 are LZMA chunks. The first chunk of a block must reset the dictionary.
 *
 * Invariant: a block counts as stored only if every chunk of it is uncompressed. An LZMA chunk
 * after an uncompressed one may copy from its bytes through the dictionary, so one compressed
 * chunk makes the whole block uneditable. Pinned by test/xz-edit.test.ts ("mixed block").
 */
import type { StoredChunk } from '../edit/editable.js';
import { fail } from '../errors.js';
import { FILTER_LZMA2, buildBlockHeader, checkSize, padding4, parseBlockHeader } from './format.js';
import { createCheck } from './check.js';
import type { XzBlock } from './reader.js';

/** Uncompressed bytes in one stored block: a check is recomputed over at most this much. */
export const STORED_BLOCK_MAX = 1 << 20;
/** LZMA2's largest uncompressed chunk. */
export const CHUNK_MAX = 1 << 16;
const CHUNK_END = 0x00;
const CHUNK_UNCOMPRESSED_RESET = 0x01;
const CHUNK_UNCOMPRESSED = 0x02;
const CHUNK_HEADER = 3;
/** LZMA2 dictionary-size property 16 = 1 MiB (2 << (16 / 2 + 11)), the largest stored block. */
const STORED_DICT_PROPERTY = 16;
/** Filter Flags (§3.1.5) of the one filter of a stored block: LZMA2, 1 property byte. */
const STORED_FILTER_FLAGS = Uint8Array.of(FILTER_LZMA2, 1, STORED_DICT_PROPERTY);
/** A block header is at most 1024 bytes (§3.1.1). */
const MAX_BLOCK_HEADER = 1024;

/** LZMA2 data of `length` bytes held as maximal uncompressed chunks: headers, bytes, end marker. */
export function storedDataSize(length: number): number {
  return length + CHUNK_HEADER * Math.ceil(length / CHUNK_MAX) + 1;
}

/**
 * One whole stored block for `data` (1 byte to 1 MiB): header with both sizes, uncompressed
 * chunks, padding, and the check over `data`.
 */
export function buildStoredBlock(data: Uint8Array, checkId: number): { bytes: Uint8Array; unpadded: number } {
  if (data.length === 0 || data.length > STORED_BLOCK_MAX) throw new RangeError(`xz: a stored block holds 1 to ${STORED_BLOCK_MAX} bytes, not ${data.length}`);
  const compressed = storedDataSize(data.length);
  const header = buildBlockHeader(1, STORED_FILTER_FLAGS, compressed, data.length);
  const check = createCheck(checkId);
  check.update(data);
  const digest = check.digest();
  const unpadded = header.length + compressed + digest.length;
  const bytes = new Uint8Array(unpadded + padding4(header.length + compressed));
  bytes.set(header, 0);
  let at = header.length;
  for (let from = 0; from < data.length; from += CHUNK_MAX) {
    const piece = data.subarray(from, Math.min(from + CHUNK_MAX, data.length));
    bytes[at] = from === 0 ? CHUNK_UNCOMPRESSED_RESET : CHUNK_UNCOMPRESSED; // the first chunk must reset the dictionary
    bytes[at + 1] = (piece.length - 1) >>> 8;
    bytes[at + 2] = (piece.length - 1) & 0xff;
    bytes.set(piece, at + CHUNK_HEADER);
    at += CHUNK_HEADER + piece.length;
  }
  bytes[at] = CHUNK_END; // then zero padding to a multiple of 4 (already zero)
  bytes.set(digest, bytes.length - digest.length);
  return { bytes, unpadded };
}

/** Where an xz block is, as the index records it. */
export type BlockPlace = Pick<XzBlock, 'number' | 'uStart' | 'uSize' | 'offset' | 'unpaddedSize' | 'totalSize' | 'checkId'>;

/** A stored block found in a file: its chunks' bytes and where its check is. */
export interface StoredBlock {
  block: BlockPlace;
  /** Chunk payloads in order: uncompressed offset within the block, file offset, length. */
  chunks: StoredChunk[];
  checkOffset: number;
}

/**
 * Can the block be stored, from its index record alone? Its LZMA2 data must hold every byte plus
 * 3 bytes per 64 KiB and the end marker. Compressed blocks fail this, so only candidates are read.
 */
export function couldBeStored(block: BlockPlace): boolean {
  return block.uSize > 0 && block.unpaddedSize - checkSize(block.checkId) - 8 >= storedDataSize(block.uSize);
}

/**
 * Reads a block's header and chunk headers (or takes them from `bytes`, the whole block already
 * in memory) and returns its chunk map if it is stored, or undefined if it is not. Reads: the
 * header, then 3 bytes a chunk. A header or a chunk walk that disagrees with the index is damage.
 */
export async function findStoredBlock(read: (offset: number, length: number) => Promise<Uint8Array>, block: BlockPlace): Promise<StoredBlock | undefined> {
  if (!couldBeStored(block)) return undefined;
  const headerBytes = await read(block.offset, Math.min(MAX_BLOCK_HEADER, block.totalSize));
  const header = parseBlockHeader(headerBytes, block.offset);
  const check = checkSize(block.checkId);
  const compressed = block.unpaddedSize - header.size - check;
  const mismatch = (what: string) => fail('XZ_BAD_DATA', `block ${block.number}: ${what}`, block.offset);
  if (compressed < 1) throw mismatch(`the index leaves no room for its ${header.size}-byte header`);
  if (header.compressedSize !== undefined && header.compressedSize !== compressed) throw mismatch(`its header says ${header.compressedSize} bytes compressed, the index ${compressed}`);
  if (header.uncompressedSize !== undefined && header.uncompressedSize !== block.uSize) throw mismatch(`its header says ${header.uncompressedSize} bytes uncompressed, the index ${block.uSize}`);
  // One filter, LZMA2 (a BCJ or delta filter in front would change the bytes on the way out).
  if (header.filterCount !== 1 || header.filterFlags[0] !== FILTER_LZMA2) return undefined;
  const dataStart = block.offset + header.size;
  const chunks: StoredBlock['chunks'] = [];
  let at = 0;
  let within = 0;
  for (;;) {
    if (at >= compressed) throw mismatch('its LZMA2 data runs past the size the index gives it');
    const head = await read(dataStart + at, Math.min(CHUNK_HEADER, compressed - at));
    const control = head[0];
    if (control === CHUNK_END) break;
    if (control !== CHUNK_UNCOMPRESSED_RESET && (control !== CHUNK_UNCOMPRESSED || at === 0)) return undefined;
    if (head.length < CHUNK_HEADER) throw mismatch('an LZMA2 chunk header runs past the block');
    const length = ((head[1]! << 8) | head[2]!) + 1;
    chunks.push({ within, fileOffset: dataStart + at + CHUNK_HEADER, length });
    within += length;
    at += CHUNK_HEADER + length;
  }
  if (at + 1 !== compressed) throw mismatch(`its LZMA2 data ends after ${at + 1} bytes, the index gives it ${compressed}`);
  if (within !== block.uSize) throw mismatch(`its uncompressed chunks hold ${within} bytes, the index says ${block.uSize}`);
  return { block, chunks, checkOffset: block.offset + block.totalSize - check };
}

/** A reader over a block already in memory (`bytes` starts at file offset `base`). */
export function bytesReader(bytes: Uint8Array, base: number): (offset: number, length: number) => Promise<Uint8Array> {
  return async (offset, length) => {
    const from = offset - base;
    if (from < 0 || from + length > bytes.length) throw fail('XZ_TRUNCATED', 'block', offset);
    return bytes.subarray(from, from + length);
  };
}

/** The uncompressed bytes of a stored block, copied out of its chunks (`bytes` is the block, at `block.offset`). */
export function storedContents(stored: StoredBlock, bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(stored.block.uSize);
  for (const chunk of stored.chunks) {
    const from = chunk.fileOffset - stored.block.offset;
    out.set(bytes.subarray(from, from + chunk.length), chunk.within);
  }
  return out;
}
