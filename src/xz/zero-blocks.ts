/**
 * All-zero blocks without decoding them. seekxz encodes an all-zero block once and writes the same
 * bytes for every one (writer.ts), so such a block is recognisable from its compressed bytes alone.
 *
 * Invariant (the trust rule): a block counts as all zeros without being decoded only when its
 * bytes (block header through check, padding included) are identical to those of a block that was
 * decoded in this process, with its check verified, and found to be all zeros; and when the
 * block's check type, unpadded size and uncompressed size (the index record) are the same too.
 * Decoding is a function of exactly these, so the block would decode to the same zeros. Bytes that
 * merely resemble a zero block (one byte off, another check type, another record) are decoded.
 * Pinned by test/xz-zero-blocks.test.ts.
 */
import type { XzBlock } from './reader.js';

/** Larger blocks are never compared: a zero block of up to 4 GiB compresses to far less. */
export const ZERO_CANDIDATE_MAX = 64 * 1024;
/** Zeros compress far better than 16:1 (16 MiB to about 2.4 KiB at -6); data rarely does. */
const ZERO_CANDIDATE_RATIO = 16;
/** Bounds on what the process remembers: a few encodings per record shape, a few shapes. */
const PRINTS_PER_SHAPE = 4;
const MAX_SHAPES = 64;

/** Verified zero encodings by check type and index record. */
const verified = new Map<string, Uint8Array[]>();

const shapeOf = (block: XzBlock) => `${block.checkId}:${block.unpaddedSize}:${block.uSize}`;

/** Small enough, and compressed well enough, to be worth comparing (and, once, decoding) as a zero block. */
export function mayBeZeroBlock(block: XzBlock): boolean {
  return block.uSize > 0 && block.totalSize <= ZERO_CANDIDATE_MAX && block.totalSize * ZERO_CANDIDATE_RATIO <= block.uSize;
}

/** True when `bytes` (the whole block) are those of a block verified to decode to zeros, with the same record. */
export function isVerifiedZero(block: XzBlock, bytes: Uint8Array): boolean {
  const prints = verified.get(shapeOf(block));
  if (!prints || bytes.length !== block.totalSize) return false;
  const candidate = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  return prints.some((print) => candidate.equals(print));
}

/** Records a block that was just decoded, its check verified, and found all zeros. `bytes` is kept (copied). */
export function rememberZero(block: XzBlock, bytes: Uint8Array): void {
  if (!mayBeZeroBlock(block) || bytes.length !== block.totalSize || isVerifiedZero(block, bytes)) return;
  const shape = shapeOf(block);
  let prints = verified.get(shape);
  if (!prints) {
    if (verified.size >= MAX_SHAPES) verified.delete(verified.keys().next().value!);
    prints = [];
    verified.set(shape, prints);
  }
  if (prints.length >= PRINTS_PER_SHAPE) prints.shift();
  prints.push(Buffer.from(bytes));
}

/** Candidate blocks being decoded now, anywhere in the process. */
const decoding = new Map<string, { bytes: Buffer; done: Promise<unknown> }[]>();

const sameBytes = (bytes: Uint8Array, other: Buffer) => other.equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));

/**
 * Waits for the decode of an identical block (same bytes and record) that is under way, so that a
 * run of zero blocks in flight at once costs one decode, not one each. Then `isVerifiedZero` says
 * whether it proved to be zeros. Returns at once when there is none.
 */
export async function identicalDecode(block: XzBlock, bytes: Uint8Array): Promise<void> {
  const twin = decoding.get(shapeOf(block))?.find((entry) => sameBytes(bytes, entry.bytes));
  await twin?.done.catch(() => {});
}

/** Announces the decode of a candidate block until `done` settles (see identicalDecode). */
export function announceDecode(block: XzBlock, bytes: Uint8Array, done: Promise<unknown>): void {
  const shape = shapeOf(block);
  const entry = { bytes: Buffer.from(bytes), done };
  decoding.set(shape, [...(decoding.get(shape) ?? []), entry]);
  const remove = () => {
    const rest = decoding.get(shape)?.filter((other) => other !== entry) ?? [];
    if (rest.length > 0) decoding.set(shape, rest);
    else decoding.delete(shape);
  };
  done.then(remove, remove);
}

/** Forgets every verified encoding: for tests that must see the first decode. */
export function forgetZeroBlocks(): void {
  verified.clear();
}
