import { fail } from '../errors.js';
import type { Sink } from '../io/sink.js';
import { nativeXz } from '../native/xz-engine.js';
import { encodeRoom, releaseXzCoders } from './block-codec.js';
import type { SequentialInput } from '../source/sequential.js';
import type { XzEncodeReply } from '../workers/jobs.js';
import { orderedWindow } from '../workers/ordered.js';
import { isAllZero, zeroGrainRuns } from '../zeros.js';
import { createWorkerPool, defaultThreads } from '../workers/pool.js';
import { runsInProcess } from '../workers/in-process.js';
import { buildBlockHeader, buildIndex, buildStreamFooter, buildStreamHeader, CHECK_IDS, padding4, type CheckName, type IndexRecord } from './format.js';
import { buildStoredBlock, STORED_BLOCK_MAX } from './stored.js';
import { nextPiece, normaliseRanges } from '../stored-ranges.js';

export const DEFAULT_BLOCK_SIZE = 16 * 2 ** 20;
export const DEFAULT_PRESET = 6;
/**
 * Zero runs of at least this many bytes, aligned to it, get blocks of their own inside a block's
 * span: a disk image's free space rarely fills whole 16 MiB blocks, but it fills whole MiBs (the
 * bench image: no zero 16 MiB block, 65 % zero MiBs). Such zeros are then encoded once, skipped
 * by readers and reported as holes by `seekz serve`.
 */
export const ZERO_GRAIN = 2 ** 20;

export interface XzWriterOptions {
  blockSize?: number;
  preset?: number;
  extreme?: boolean;
  check?: CheckName;
  threads?: number;
  /**
   * Uncompressed ranges [start, end) written as stored blocks (LZMA2 uncompressed chunks only,
   * at most 1 MiB each, aligned to the range's edges), so `patch` can overwrite them in place.
   */
  stored?: { start: number; end: number }[];
  /** Called as each block is written: the same record the index gets. */
  onBlock?: (block: IndexRecord & { offset: number; stored: boolean }) => void;
  onProgress?: (done: number) => void;
  /** Stops the worker threads at once when aborted; the write then fails. */
  signal?: AbortSignal;
}

interface AssembledBlock {
  parts: Uint8Array[]; // header, compressed data, padding, check
  uncompressed: number;
  unpadded: number;
  stored: boolean;
  /** The block's buffer, which holds the compressed data (in place): free again once the block is written. */
  buffer?: Uint8Array;
}

export interface XzWriterResult {
  records: IndexRecord[];
  uncompressedSize: number;
  compressedSize: number;
  zeroBlocks: number;
  /** Uncompressed bytes written as stored blocks. */
  storedBytes: number;
}

/**
 * liblzma's encoder memory per thread at each preset (xz --info-memory / the xz man page), plus
 * the block in and its compressed output: what `--help` states.
 */
const ENCODER_MIB = [2, 4, 7, 12, 24, 94, 94, 186, 370, 674];
export function xzWriterMemoryBound(threads: number, blockSize: number, preset: number): number {
  // 50 MiB is Node with the addon and liblzma loaded (measured: 48 MiB; blocks are coded on libuv's
  // threads); with node-liblzma, 70 MiB: two worker threads too (measured: 67 MiB). A thread holds
  // its block, with the native encoder's compressed output written over it (in place), a copy of
  // that output when its block is done before an earlier one, and, with node-liblzma, an output
  // buffer and garbage V8 frees late: at most 3 blocks. Measured at 2 threads, 16 MiB blocks, -6,
  // on 64 MiB of no-zeros data: 264 MiB (xz -6 -T2: 242 MiB; with an output buffer beside each
  // block it was 284 MiB).
  return (nativeXz() ? 50 : 70) * 2 ** 20 + threads * (ENCODER_MIB[preset]! * 2 ** 20 + 3 * blockSize);
}

/**
 * Writes one .xz stream cut into blocks of exactly `blockSize` bytes (the last may be shorter,
 * and so may those that end at a stored range or at either edge of a zero run of ZERO_GRAIN
 * bytes or more), each block header recording its compressed and uncompressed size. Blocks are
 * encoded `threads` at a time (in process with the addon, else on worker threads) and written in
 * order, so the output is the same for any thread count. All-zero blocks of one length are encoded
 * once and the same bytes reused.
 */
export async function writeXz(input: SequentialInput, sink: Sink, options: XzWriterOptions = {}): Promise<XzWriterResult> {
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  const preset = options.preset ?? DEFAULT_PRESET;
  const checkId = CHECK_IDS[options.check ?? 'crc64'];
  if (!Number.isSafeInteger(blockSize) || blockSize < 4096 || blockSize > 2 ** 32) {
    throw fail('BAD_ARGUMENT', `block size ${blockSize} must be 4 KiB to 4 GiB`);
  }
  if (!Number.isInteger(preset) || preset < 0 || preset > 9) throw fail('BAD_ARGUMENT', `preset ${preset} must be 0 to 9`);
  if (checkId === undefined) throw fail('BAD_ARGUMENT', `check '${options.check}' must be crc32, crc64, sha256 or none`);

  const pool = createWorkerPool(options.threads ?? defaultThreads(), options.signal);
  const records: IndexRecord[] = [];
  let compressedSize = 0;
  let uncompressedSize = 0;
  let zeroBlocks = 0;
  let storedBytes = 0;
  const stored = normaliseRanges(options.stored ?? []);
  const write = async (bytes: Uint8Array) => {
    await sink.write(bytes);
    compressedSize += bytes.length;
  };

  // One buffer per thread: read into it, lend it to the pool, get it back. A block is read only
  // when a buffer is back, so blocks in memory never exceed `threads` (xz -T holds as many). The
  // block sits behind encodeRoom free bytes, and the native engine writes its compressed form over
  // the buffer from the start (in place): no output buffer beside it. A block done in its turn is
  // written from there, then its buffer is back; one done before an earlier block is copied out
  // (its compressed size, not the block) and its buffer is back at once, for the next block.
  const maxInFlight = pool.threads + 2;
  const room = encodeRoom(blockSize);
  const spare: Uint8Array[] = [];
  let buffersFree = pool.threads;
  const bufferWaiters: (() => void)[] = [];
  const takeBuffer = async () => {
    while (buffersFree === 0) await new Promise<void>((resolve) => bufferWaiters.push(resolve));
    buffersFree--;
  };
  const giveBuffer = (buffer?: Uint8Array) => {
    if (buffer) spare.push(buffer);
    buffersFree++;
    bufferWaiters.shift()?.();
  };
  const zeroBlocksByLength = new Map<number, Promise<AssembledBlock>>();
  /** Entries given to the window, and entries it has written: a block is written in its turn when all before it are. */
  let pushed = 0;
  let written = 0;
  // An entry is a block, or the blocks one read was cut into at its zero runs (one place for them
  // all: zero blocks hold no memory, and with a place each a row of them behind a block still
  // encoding kept the next reads from starting).
  const window = orderedWindow<AssembledBlock | AssembledBlock[]>(maxInFlight, async (entry) => {
    for (const block of Array.isArray(entry) ? entry : [entry]) await writeBlock(block);
    written++;
  }, { eager: true });
  const writeBlock = async (block: AssembledBlock) => {
    const offset = compressedSize;
    for (const part of block.parts) await write(part);
    if (block.buffer) giveBuffer(block.buffer);
    const record = { unpaddedSize: block.unpadded, uncompressedSize: block.uncompressed };
    records.push(record);
    uncompressedSize += block.uncompressed;
    options.onBlock?.({ ...record, offset, stored: block.stored });
    options.onProgress?.(uncompressedSize);
  };
  const push = (block: Promise<AssembledBlock | AssembledBlock[]>) => {
    pushed++;
    return window.push(block);
  };
  const assemble = (encoded: XzEncodeReply, length: number): AssembledBlock => {
    const header = buildBlockHeader(encoded.filterCount, encoded.filterFlags, encoded.compressed.length, length);
    const parts = [header, encoded.compressed, new Uint8Array(padding4(encoded.compressed.length)), encoded.check];
    return { parts, uncompressed: length, unpadded: header.length + encoded.compressed.length + encoded.check.length, stored: false };
  };
  const encode = (data: Uint8Array, inPlace: boolean) =>
    pool.run({ kind: 'xz-encode', data, preset, extreme: options.extreme ?? false, checkId, inPlace }, [data.buffer as ArrayBuffer]);
  /** All-zero blocks of one length are encoded once and the same bytes written for each. */
  const zeroBlock = (length: number) => {
    zeroBlocks++;
    let block = zeroBlocksByLength.get(length);
    if (!block) {
      block = encode(new Uint8Array(length), false).then((encoded) => assemble(encoded, length));
      zeroBlocksByLength.set(length, block);
    }
    return block;
  };
  // Zero-run cuts encode several blocks from one input buffer, none in place (each would write
  // over the others): views of it when the encoder runs in this process, copies for a worker
  // thread (which takes its input).
  const shareInput = await runsInProcess('xz-encode');

  try {
    await write(buildStreamHeader(checkId));
    for (let at = 0; ; ) {
      const next = nextPiece(at, blockSize, STORED_BLOCK_MAX, stored);
      if (next.stored) {
        // Built here: copying and a check over at most 1 MiB is cheaper than a trip to a worker.
        const data = await input.read(new Uint8Array(next.length));
        if (data.length === 0) break;
        const block = buildStoredBlock(data, checkId);
        storedBytes += data.length;
        at += data.length;
        await push(Promise.resolve({ parts: [block.bytes], uncompressed: data.length, unpadded: block.unpadded, stored: true }));
        if (data.length < next.length) break;
        continue;
      }
      await takeBuffer();
      const buffer = spare.pop() ?? new Uint8Array(room + blockSize);
      const data = await input.read(buffer.subarray(room, room + next.length));
      const length = data.length;
      if (length === 0) break;
      const start = at;
      at += length;
      const allZero = isAllZero(data);
      const runs = !allZero && blockSize > ZERO_GRAIN ? zeroGrainRuns(data, start, ZERO_GRAIN) : [];
      if (allZero) {
        giveBuffer(buffer);
        await push(zeroBlock(length));
      } else if (runs.length > 1) {
        // Cut at the zero runs, all encoded at once; the buffer is free again once they all are.
        const blocks: Promise<AssembledBlock>[] = [];
        for (const [from, to, zero] of runs) {
          if (zero) blocks.push(...powerOfTwoPieces(to - from, ZERO_GRAIN).map(zeroBlock));
          else blocks.push(encode(shareInput ? data.subarray(from, to) : data.slice(from, to), false).then((encoded) => assemble(encoded, to - from)));
        }
        void Promise.allSettled(blocks).then(() => giveBuffer(buffer));
        await push(Promise.all(blocks));
      } else {
        const turn = pushed;
        await push(
          encode(data, true).then(
            (encoded) => {
              const back = new Uint8Array(encoded.data.buffer);
              const compressed = encoded.compressed;
              if (compressed.buffer !== back.buffer) {
                giveBuffer(back); // not in place (no native engine): the output is a buffer of its own
                return assemble(encoded, length);
              }
              if (turn === written) return { ...assemble(encoded, length), buffer: back };
              giveBuffer(back);
              return assemble({ ...encoded, compressed: compressed.slice() }, length);
            },
            (error: unknown) => {
              giveBuffer(); // the loop must not wait for a buffer that a failed job will never return
              throw error;
            },
          ),
        );
      }
      if (length < next.length) break;
    }
    await window.drain();
    const index = buildIndex(records);
    await write(index);
    await write(buildStreamFooter(checkId, index.length));
  } finally {
    await pool.close();
    releaseXzCoders();
  }
  return { records, uncompressedSize, compressedSize, zeroBlocks, storedBytes };
}

/**
 * A zero run of whole grains as blocks of 1, 2, 4, ... grains, largest first: a few lengths, each
 * encoded once per file, however the runs fall.
 */
function powerOfTwoPieces(length: number, grain: number): number[] {
  const pieces: number[] = [];
  for (let size = 2 ** Math.floor(Math.log2(length / grain)) * grain; length > 0; size /= 2) {
    while (length >= size) {
      pieces.push(size);
      length -= size;
    }
  }
  return pieces;
}
