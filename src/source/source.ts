import { fail } from '../errors.js';

/**
 * The one random-access shape that every layer speaks: a file, a buffer, an HTTP URL, a
 * decoder over another source. Decoders take a Source and return a Source, so layers stack.
 */
export interface Source {
  /** Total length in bytes. */
  readonly size: number;
  /**
   * Reads `length` bytes at `offset`. Reads past the end are clipped, so the result is shorter
   * only when it reaches `size`.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Fills `into` from `offset` without allocating; returns the bytes filled (fewer only at the
   * end). Optional: sources that can, such as files, offer it for writers that recycle buffers.
   */
  readInto?(into: Uint8Array, offset: number): Promise<number>;
  /**
   * Optional: the parts of [offset, offset + length) known to be all zero without decoding
   * anything (from an index, a map, or compressed bytes identical to a block already verified to
   * decode to zeros). Sorted, non-overlapping, clipped to the request. What it leaves out is merely
   * unknown, not non-zero. Lets reads fill zeros and NBD BLOCK_STATUS report holes cheaply.
   */
  zeroRanges?(offset: number, length: number): Promise<Array<{ offset: number; length: number }>>;
  /**
   * Optional: reads many (small) ranges at once, each clipped as read() clips; the results in the
   * order asked. For sources where each read costs a round trip (HTTP: one multi-range request per
   * batch). Callers use the readRanges() function below, which falls back to parallel reads.
   */
  readRanges?(ranges: readonly ByteRange[]): Promise<Uint8Array[]>;
  /** Releases file handles or sockets. Optional: a buffer source has nothing to release. */
  close?(): Promise<void>;
}

export interface ByteRange {
  offset: number;
  length: number;
}

/** Reads `ranges` in one go where the source can (Source.readRanges), else as parallel reads. */
export function readRanges(source: Source, ranges: readonly ByteRange[]): Promise<Uint8Array[]> {
  if (source.readRanges) return source.readRanges(ranges);
  return Promise.all(ranges.map(({ offset, length }) => source.read(offset, length)));
}

/** Clips a read request to the source's size and checks the caller's numbers. */
export function clipRead(size: number, offset: number, length: number): number {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw fail('BAD_ARGUMENT', `read(${offset}, ${length}): offset and length must be whole numbers, 0 or more`);
  }
  return Math.max(0, Math.min(length, size - offset));
}
