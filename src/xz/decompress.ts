import { createRequire } from 'node:module';
import type { Transform } from 'node:stream';
import { fail, SeekzError } from '../errors.js';
import type { PositionalOutput, Sink } from '../io/sink.js';
import { nativeXz } from '../native/xz-engine.js';
import { orderedWindow } from '../workers/ordered.js';
import { FOOTER_MAGIC, STREAM_FOOTER_SIZE, STREAM_HEADER_SIZE, parseStreamFooter, parseStreamHeader } from './format.js';
import type { XzSource } from './reader.js';
import { mayBeZeroBlock } from './zero-blocks.js';

/**
 * Decompresses a whole .xz file in order. Blocks decode in parallel on the reader's pool,
 * a window of `threads + 1` at a time, bypassing the cache (a sequential pass would only evict
 * it). A file with a block larger than the reader's limit (one-block files from single-threaded
 * xz) is streamed through liblzma instead: one thread, bounded memory.
 */
export async function decompressXz(
  xz: XzSource,
  sink: Sink | undefined,
  options: { threads: number; maxBlock: number; streamFile: () => AsyncIterable<Uint8Array>; onProgress?: (done: number) => void },
): Promise<number> {
  let done = 0;
  const emit = async (bytes: Uint8Array) => {
    if (sink) await sink.write(bytes);
    done += bytes.length;
    options.onProgress?.(done);
  };
  if (xz.blocks.some((block) => block.uSize > options.maxBlock)) {
    await streamDecompressXz(options.streamFile(), emit);
    return done;
  }
  const file = sink?.positional && nativeXz() ? await sink.positional() : undefined;
  if (file) {
    await decodeIntoFile(xz, file, options.threads, (length) => {
      done += length;
      options.onProgress?.(done);
    });
    return done;
  }
  // Each decoded block is ours alone (decodeBlock bypasses the cache) and the sink is done with it
  // once its write resolves, so its buffer goes back to the decoder for a later block: the pass
  // touches a window's worth of buffers, not fresh memory (and page faults) for every block.
  // Blocks known to be all zeros are not decoded and take no place in the window: their zeros go
  // out after the entry before them, from one shared buffer (see decodeIntoFile).
  const spare: ArrayBuffer[] = [];
  let zeroPiece: Uint8Array | undefined;
  const emitZeros = async (length: number) => {
    for (let left = length; left > 0; left -= ZERO_PIECE) await emit((zeroPiece ??= new Uint8Array(ZERO_PIECE)).subarray(0, Math.min(left, ZERO_PIECE)));
  };
  type Entry = { bytes?: Uint8Array; zerosAfter: number; taken: boolean };
  let last: Entry | undefined;
  const window = orderedWindow<Entry>(options.threads + 1, async (entry) => {
    entry.taken = true;
    const { bytes } = entry;
    if (bytes) {
      await emit(bytes);
      if (bytes.byteOffset === 0 && bytes.buffer instanceof ArrayBuffer) spare.push(bytes.buffer);
    }
    await emitZeros(entry.zerosAfter);
  });
  for (let index = 0; index < xz.blocks.length; index++) {
    const block = xz.blocks[index]!;
    if (mayBeZeroBlock(block) && (await xz.knownZeroBlock(index))) {
      if (last && !last.taken) last.zerosAfter += block.uSize;
      else await window.push(Promise.resolve((last = { zerosAfter: block.uSize, taken: false })));
      continue;
    }
    const entry: Entry = (last = { zerosAfter: 0, taken: false });
    await window.push(xz.decodeBlock(index, spare.pop()).then((bytes) => Object.assign(entry, { bytes })));
  }
  await window.drain();
  return done;
}

/** Zeros of known zero blocks go to a stream in pieces of this size, from one buffer. */
const ZERO_PIECE = 2 ** 20;

/**
 * The native engine into a regular file: each decoding thread writes its block at the block's offset as it
 * decodes it (the index gives every offset), holes for zero 4 KiB blocks, so decoded bytes cross
 * no thread and are copied into the page cache while still in the decoding core's cache. Blocks
 * finish in any order; `progress` hears of them in order. A failure waits until no thread writes
 * any more, so that the caller's cleanup (removing or truncating the output) is the last word.
 * Exported for test/xz-zero-blocks.test.ts, which pins that zero-block candidates hold up no decode.
 */
export async function decodeIntoFile(xz: XzSource, file: PositionalOutput, threads: number, progress: (length: number) => void): Promise<void> {
  const running = new Set<Promise<unknown>>();
  // Small blocks that may be all zeros (seekxz's zero blocks: known by their bytes, rarely decoded)
  // ride on the window entry before them, until it is taken: with a place each, a row of them
  // behind a block still decoding kept the next blocks from starting, and a core sat idle. Those
  // known to be zeros are not even decoded: the file keeps a hole there.
  type Group = { riders: Promise<number>[]; zeros: number; taken: boolean };
  let last: Group | undefined;
  const window = orderedWindow<{ length: number; group: Group }>(threads + 2, async ({ length, group }) => {
    group.taken = true;
    for (const rider of group.riders) length += await rider;
    progress(length + group.zeros);
  });
  try {
    for (let index = 0; index < xz.blocks.length; index++) {
      const block = xz.blocks[index]!;
      const candidate = mayBeZeroBlock(block);
      if (candidate && (await xz.knownZeroBlock(index))) {
        if (last && !last.taken) last.zeros += block.uSize;
        else await window.push(Promise.resolve({ length: 0, group: (last = { riders: [], zeros: block.uSize, taken: false }) }));
        continue;
      }
      const position = file.at + block.uStart;
      const job = xz.decodeBlockTo(index, { fd: file.fd, position, name: file.name, outputOffset: block.uStart }).then(async (data) => {
        if (data) await file.write(position, data);
        return block.uSize;
      });
      running.add(job);
      const forget = () => running.delete(job);
      job.then(forget, forget);
      if (candidate && last && !last.taken) {
        last.riders.push(job);
        continue;
      }
      const group: Group = (last = { riders: [], zeros: 0, taken: false });
      await window.push(job.then((length) => ({ length, group })));
    }
    await window.drain();
  } catch (error) {
    await Promise.allSettled(running);
    throw error;
  }
  file.advance(xz.size);
}

/**
 * Decompresses an .xz stream front to back (a pipe, or a file with huge blocks). liblzma checks
 * every block against the index here, but two things it lets pass are checked around it:
 * - its stream API ends quietly when its input ends early, so the input must end with a stream
 *   footer, as xz itself insists ("unexpected end of input");
 * - it decodes a stream whose check ID it does not support without verifying it, where xz
 *   refuses; so the first stream header and the last footer are parsed here, which refuses such
 *   IDs and reserved flag bits. (A middle stream of concatenated input is liblzma's alone.)
 */
export async function streamDecompressXz(input: AsyncIterable<Uint8Array>, emit: (bytes: Uint8Array) => Promise<void>): Promise<void> {
  const unxz = (createRequire(import.meta.url)('node-liblzma') as { createUnxz(): Transform }).createUnxz();
  let fed = 0;
  let tail = new Uint8Array(0);
  let head: Uint8Array[] | undefined = [];
  let headLength = 0;
  const feeding = (async () => {
    for await (let piece of input) {
      if (head) {
        // Nothing goes to liblzma, so nothing comes out, until the stream header checks out.
        head.push(piece);
        headLength += piece.length;
        if (headLength < STREAM_HEADER_SIZE) continue;
        piece = Buffer.concat(head);
        head = undefined;
        parseStreamHeader(piece, 0);
      }
      fed += piece.length;
      const joined = new Uint8Array(tail.length + piece.length);
      joined.set(tail);
      joined.set(piece, tail.length);
      tail = joined.slice(Math.max(0, joined.length - STREAM_FOOTER_SIZE));
      if (!unxz.write(piece)) await new Promise((resolve) => unxz.once('drain', resolve));
    }
    unxz.end();
  })();
  feeding.catch((error: Error) => unxz.destroy(error));
  try {
    for await (const piece of unxz) await emit(piece as Uint8Array);
    await feeding;
  } catch (error) {
    if (error instanceof SeekzError) throw error;
    throw fail('XZ_BAD_DATA', (error as Error).message.toLowerCase(), fed);
  }
  if (tail.length < STREAM_FOOTER_SIZE || tail[10] !== FOOTER_MAGIC[0] || tail[11] !== FOOTER_MAGIC[1]) {
    throw fail('XZ_TRUNCATED', 'the stream (no stream footer at its end: unexpected end of input)', fed);
  }
  parseStreamFooter(tail, fed - STREAM_FOOTER_SIZE);
}
