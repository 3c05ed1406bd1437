import { createRequire } from 'node:module';
import type { Transform } from 'node:stream';
import { fail } from '../errors.js';
import type { Sink } from '../gzip/partial-deflate.js';
import { orderedWindow } from '../workers/ordered.js';
import type { XzSource } from './reader.js';

/**
 * Decompresses a whole .xz file in order. Blocks decode in parallel on the reader's worker pool,
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
    const unxz = createUnxzStream();
    const feeding = (async () => {
      for await (const piece of options.streamFile()) {
        if (!unxz.write(piece)) await new Promise((resolve) => unxz.once('drain', resolve));
      }
      unxz.end();
    })();
    feeding.catch((error) => unxz.destroy(error));
    try {
      for await (const piece of unxz) await emit(piece as Uint8Array);
    } catch (error) {
      throw fail('XZ_DECODE_FAILED', 0, 0, (error as Error).message.toLowerCase());
    }
    await feeding;
    return done;
  }
  const window = orderedWindow<Uint8Array>(options.threads + 1, emit);
  for (let index = 0; index < xz.blocks.length; index++) await window.push(xz.decodeBlock(index));
  await window.drain();
  return done;
}

function createUnxzStream(): Transform {
  const liblzma = createRequire(import.meta.url)('node-liblzma') as { createUnxz(): Transform };
  return liblzma.createUnxz();
}
