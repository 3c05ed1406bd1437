/**
 * Which engine decodes xz blocks: seekz's own addon (native/xz/seekz_xz.c, built by node-gyp against
 * Debian's liblzma when `npm ci`, `npm test` or `npm run build` runs scripts/ensure-deps.mjs),
 * or node-liblzma when the addon is missing or SEEKZ_NATIVE=0 asks for it. Both verify the same
 * things (block header CRC, sizes against the index, the block's check); the addon decodes into the
 * caller's buffer with no wrapping and no copies, and reuses its dictionary between blocks.
 * Parsers stay free of fs: this module only resolves a file name for require().
 */
import { createRequire } from 'node:module';

/**
 * The addon's functions (native/xz/seekz_xz.c). The block verbs run on libuv's thread pool and
 * resolve to their code; the buffers given to them must stay untouched until then.
 */
export interface NativeXz {
  /**
   * Decodes one block (header through check, as in the file) into `output`, whose length is the
   * index's uncompressed size. Returns 0, an lzma_ret code, or one of NATIVE_CODES. Reads `stop`
   * between slices and gives up when it is nonzero.
   */
  decodeBlock(input: Uint8Array, checkId: number, unpaddedSize: number, output: Uint8Array, stop: Int32Array | null): Promise<number>;
  /**
   * As decodeBlock, for a block of `size` bytes, written to `fd` at `position` (pwrite) as it is
   * decoded, 256 KiB at a time, whole zero 4 KiB blocks left as holes. Also returns
   * NATIVE_CODES.writeErrno + errno when a write fails.
   */
  decodeBlockToFile(input: Uint8Array, checkId: number, unpaddedSize: number, size: number, fd: number, position: number, stop: Int32Array | null): Promise<number>;
  /**
   * Encodes `input` as one block's LZMA2 data at `preset` (extreme flag included): writes the
   * compressed data, block padding and check into `output`; returns the compressed size, or minus
   * an lzma_ret or NATIVE_CODES code. Encoders are kept between blocks, as many as ever ran at once.
   */
  encodeBlock(input: Uint8Array, preset: number, checkId: number, output: Uint8Array, stop: Int32Array | null): Promise<number>;
  /** Frees the decoders and encoders no job holds (a -9 encoder is 674 MiB); later jobs make new ones. */
  releaseCoders(): void;
  /** The block header's Filter Flags for encodeBlock's filter chain at `preset`. */
  filterFlags(preset: number): Uint8Array;
  liblzmaVersion(): string;
}

/** Codes beyond lzma_ret's that decodeBlock returns (native/xz/seekz_xz.c). */
export const NATIVE_CODES = { interrupted: 100, tooMuchOutput: 101, tooLittleOutput: 102, inputLeft: 103, writeErrno: 10000 } as const;

/** The environment variable that forces the fallback: SEEKZ_NATIVE=0. */
export const NATIVE_SWITCH = 'SEEKZ_NATIVE';

// From src/native (tests) the package root is two levels up; from dist/src/native, three.
const CANDIDATES = ['../../build/Release/seekz_xz.node', '../../../build/Release/seekz_xz.node'];

let loaded: { native?: NativeXz; why: string } | undefined;

function load(): { native?: NativeXz; why: string } {
  if (process.env[NATIVE_SWITCH] === '0') return { why: `${NATIVE_SWITCH}=0` };
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const candidate of CANDIDATES) {
    try {
      return { native: require(candidate) as NativeXz, why: candidate };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') errors.push((error as Error).message.split('\n')[0]!);
    }
  }
  return { why: errors[0] ?? 'the addon is not built (npm run build builds it; it needs gcc and liblzma-dev)' };
}

/** The addon, or undefined when the fallback runs. Loaded once per thread. */
export function nativeXz(): NativeXz | undefined {
  loaded ??= load();
  return loaded.native;
}

/** One line per codec, for `--version -v` on every command. */
export function describeEngines(): { xz: string } {
  const native = nativeXz();
  return {
    xz: native
      ? `native addon seekz_xz (liblzma ${native.liblzmaVersion()}); ${NATIVE_SWITCH}=0 selects node-liblzma`
      : `node-liblzma (fallback: ${loaded!.why})`,
  };
}
