/**
 * The seekz_zlib addon (native/zlib/seekz_zlib.c): zlib's inflate with Z_BLOCK and inflatePrime,
 * which node:zlib does not expose. Optional: when it is not built, or SEEKZ_NATIVE=0, callers
 * take their pure-Node path, which gives the same results (test/gzip-index-engines.test.ts
 * runs both).
 */
import { createRequire } from 'node:module';
import { crc32 } from '../crc/crc32.js';

export interface InflateResult {
  inUsed: number;
  outUsed: number;
  /** The deflate stream ended (its final block is done). */
  ended: boolean;
  /** Pairs: stream-relative bit where the next block starts, stream-relative output offset there. */
  boundaries: Float64Array;
}

export interface NativeZlib {
  /** A raw inflate stream, primed with up to 32 KiB of history. */
  createInflater(dictionary?: Uint8Array): unknown;
  /**
   * Inflates on the thread pool until input or output is used up or the stream ends (see the C
   * file); with `stopBit` (stream-relative) also at the block boundary found exactly there.
   */
  inflateBlocks(inflater: unknown, input: Uint8Array, output: Uint8Array, primeBits?: number, stopBit?: number): Promise<InflateResult>;
  /** The same on this thread: for reads that wait for the result anyway (no thread-pool round trip). */
  inflateBlocksSync(inflater: unknown, input: Uint8Array, output: Uint8Array, primeBits?: number): InflateResult;
  /** CRC-32 as zlib computes it (continuing from `previous`), by libdeflate: PCLMUL folding. */
  crc32(data: Uint8Array, previous?: number): number;
  /** A guess: the first bit at or past `fromBit` of `input` where a dynamic deflate block seems to start, or -1. */
  findBlock(input: Uint8Array, fromBit: number): number;
  zlibVersion: string;
}

interface Binding {
  createInflater(dictionary?: Uint8Array): unknown;
  inflateBlocks(inflater: unknown, input: Uint8Array, output: Uint8Array, primeBits?: number, stopBit?: number): Promise<[number, number, boolean, Float64Array]>;
  inflateBlocksSync(inflater: unknown, input: Uint8Array, output: Uint8Array, primeBits?: number): [number, number, boolean, Float64Array];
  crc32(data: Uint8Array, previous?: number): number;
  findBlock(input: Uint8Array, fromBit: number): number;
  zlibVersion: string;
}

// From src/native (tests run the sources) and from dist/src/native (the built CLI).
const CANDIDATES = ['../../build/Release/seekz_zlib.node', '../../../build/Release/seekz_zlib.node'];

let loaded: NativeZlib | null | undefined;
let loadError: string | undefined;

function load(): NativeZlib | null {
  const require = createRequire(import.meta.url);
  for (const candidate of CANDIDATES) {
    let binding: Binding;
    try {
      binding = require(candidate) as Binding;
    } catch (error) {
      loadError = (error as Error).message.split('\n')[0];
      continue;
    }
    return {
      createInflater: (dictionary) => binding.createInflater(dictionary),
      inflateBlocks: async (inflater, input, output, primeBits, stopBit) => {
        const [inUsed, outUsed, ended, boundaries] = await binding.inflateBlocks(inflater, input, output, primeBits, stopBit);
        return { inUsed, outUsed, ended, boundaries };
      },
      inflateBlocksSync: (inflater, input, output, primeBits) => {
        const [inUsed, outUsed, ended, boundaries] = binding.inflateBlocksSync(inflater, input, output, primeBits);
        return { inUsed, outUsed, ended, boundaries };
      },
      crc32: (data, previous = 0) => binding.crc32(data, previous),
      findBlock: (input, fromBit) => binding.findBlock(input, fromBit),
      zlibVersion: binding.zlibVersion,
    };
  }
  return null;
}

/** The addon, or undefined when it is not built or SEEKZ_NATIVE=0 asks for the pure-Node path. */
export function nativeZlib(): NativeZlib | undefined {
  if (process.env.SEEKZ_NATIVE === '0') return undefined;
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}

/**
 * CRC-32 for the gzip index's hot paths: libdeflate's through the addon (about 6× node:zlib's
 * crc32 here, which does not use PCLMUL), or src/crc's without it.
 */
export function fastCrc32(): (data: Uint8Array, previous?: number) => number {
  return nativeZlib()?.crc32 ?? crc32;
}

/** Which zlib engine runs, for `--version -v` on every command and the bench. */
export function zlibEngine(): string {
  if (process.env.SEEKZ_NATIVE === '0') return 'node:zlib + JavaScript block walker (SEEKZ_NATIVE=0)';
  const native = nativeZlib();
  return native ? `seekz_zlib addon (zlib ${native.zlibVersion}, Z_BLOCK; libdeflate CRC-32)` : `node:zlib + JavaScript block walker (addon not loaded: ${loadError ?? 'unknown'})`;
}
