/**
 * Stored frames: zstd frames made only of raw blocks (Block_Type 0), so their bytes lie verbatim
 * in the file and can be overwritten in place; afterwards only the frame's checksum changes (its
 * Content_Checksum, and the seek table entry's checksum), never a size.
 *
 * RFC 8878 §3.1.1.2: a block header is 3 bytes, little-endian: Last_Block (bit 0), Block_Type
 * (bits 1-2), Block_Size (bits 3-23). A raw block's Block_Size bytes follow verbatim, at most
 * Block_Maximum_Size = min(Window_Size, 128 KiB). seekzstd writes a stored frame with
 * Single_Segment set (the window is the content size, no Window_Descriptor), a 4-byte
 * Frame_Content_Size, raw blocks of 128 KiB, and the Content_Checksum.
 *
 * Invariant: a frame counts as stored only if every block of it is raw, the blocks add up to the
 * content size the index gives it, and they end (with the checksum) exactly where the index ends
 * the frame. One RLE or compressed block makes the whole frame uneditable (an edit there would
 * change other bytes' meaning). Zstd frames are independent, so no other frame depends on a
 * stored byte. Pinned by test/zstd-edit.test.ts ("mixed frame", "foreign raw frames").
 */
import type { StoredChunk } from '../edit/editable.js';
import { fail } from '../errors.js';
import { BLOCK_HEADER_SIZE, FRAME_MAGIC, MAX_BLOCK_SIZE, MAX_FRAME_HEADER, parseBlockHeader, parseFrameHeader, type ReadAt } from './format.js';
import { xxh64Low32 } from './xxh64.js';

/** Uncompressed bytes in one stored frame seekzstd writes: a checksum is recomputed over at most this much. */
export const STORED_FRAME_MAX = 1 << 20;
/**
 * The largest raw frame an edit reads whole to recompute its checksum. Foreign files (zstd on
 * incompressible data, the reference seekable compressor's) may hold larger raw frames; above
 * this they are listed as not editable rather than read whole for a 4 KiB edit.
 */
export const EDITABLE_FRAME_MAX = 32 << 20;
/** Magic 4 + descriptor 1 + Frame_Content_Size 4 (Single_Segment: no window byte). */
const STORED_HEADER_SIZE = 9;
/** Frame_Header_Descriptor: FCS_Field_Size 2 (4 bytes), Single_Segment, Content_Checksum_Flag. */
const STORED_DESCRIPTOR = (2 << 6) | 0x20 | 0x04;
const CHECKSUM_SIZE = 4;
/** The smallest frame header: magic, descriptor and one byte (window or content size). */
const MIN_FRAME_HEADER = 6;

/** Bytes of a stored frame for `length` bytes: header, raw blocks with their headers, checksum. */
export function storedFrameSize(length: number): number {
  return STORED_HEADER_SIZE + length + BLOCK_HEADER_SIZE * Math.max(1, Math.ceil(length / MAX_BLOCK_SIZE)) + CHECKSUM_SIZE;
}

/** One whole stored frame for `data` (1 byte to 1 MiB). */
export function buildStoredFrame(data: Uint8Array): Uint8Array {
  if (data.length === 0 || data.length > STORED_FRAME_MAX) throw new RangeError(`zstd: a stored frame holds 1 to ${STORED_FRAME_MAX} bytes, not ${data.length}`);
  const out = new Uint8Array(storedFrameSize(data.length));
  const view = new DataView(out.buffer);
  view.setUint32(0, FRAME_MAGIC, true);
  out[4] = STORED_DESCRIPTOR;
  view.setUint32(5, data.length, true);
  let at = STORED_HEADER_SIZE;
  for (let from = 0; from < data.length; from += MAX_BLOCK_SIZE) {
    const piece = data.subarray(from, Math.min(from + MAX_BLOCK_SIZE, data.length));
    const last = from + piece.length === data.length ? 1 : 0;
    const header = (piece.length << 3) | last; // Block_Type 0 (raw)
    out[at] = header & 0xff;
    out[at + 1] = (header >>> 8) & 0xff;
    out[at + 2] = header >>> 16;
    out.set(piece, at + BLOCK_HEADER_SIZE);
    at += BLOCK_HEADER_SIZE + piece.length;
  }
  view.setUint32(at, xxh64Low32(data), true);
  return out;
}

/** Where a frame is, as the seek table (or the frame walk) records it. */
export interface FramePlace {
  number: number;
  offset: number;
  compressedSize: number;
  uStart: number;
  uSize: number;
}

/** A stored frame found in a file: its raw blocks' bytes and where its Content_Checksum is. */
export interface StoredFrame {
  frame: FramePlace;
  /** Raw block payloads in order: uncompressed offset within the frame, file offset, length. */
  chunks: StoredChunk[];
  /** File offset of the frame's Content_Checksum, when it has one. */
  checksumOffset?: number;
}

/**
 * Can the frame be stored, from its sizes alone? It must hold every byte, a header per 128 KiB
 * and the smallest frame header, and be small enough to be read whole by an edit. Compressed
 * frames fail the first test, so only candidates are read.
 */
export function couldBeStored(frame: FramePlace): boolean {
  const minimum = MIN_FRAME_HEADER + frame.uSize + BLOCK_HEADER_SIZE * Math.max(1, Math.ceil(frame.uSize / MAX_BLOCK_SIZE));
  return frame.uSize > 0 && frame.uSize <= EDITABLE_FRAME_MAX && frame.compressedSize >= minimum;
}

/**
 * Reads a frame's header and block headers (or takes them from `read` over the frame already in
 * memory) and returns its raw blocks if it is stored, or undefined if it is not. Reads: the
 * header, then 3 bytes a block. A walk that disagrees with the index is damage.
 */
export async function findStoredFrame(read: ReadAt, frame: FramePlace): Promise<StoredFrame | undefined> {
  if (!couldBeStored(frame)) return undefined;
  const end = frame.offset + frame.compressedSize;
  const mismatch = (what: string) => fail('ZSTD_BAD_FRAME', frame.offset, `frame ${frame.number}: ${what}`);
  const header = parseFrameHeader(await read(frame.offset, Math.min(MAX_FRAME_HEADER, frame.compressedSize)), frame.offset);
  if (header.contentSize !== undefined && header.contentSize !== frame.uSize) throw mismatch(`its header says ${header.contentSize} bytes, the index ${frame.uSize}`);
  const blocksEnd = end - (header.checksum ? CHECKSUM_SIZE : 0);
  const chunks: StoredFrame['chunks'] = [];
  let at = frame.offset + header.headerSize;
  let within = 0;
  for (;;) {
    if (at + BLOCK_HEADER_SIZE > blocksEnd) throw mismatch('its blocks run past the size the index gives it');
    const block = parseBlockHeader(await read(at, BLOCK_HEADER_SIZE), 0, at);
    if (block.type !== 0) return undefined;
    if (block.storedSize > 0) chunks.push({ within, fileOffset: at + BLOCK_HEADER_SIZE, length: block.storedSize });
    within += block.storedSize;
    at += BLOCK_HEADER_SIZE + block.storedSize;
    if (block.last) break;
  }
  if (at !== blocksEnd) throw mismatch(`its blocks end at offset ${at}, the index ends them at ${blocksEnd}`);
  if (within !== frame.uSize) throw mismatch(`its raw blocks hold ${within} bytes, the index says ${frame.uSize}`);
  return { frame, chunks, checksumOffset: header.checksum ? blocksEnd : undefined };
}
