/**
 * One zstd frame in, one out: libzstd through the seekz_zstd addon when it is built, else fzstd
 * (pure JavaScript, decode only). Both paths check every frame's content checksum: libzstd does it
 * itself, and after fzstd (which does not) xxh64.ts does. Compressing needs the addon.
 * Pinned by test/zstd.test.ts ("both codec paths").
 *
 * The zstd job kinds run two ways: runZstdJob on a worker thread (or this one), and, with the
 * addon, zstdRunner on this thread with libzstd on libuv's thread pool (workers/in-process.ts). Both
 * make the same checks in the same frame order through checkFrame, so a damaged file gives the
 * same first error either way (pinned by test/zstd-async.test.ts).
 */
import { createRequire } from 'node:module';
import { getSystemErrorMap } from 'node:util';
import { fail, SeekzError } from '../errors.js';
import { nativeZstd, type NativeZstd } from '../native/zstd.js';
import type { InProcessRunner } from '../workers/in-process.js';
import type { Done, Job, ZstdDecodeBatchJob, ZstdDecodeBatchReply, ZstdDecodeJob, ZstdDecodeReply, ZstdEncodeRunJob, ZstdEncodeRunReply } from '../workers/jobs.js';
import { frameChecksum, MAX_FRAME_HEADER, parseFrameHeader, type FrameHeader } from './format.js';
import { xxh64Low32 } from './xxh64.js';

// fzstd loads only where it is used (no addon): a worker with libzstd does not pay for it.
let fzstd: typeof import('fzstd') | undefined;
const fzstdDecompress = (bytes: Uint8Array) => (fzstd ??= createRequire(import.meta.url)('fzstd') as typeof import('fzstd')).decompress(bytes);

export function zstdCodecName(): 'libzstd' | 'fzstd' {
  return nativeZstd() ? 'libzstd' : 'fzstd';
}

/** One frame with content size and checksum at `level` (1 to 22). */
export function compressFrame(data: Uint8Array, level: number): Uint8Array {
  const native = nativeZstd();
  if (!native) throw fail('ZSTD_UNSUPPORTED', 'compressing needs the seekz_zstd addon over libzstd (apt-get install libzstd-dev, then npm run build)');
  return new Uint8Array(native.compress(data, level));
}

/** The most compressFrame can make of `size` bytes (libzstd's bound; without the addon, nothing is compressed). */
export function frameBound(size: number): number {
  return nativeZstd()?.compressBound(size) ?? size;
}

/**
 * Decodes one whole frame that must give exactly `expectedSize` bytes; `frame` and `offset` (its
 * number and file offset) name it in errors. With `into` (at least expectedSize + 1 bytes: the one
 * more shows a frame that decodes to more) the data lands there, and the result is a view of it:
 * a whole-file pass reuses its buffers instead of faulting in fresh pages for every frame.
 */
export function decompressFrame(bytes: Uint8Array, expectedSize: number, frame: number, offset: number, tableChecksum?: number, into?: Uint8Array): Uint8Array {
  const native = nativeZstd();
  let data: Uint8Array;
  const header = parseFrameHeader(bytes.subarray(0, MAX_FRAME_HEADER), offset);
  if (native) {
    try {
      if (into) data = into.subarray(0, native.decompressInto(bytes, into.subarray(0, expectedSize + 1)));
      else {
        const result = native.decompress(bytes, expectedSize);
        data = new Uint8Array(result[0].buffer, result[0].byteOffset, result[1]);
      }
    } catch (error) {
      throw decodeError(error, frame, offset);
    }
  } else {
    try {
      data = fzstdDecompress(bytes); // sized by the frame; a given buffer comes back whole
    } catch (error) {
      throw decodeError(error, frame, offset);
    }
    // fzstd skips the content checksum: hold it against the frame's last four bytes here.
    if (data.length === expectedSize && header.checksum) {
      const found = xxh64Low32(data);
      if (found !== frameChecksum(bytes)) throw fail('ZSTD_CHECKSUM', frame, offset, frameChecksum(bytes), found);
    }
    if (into && data.length === expectedSize) {
      into.set(data);
      data = into.subarray(0, expectedSize);
    }
  }
  return checkFrame(bytes, header, data, { expectedSize, number: frame, offset, tableChecksum });
}

type FrameClaims = Pick<ZstdDecodeBatchJob['frames'][number], 'expectedSize' | 'number' | 'offset' | 'tableChecksum'>;

/** What a frame decoded by libzstd (its own checksum verified) must still pass: its size, and the seek table's checksum. */
function checkFrame(bytes: Uint8Array, header: FrameHeader, data: Uint8Array, { expectedSize, number, offset, tableChecksum }: FrameClaims): Uint8Array {
  if (data.length !== expectedSize) throw fail('ZSTD_SIZE_MISMATCH', number, offset, expectedSize, data.length);
  if (tableChecksum !== undefined) {
    // The frame's own checksum was verified above; the table's must be the same number. A frame
    // without one (the reference compressor writes none) is hashed here.
    const found = header.checksum ? frameChecksum(bytes) : xxh64Low32(data);
    if (found !== tableChecksum) throw fail('ZSTD_CHECKSUM', number, offset, tableChecksum, found);
  }
  return data;
}

function decodeError(error: unknown, frame: number, offset: number): SeekzError {
  if (error instanceof SeekzError) return error;
  const message = (error as Error).message;
  if (/checksum/i.test(message)) return fail('ZSTD_DECODE_FAILED', frame, offset, `${message.toLowerCase()}; the file is damaged`);
  return fail('ZSTD_DECODE_FAILED', frame, offset, message.toLowerCase());
}

/**
 * Decodes a stream of frames of unknown sizes (a single-frame file without a usable index, stdin):
 * each call returns what it decoded so far. Needs the addon: fzstd's stream decoder does not check
 * the content checksum, and no byte goes out unchecked.
 */
export function streamDecoder(): { push(input: Uint8Array): Uint8Array[]; ended(): boolean } {
  const native = nativeZstd();
  if (!native) throw fail('ZSTD_UNSUPPORTED', 'streaming a .zst without content sizes needs the seekz_zstd addon over libzstd (npm run build), or recompress it with seekzstd');
  const handle = native.streamCreate();
  let status = 0;
  return {
    push(input) {
      try {
        const [chunks, last] = native.streamPush(handle, input);
        status = last;
        return chunks;
      } catch (error) {
        throw fail('ZSTD_DECODE_FAILED', 0, 0, (error as Error).message.toLowerCase());
      }
    },
    ended: () => status === 0,
  };
}

/** The worker side of the zstd job kinds: buffers go back by transfer, the input for reuse. */
export function runZstdJob(job: ZstdEncodeRunJob | ZstdDecodeJob | ZstdDecodeBatchJob): Done<ZstdEncodeRunReply | ZstdDecodeReply | ZstdDecodeBatchReply> {
  if (job.kind === 'zstd-encode-run') {
    const frames = encodeRun(job.data, job.starts, job.lengths, job.level);
    return { reply: { frames, data: job.data }, transfer: [...frames.map((frame) => frame.buffer as ArrayBuffer), job.data.buffer as ArrayBuffer] };
  }
  if (job.kind === 'zstd-decode-batch') {
    if (job.to) throw new Error('seekz: a zstd run to be written by the addon was sent to a worker');
    decodeBatch(job);
    return { reply: { bytes: job.bytes, out: job.out }, transfer: [job.bytes.buffer as ArrayBuffer, job.out.buffer as ArrayBuffer] };
  }
  const data = decompressFrame(job.frame, job.expectedSize, job.number, job.offset, job.tableChecksum);
  return { reply: { data }, transfer: [data.buffer as ArrayBuffer] };
}

/**
 * The in-process runner of the zstd job kinds (undefined without the addon): libzstd works on
 * libuv's thread pool while this thread reads and writes. Nothing is transferred: the buffers
 * come back as they went.
 */
export function zstdRunner(): InProcessRunner | undefined {
  const native = nativeZstd();
  if (!native) return undefined;
  // Detached: a zstd job that writes only into its own buffers need not be waited for by a
  // signal's stop; it ends at its next look at the stop flag anyway. One that writes a file (a
  // run's `to`) is waited for, one frame at most: the output's cleanup (a temp file removed, a
  // stdout truncated back) must come after its last write.
  const run: InProcessRunner = async (job, stop) => {
    if (job.kind === 'zstd-encode-run') {
      const { data, starts, lengths, level } = job;
      const room = lengths.reduce((sum, length) => sum + native.compressBound(length), 0);
      const output = job.output && job.output.length >= room ? job.output : new Uint8Array(room);
      const sizes = new Float64Array(lengths.length);
      const layout = Float64Array.from(lengths.flatMap((length, index) => [starts[index]!, length]));
      if (!(await native.compressRunAsync(data, layout, level, output, sizes, stop))) throw fail('INTERRUPTED', 'a signal');
      let at = 0;
      const frames = Array.from(sizes, (size) => output.subarray(at, (at += size)));
      return { reply: { frames, data, output } satisfies ZstdEncodeRunReply, transfer: [] };
    }
    if (job.kind === 'zstd-decode-batch') {
      await decodeBatchAsync(native, job, stop);
      return { reply: { bytes: job.bytes, out: job.out } satisfies ZstdDecodeBatchReply, transfer: [] };
    }
    if (job.kind === 'zstd-decode') {
      // Not zero-filled first: libzstd writes every byte kept (the one more catches a longer frame).
      const out = new Uint8Array(Buffer.allocUnsafeSlow(job.expectedSize + 1).buffer);
      const { frame, expectedSize, number, offset, tableChecksum } = job;
      await decodeBatchAsync(native, { bytes: frame, out, frames: [{ start: 0, compressedSize: frame.length, expectedSize, number, offset, tableChecksum }] }, stop);
      return { reply: { data: out.subarray(0, expectedSize) } satisfies ZstdDecodeReply, transfer: [] };
    }
    throw new Error(`seekz: ${job.kind} is not a zstd job`);
  };
  return Object.assign(run, { detached: (job: Job) => !(job.kind === 'zstd-decode-batch' && job.to && job.to.fd >= 0) });
}

/**
 * What the addon checks of a frame after its decode, when it writes the frame itself (see
 * decompressBatchAsync): -1 nothing more, -2 the seek table's checksum differs from the frame's own
 * (which libzstd verifies against the data), else the table's checksum, held against XXH64 of the
 * data of a frame that has none. The same rule as checkFrame, in the addon's terms.
 */
function tableCheck(bytes: Uint8Array, header: FrameHeader, tableChecksum: number | undefined): number {
  if (tableChecksum === undefined) return -1;
  if (!header.checksum) return tableChecksum;
  return frameChecksum(bytes) === tableChecksum ? -1 : -2;
}

/**
 * decodeBatch on libuv's thread pool. Each frame's header is parsed here first, as decompressFrame
 * does; libzstd decodes up to the first bad header and stops at the first frame that fails; then
 * the frames are checked in order, so the first error is the one decodeBatch would throw.
 *
 * With `to`, the addon makes checkFrame's checks itself and writes each frame once they pass (the
 * bytes leave while still in that core's cache, and `out` holds one frame); it stops at the first
 * that fails, whose data it leaves in `out`, so checkFrame names the failure as without `to`.
 */
async function decodeBatchAsync(native: NativeZstd, { bytes, out, frames, to }: Pick<ZstdDecodeBatchJob, 'bytes' | 'out' | 'frames' | 'to'>, stop: Int32Array): Promise<void> {
  const headers: Array<FrameHeader | Error> = [];
  for (const frame of frames) {
    try {
      headers.push(parseFrameHeader(bytes.subarray(frame.start, frame.start + Math.min(MAX_FRAME_HEADER, frame.compressedSize)), frame.offset));
    } catch (error) {
      headers.push(error as Error);
      break;
    }
  }
  const decodable = headers[headers.length - 1] instanceof Error ? headers.length - 1 : headers.length;
  const layout = new Float64Array(decodable * 3);
  for (let index = 0; index < decodable; index++) layout.set([frames[index]!.start, frames[index]!.compressedSize, frames[index]!.expectedSize], index * 3);
  const compressed = (frame: ZstdDecodeBatchJob['frames'][number]) => bytes.subarray(frame.start, frame.start + frame.compressedSize);
  const checks = to && Float64Array.from({ length: decodable }, (_, index) => tableCheck(compressed(frames[index]!), headers[index] as FrameHeader, frames[index]!.tableChecksum));
  const [done, size, error, stopped, writeErrno] = await (checks ? native.decompressBatchAsync(bytes, out, layout, stop, checks, to!.fd, to!.position) : native.decompressBatchAsync(bytes, out, layout, stop));
  if (stopped) throw fail('INTERRUPTED', 'a signal');
  let at = 0;
  for (let index = 0; index < Math.min(frames.length, done + 1); index++) {
    const frame = frames[index]!;
    const header = headers[index]!;
    if (header instanceof Error) throw header;
    if (index === done && error !== undefined) throw decodeError(new Error(error), frame.number, frame.offset);
    if (to && index < done) {
      at += frame.expectedSize; // checked and written by the addon
      continue;
    }
    if (to && writeErrno) {
      const [code, message] = getSystemErrorMap().get(-writeErrno) ?? ['EIO', 'i/o error'];
      throw fail('OUTPUT_FAILED', to.name, to.outputOffset + at, `${message} (${code})`);
    }
    const data = to ? out.subarray(0, size!) : out.subarray(at, at + (index === done ? size! : frame.expectedSize));
    checkFrame(compressed(frame), header, data, frame);
    if (to) throw new Error(`seekz: the addon stopped at frame ${frame.number}, which checks out here`);
    at += frame.expectedSize;
  }
}

/** Frame i of a run is `lengths[i]` bytes at `starts[i]` in `data`: each becomes one frame. */
export function encodeRun(data: Uint8Array, starts: readonly number[], lengths: readonly number[], level: number): Uint8Array[] {
  return lengths.map((length, index) => compressFrame(data.subarray(starts[index]!, starts[index]! + length), level));
}

/**
 * Decodes a run of frames, each into its place in `out` (frame i's data right after frame i-1's;
 * `out` has one byte more than the total, the room that catches a frame decoding to more).
 */
export function decodeBatch({ bytes, out, frames }: Pick<ZstdDecodeBatchJob, 'bytes' | 'out' | 'frames'>): void {
  let at = 0;
  for (const frame of frames) {
    const compressed = bytes.subarray(frame.start, frame.start + frame.compressedSize);
    decompressFrame(compressed, frame.expectedSize, frame.number, frame.offset, frame.tableChecksum, out.subarray(at));
    at += frame.expectedSize;
  }
}
