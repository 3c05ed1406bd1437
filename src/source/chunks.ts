/**
 * A writer's input read a chunk ahead: while the writer classifies one chunk and hands it to the
 * pool, the next is already being read into another buffer, in one read. A chunk is whole pieces
 * as stored-ranges.ts cuts them (its grid of frames or blocks, and the stored ranges), so the
 * pieces, and the output, are those of reading piece by piece; only the reads are fewer and
 * overlap the work. Buffers come back through `release` and are reused: no fresh pages per chunk.
 *
 * Invariant: reads are issued one after another (a SequentialInput has one position), each into a
 * buffer nobody else holds (a new one, or one given back); `next` gives the chunks in file order,
 * then undefined at the end of the input. At most one read runs ahead of the caller, so buffers in
 * use are the caller's (each bound by its window) plus one. Pinned by test/zstd.test.ts
 * ("identical for any -T") and test/zstd-edit.test.ts (stored frames).
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
}

export interface ChunkReader {
  next(): Promise<Chunk | undefined>;
  /** Gives a chunk's buffer back, for a later chunk. */
  release(buffer: Uint8Array): void;
  /** No read starts after this (the writer failed or was stopped). */
  stop(): void;
}

export function readChunks(input: SequentialInput, options: ChunkReaderOptions): ChunkReader {
  const spare: Uint8Array[] = [];
  let at = 0;
  let ended = false;

  const readOne = async (): Promise<Chunk | undefined> => {
    if (ended) return undefined;
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
    const data = await input.read(buffer.subarray(0, total));
    at += data.length;
    if (data.length < total) ended = true;
    if (data.length === 0) return undefined;
    const pieces = planned.filter((piece) => piece.start < data.length);
    const last = pieces[pieces.length - 1]!;
    last.length = Math.min(last.length, data.length - last.start);
    return { buffer, data, pieces };
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
    release: (buffer) => void spare.push(buffer),
    stop: () => void (ended = true),
  };
}
