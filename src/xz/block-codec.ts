/**
 * One xz block in, one xz block out, through liblzma (the node-liblzma binding).
 *
 * liblzma's .xz coders work on whole streams, so a block is encoded as a one-block stream,
 * and the container parts are taken apart here: the writer then puts the compressed data behind a
 * block header of its own that records both sizes. To decode a block, it is wrapped back into a
 * one-block stream with a one-record index; liblzma then checks everything it would check in the
 * original file: the block header CRC, the sizes, and the block's integrity check.
 * The coder is driven slice by slice (codeInSlices), not through the binding's one-call buffer
 * API, so that a worker can stop between slices when the process gets a signal.
 *
 * node-liblzma rather than lzma-native: measured here on 64 MiB of disk-image data at -6,
 * node-liblzma (liblzma 5.4.1) took 19.2 s and lzma-native (liblzma 5.2.3) 36.3 s; Debian's
 * xz 5.4.1 took 16.9 s. node-liblzma is LGPL-3.0 (loaded as a separate module; seekz stays MIT).
 */
import { createRequire } from 'node:module';
import { getSystemErrorName } from 'node:util';
import { fail } from '../errors.js';
import { NATIVE_CODES, nativeXz, type NativeXz } from '../native/xz-engine.js';
import type { Done, Job, XzDecodeJob, XzDecodeReply, XzEncodeJob, XzEncodeReply } from '../workers/jobs.js';
import type { InProcessRunner } from '../workers/in-process.js';
import {
  STREAM_FOOTER_SIZE,
  STREAM_HEADER_SIZE,
  buildIndex,
  buildStreamFooter,
  buildStreamHeader,
  checkSize,
  padding4,
  parseBlockHeader,
  parseIndex,
  parseStreamFooter,
} from './format.js';

/** The native liblzma stream behind node-liblzma's Xz and Unxz classes, driven here directly. */
interface NativeStream {
  /** One lzma_code() call; returns [lzma_ret, avail_in, avail_out]. Errors are return codes, never throws. */
  codeSync(action: number, input: Buffer | null, inOffset: number, inLength: number, output: Buffer, outOffset: number): [number, number, number];
}
interface Liblzma {
  createXz(options: { preset: number; check: number }): { lzma: NativeStream; close(): void };
  createUnxz(): { lzma: NativeStream; close(): void };
}
// Loaded on first use: the native engine never needs it (about 20 ms of CPU each).
let loadedLiblzma: Liblzma | undefined;
const liblzma = (): Liblzma => (loadedLiblzma ??= createRequire(import.meta.url)('node-liblzma') as Liblzma);
/** lzma/container.h's LZMA_PRESET_EXTREME. */
const PRESET_EXTREME = 0x80000000;

// liblzma's ABI (lzma/base.h): actions and return codes.
const LZMA_RUN = 0;
const LZMA_FINISH = 3;
const LZMA_OK = 0;
const LZMA_STREAM_END = 1;
/** lzma_ret codes as xz words them (xz's message.c), lowercase. */
const LZMA_MESSAGES: Record<number, string> = {
  5: 'memory allocation failed',
  6: 'memory usage limit reached',
  7: 'file format not recognized',
  8: 'unsupported options',
  9: 'compressed data is corrupt',
  10: 'unexpected end of input',
};

/**
 * How much one native call may do. A thread is inside liblzma for one slice at a time and looks at
 * `shouldStop` between slices, so a signal waits for at most one slice, never a whole block
 * (a 16 MiB block at -6 takes seconds; 64 KiB of input takes milliseconds even at -9e).
 * Terminating a thread while it is inside liblzma aborts the process, so stopping is cooperative.
 * Pinned by test/trust-xz-signals.test.ts ("signals").
 */
const ENCODE_SLICE = 64 * 1024;
const DECODE_SLICE_IN = 64 * 1024;
const DECODE_SLICE_OUT = 4 * 2 ** 20;

/** The worker pool's shared stop flag (workers/pool.ts): nonzero once a signal stops the pool. */
export type StopFlag = Int32Array | undefined;
type ShouldStop = () => boolean;
const stopper = (stop: StopFlag): ShouldStop => () => stop !== undefined && Atomics.load(stop, 0) !== 0;

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * Runs `input` through a liblzma stream in slices, into `output`. An encoder's output grows when it
 * needs more; a decoder's (`fixedOutput`) is exactly what the index promised, and one more byte
 * is an error. Returns the output used, or an error text.
 */
function codeInSlices(
  stream: NativeStream,
  input: Uint8Array,
  output: Buffer,
  slices: { input: number; output: number; fixedOutput: boolean },
  shouldStop: ShouldStop,
): { output: Buffer; length: number } | { error: string } {
  const inBuffer = asBuffer(input);
  const spare = Buffer.alloc(1);
  let inAt = 0;
  let outAt = 0;
  for (;;) {
    if (shouldStop()) throw fail('INTERRUPTED', 'a signal');
    if (outAt === output.length && !slices.fixedOutput) {
      const grown = Buffer.allocUnsafe(output.length * 2);
      output.copy(grown, 0, 0, outAt);
      output = grown;
    }
    const full = outAt === output.length;
    const inEnd = Math.min(input.length, inAt + slices.input);
    const outEnd = Math.min(output.length, outAt + slices.output);
    const action = inEnd === input.length ? LZMA_FINISH : LZMA_RUN;
    // A full decoder output still lets liblzma read the check, index and footer; a byte in `spare` means more data.
    const [status, inLeft, outLeft] = full
      ? stream.codeSync(action, inBuffer, inAt, inEnd - inAt, spare, 0)
      : stream.codeSync(action, inBuffer, inAt, inEnd - inAt, output.subarray(0, outEnd), outAt);
    inAt = inEnd - inLeft;
    if (full && outLeft === 0) return { error: `it decodes to more than the ${output.length} bytes the index says` };
    if (!full) outAt = outEnd - outLeft;
    if (status === LZMA_STREAM_END) return { output, length: outAt };
    if (status !== LZMA_OK) return { error: LZMA_MESSAGES[status] ?? `liblzma error ${status}` };
  }
}

/**
 * An xz job, as a worker thread runs it and as the pool runs it in process (workers/in-process.ts):
 * with the addon, the block is coded on libuv's thread pool and this thread only waits; with
 * node-liblzma (SEEKZ_NATIVE=0, or no addon), on this thread, which is then a worker's.
 */
export function runXzJob(job: XzEncodeJob | XzDecodeJob, stop?: StopFlag): Promise<Done<XzEncodeReply | XzDecodeReply>> {
  return job.kind === 'xz-encode' ? runXzEncode(job, stop) : runXzDecode(job, stop);
}

/** The pool's in-process runner for xz jobs (workers/in-process.ts): only with the addon. */
export function xzRunner(): InProcessRunner | undefined {
  if (!nativeXz()) return undefined;
  return Object.assign((job: Job, stop: Int32Array) => runXzJob(job as XzEncodeJob | XzDecodeJob, stop), {
    // Only a block decoded straight into the output file touches more than its own buffers: a
    // signal's stop waits for that one (the caller truncates the file after it), not the others.
    detached: (job: Job) => job.kind === 'xz-encode' || (job as XzDecodeJob).to === undefined,
  });
}

/**
 * Frees the addon's idle coders (decoders and encoders no job holds: a -9 encoder is 674 MiB), for
 * a process that goes on after a file is done; the next job makes new ones.
 */
export function releaseXzCoders(): void {
  nativeXz()?.releaseCoders();
}

export async function runXzEncode(job: XzEncodeJob, stop?: StopFlag): Promise<Done<XzEncodeReply>> {
  const preset = job.preset | (job.extreme ? PRESET_EXTREME : 0);
  const native = nativeXz();
  if (native) return nativeEncode(native, job, preset, stop);
  const engine = liblzma().createXz({ preset, check: job.checkId });
  let coded: ReturnType<typeof codeInSlices>;
  try {
    const output = Buffer.allocUnsafe(job.data.length + 65536);
    coded = codeInSlices(engine.lzma, job.data, output, { input: ENCODE_SLICE, output: output.length, fixedOutput: false }, stopper(stop));
  } finally {
    engine.close();
  }
  if ('error' in coded) throw new Error(`liblzma could not compress: ${coded.error}`);
  const stream = new Uint8Array(coded.output.buffer, coded.output.byteOffset, coded.length);
  // stream = stream header | block header | compressed data | padding | check | index | footer
  const footer = parseStreamFooter(stream.subarray(stream.length - STREAM_FOOTER_SIZE), stream.length - STREAM_FOOTER_SIZE);
  const indexStart = stream.length - STREAM_FOOTER_SIZE - footer.indexSize;
  const [record] = parseIndex(stream.subarray(indexStart, indexStart + footer.indexSize), indexStart);
  const header = parseBlockHeader(stream.subarray(STREAM_HEADER_SIZE), STREAM_HEADER_SIZE);
  const size = checkSize(job.checkId);
  const compressedSize = record!.unpaddedSize - header.size - size;
  const dataStart = STREAM_HEADER_SIZE + header.size;
  const checkStart = dataStart + compressedSize + padding4(compressedSize);
  // Copies, so the large liblzma output buffer is not kept alive by small views.
  const compressed = stream.slice(dataStart, dataStart + compressedSize);
  const check = stream.slice(checkStart, checkStart + size);
  return {
    reply: { filterCount: header.filterCount, filterFlags: header.filterFlags, compressed, check, data: job.data },
    transfer: [compressed.buffer, job.data.buffer as ArrayBuffer],
  };
}

/**
 * Room an encoded block may take beyond its input: LZMA2 adds at most 3 bytes per 64 KiB of
 * incompressible input, plus its end marker, the padding and the check. A block encoded in place
 * (XzEncodeJob.inPlace) needs this much free in front of its data.
 */
export function encodeRoom(length: number): number {
  return (length >> 10) + 1024;
}

/**
 * native/xz/seekz_xz.c's encodeBlock: the same filter chain and so the same bytes as the stream path below,
 * but with encoders kept from block to block (a match finder, 94 MiB at -6, is allocated once per
 * job in flight, not freed into the heap and page-faulted in again for every block). In place, the
 * compressed block is written over the front of the input's own buffer; otherwise into a fresh
 * buffer (or one lent back) that goes to the writer whole, uncopied: its pages past the
 * compressed size are never touched, so they take no memory.
 */
async function nativeEncode(native: NativeXz, job: XzEncodeJob, preset: number, stop: StopFlag): Promise<Done<XzEncodeReply>> {
  const { data } = job;
  const room = encodeRoom(data.length);
  const inPlace = job.inPlace === true && data.byteOffset >= room;
  const output = inPlace
    ? new Uint8Array(data.buffer, 0, data.byteOffset + data.length)
    : job.into && job.into.byteLength >= data.length + room
      ? new Uint8Array(job.into)
      : // Not zero-filled: the addon writes the compressed data, padding and check, and only those
        // are read; zero-filling would touch (and keep resident) the whole bound for a block that
        // compresses to a fraction of it.
        new Uint8Array(Buffer.allocUnsafeSlow(data.length + room).buffer);
  const result = await native.encodeBlock(data, preset >>> 0, job.checkId, output, stop ?? null);
  if (result === -NATIVE_CODES.interrupted) throw fail('INTERRUPTED', 'a signal');
  if (result < 0) throw new Error(`liblzma could not compress: ${LZMA_MESSAGES[-result] ?? `liblzma error ${-result}`}`);
  const compressed = output.subarray(0, result);
  const checkAt = result + padding4(result);
  const check = output.slice(checkAt, checkAt + checkSize(job.checkId));
  return {
    reply: { filterCount: 1, filterFlags: native.filterFlags(preset >>> 0), compressed, check, data },
    transfer: inPlace ? [data.buffer as ArrayBuffer] : [output.buffer as ArrayBuffer, data.buffer as ArrayBuffer],
  };
}

/**
 * Decodes one block, as it sits in the file, into exactly `expectedSize` bytes. Either engine
 * checks the block header CRC, the block's sizes against its header and against the index record
 * (so a forged record fails here), and the block's integrity check; a block that decodes to another
 * length than the index says is an error either way. The native engine decodes straight into the
 * reply's buffer; node-liblzma gets the block wrapped back into a one-block stream.
 */
export async function runXzDecode(job: XzDecodeJob, stop?: StopFlag): Promise<Done<XzDecodeReply>> {
  if (job.to) return decodeToFile(job, job.to, stop);
  // One output buffer of the block's size (the caller's, when it lent one); it owns its memory, so
  // it can be transferred, and it goes out only when the engine has filled all of it.
  const output = job.into && job.into.byteLength >= job.expectedSize ? Buffer.from(job.into, 0, job.expectedSize) : Buffer.allocUnsafeSlow(job.expectedSize);
  const native = nativeXz();
  const error = native ? codeMessage(job, await native.decodeBlock(job.bytes, job.checkId, job.unpaddedSize, output, stop ?? null)) : fallbackDecode(job, output, stop);
  if (error !== undefined) throw fail('XZ_DECODE_FAILED', job.block, job.offset, error);
  const data = new Uint8Array(output.buffer, 0, job.expectedSize);
  return { reply: { data }, transfer: [data.buffer as ArrayBuffer] };
}

const tooLittle = (job: XzDecodeJob, length: number) =>
  `it decodes to ${length} bytes, the index says ${job.expectedSize}; the block is damaged or truncated`;

/**
 * The block straight into the output file (native/xz/seekz_xz.c's decodeBlockToFile), written from
 * the thread that decodes it, as it decodes. A failed write is the output's error (OUTPUT_FAILED);
 * a bad block is the block's, as with runXzDecode. Either way the caller drops what was written.
 */
async function decodeToFile(job: XzDecodeJob, to: NonNullable<XzDecodeJob['to']>, stop: StopFlag): Promise<Done<XzDecodeReply>> {
  const native = nativeXz();
  if (!native) throw new Error('seekz: an xz block was sent to be written by the native engine, which is not loaded');
  const code = await native.decodeBlockToFile(job.bytes, job.checkId, job.unpaddedSize, job.expectedSize, to.fd, to.position, stop ?? null);
  if (code >= NATIVE_CODES.writeErrno) {
    const name = getSystemErrorName(NATIVE_CODES.writeErrno - code);
    throw fail('OUTPUT_FAILED', to.name, to.outputOffset, `${name === 'ENOSPC' ? 'no space left on device' : 'write failed'} (${name})`);
  }
  const error = codeMessage(job, code);
  if (error !== undefined) throw fail('XZ_DECODE_FAILED', job.block, job.offset, error);
  return { reply: { data: new Uint8Array(0) }, transfer: [] };
}

/** What a native decode's return code says: undefined when the block checked out, else the error text. */
function codeMessage(job: XzDecodeJob, code: number): string | undefined {
  if (code === 0) return undefined;
  if (code === NATIVE_CODES.interrupted) throw fail('INTERRUPTED', 'a signal');
  if (code === NATIVE_CODES.tooMuchOutput) return `it decodes to more than the ${job.expectedSize} bytes the index says`;
  if (code === NATIVE_CODES.tooLittleOutput) return `it decodes to fewer bytes than the ${job.expectedSize} the index says; the block is damaged or truncated`;
  if (code === NATIVE_CODES.inputLeft) return `it ends before the ${job.unpaddedSize} bytes the index gives it`;
  return LZMA_MESSAGES[code] ?? `liblzma error ${code}`;
}

function fallbackDecode(job: XzDecodeJob, output: Buffer, stop: StopFlag): string | undefined {
  const stream = singleBlockStream(job.checkId, job.bytes, job.unpaddedSize, job.expectedSize);
  const engine = liblzma().createUnxz();
  let coded: ReturnType<typeof codeInSlices>;
  try {
    coded = codeInSlices(engine.lzma, stream, output, { input: DECODE_SLICE_IN, output: DECODE_SLICE_OUT, fixedOutput: true }, stopper(stop));
  } finally {
    engine.close();
  }
  if ('error' in coded) return coded.error;
  return coded.length === job.expectedSize ? undefined : tooLittle(job, coded.length);
}

/**
 * Wraps a block as it sits in a file (header through check, `blockBytes`) into a one-block
 * stream that liblzma can decode on its own.
 */
export function singleBlockStream(checkId: number, blockBytes: Uint8Array, unpaddedSize: number, uncompressedSize: number): Uint8Array {
  const header = buildStreamHeader(checkId);
  const index = buildIndex([{ unpaddedSize, uncompressedSize }]);
  const footer = buildStreamFooter(checkId, index.length);
  const stream = new Uint8Array(header.length + blockBytes.length + index.length + footer.length);
  stream.set(header, 0);
  stream.set(blockBytes, header.length);
  stream.set(index, header.length + blockBytes.length);
  stream.set(footer, header.length + blockBytes.length + index.length);
  return stream;
}
