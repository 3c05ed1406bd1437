/**
 * A writer's input read a chunk ahead: while the writer classifies one chunk and hands it to the
 * pool, the next is already being read into another buffer, in one read. A chunk is whole pieces
 * as stored-ranges.ts cuts them (its grid of frames or blocks, and the stored ranges), so the
 * pieces, and the output, are those of reading piece by piece; only the reads are fewer and
 * overlap the work. Buffers come back through `release` and are reused: no fresh pages per chunk.
 *
 * Invariant: reads are issued one after another (a SequentialInput has one position), each into a
 * buffer nobody else holds, and at most `buffers` buffers exist; `next` gives the chunks in file
 * order, then undefined at the end of the input. Pinned by test/zstd.test.ts ("identical for any
 * -T", "stored frames") and test/xz-edit.test.ts.
 */
import { nextPiece, type ByteRange } from '../stored-ranges.js';
import type { SequentialInput } from './sequential.js';

export interface ChunkPiece {
  /** Where the piece lies in the chunk's `data`. */
  start: number;
  length: number;
  stored: boolean;
}

export interface Chunk {
  /** The buffer read into, to give back with `release` once nothing holds it. */
  buffer: Uint8Array;
  /** What was read: the pieces, back to back; shorter than planned only at the end of the input. */
  data: Uint8Array;
  pieces: ChunkPiece[];
}

export interface ChunkReaderOptions {
  /** The grid of pieces to compress (a frame or block size). */
  pieceSize: number;
  /** The largest stored piece (stored-ranges.ts). */
  storedMax: number;
  stored: ByteRange[];
  /** Every buffer's size: at least pieceSize and storedMax. */
  bufferBytes: number;
  /** Bytes of whole pieces to read into the chunk at `at` (at least one piece is). */
  capacity: (at: number) => number;
  /** Buffers at most (those read into, given out and not yet released): a read waits for one. Default: no limit. */
  buffers?: number;
}

export interface ChunkReader {
  next(): Promise<Chunk | undefined>;
  /** Gives a chunk's buffer back; without one (a job that failed kept it), only its place. */
  release(buffer?: Uint8Array): void;
  /** No read starts after this (the writer failed or was stopped). */
  stop(): void;
}

export function readChunks(input: SequentialInput, options: ChunkReaderOptions): ChunkReader {
  const spare: Uint8Array[] = [];
  let out = 0;
  const waiters: (() => void)[] = [];
  let at = 0;
  let ended = false;
  const limit = options.buffers ?? Infinity;

  const readOne = async (): Promise<Chunk | undefined> => {
    while (!ended && out >= limit) await new Promise<void>((resolve) => waiters.push(resolve));
    if (ended) return undefined;
    out++;
    const buffer = spare.pop() ?? new Uint8Array(options.bufferBytes);
    const capacity = options.capacity(at);
    const planned: ChunkPiece[] = [];
    let total = 0;
    do {
      const piece = nextPiece(at + total, options.pieceSize, options.storedMax, options.stored);
      if (planned.length > 0 && total + piece.length > capacity) break;
      planned.push({ start: total, length: piece.length, stored: piece.stored });
      total += piece.length;
    } while (total < capacity);
    let data: Uint8Array;
    try {
      data = await input.read(buffer.subarray(0, total));
    } catch (error) {
      ended = true;
      throw error;
    }
    at += data.length;
    if (data.length < total) ended = true;
    if (data.length === 0) {
      release(buffer);
      return undefined;
    }
    const pieces = planned.filter((piece) => piece.start < data.length);
    const last = pieces[pieces.length - 1]!;
    last.length = Math.min(last.length, data.length - last.start);
    return { buffer, data, pieces };
  };

  const release = (buffer?: Uint8Array) => {
    out--;
    if (buffer) spare.push(buffer);
    waiters.shift()?.();
  };

  let ahead: Promise<Chunk | undefined> | undefined;
  return {
    next() {
      const current = ahead ?? readOne();
      // The next read starts as soon as this one is done, while the caller works on this chunk.
      ahead = current.then((chunk) => (chunk ? readOne() : undefined));
      ahead.catch(() => {}); // reported when the caller takes it; unread if the caller stopped first
      return current;
    },
    release,
    stop() {
      ended = true;
      for (const wake of waiters.splice(0)) wake();
    },
  };
}
