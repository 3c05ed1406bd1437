/**
 * The pool's job kinds: each takes a message and returns a reply plus the buffers to transfer back
 * (when it ran on a worker thread; in process nothing is transferred).
 */
import { crc32 } from '../crc/crc32.js';
import { deflateChunkAsync } from '../deflate/chunk.js';

export interface DeflateJob {
  kind: 'deflate';
  data: Uint8Array;
  level: number;
  memLevel?: number;
}
export interface DeflateReply {
  compressed: Uint8Array;
  crc: number;
  /** The input, handed back so the writer can reuse its buffer. */
  data: Uint8Array;
}

export interface XzEncodeJob {
  kind: 'xz-encode';
  data: Uint8Array;
  preset: number;
  extreme: boolean;
  checkId: number;
  /**
   * A buffer an earlier block's compressed bytes came back in, already written out: the native
   * engine encodes into it when it is large enough, so that compressed blocks reuse a few buffers
   * instead of leaving one to the garbage collector per block.
   */
  into?: ArrayBuffer;
  /**
   * `data` is the only block in its buffer and lies behind at least encodeRoom(data.length) free
   * bytes (src/xz/block-codec.ts): the native engine writes the compressed block over the buffer
   * from its start, so a block needs one buffer, not an input and an output (`into` is then not
   * used). The reply's `compressed` is a view of it.
   */
  inPlace?: boolean;
}
export interface XzEncodeReply {
  filterCount: number;
  filterFlags: Uint8Array;
  compressed: Uint8Array;
  check: Uint8Array;
  data: Uint8Array;
}

export interface XzDecodeJob {
  kind: 'xz-decode';
  /** The block as it sits in the file: header through check, padding included. */
  bytes: Uint8Array;
  /** Its stream's check ID and its index record's unpadded size. */
  checkId: number;
  unpaddedSize: number;
  /** What the index says it decodes to; a shorter result is a failed decode. */
  expectedSize: number;
  /** For messages: the block's number and file offset. */
  block: number;
  offset: number;
  /**
   * A buffer of at least `expectedSize` bytes to decode into, moved to the worker: one an earlier
   * block came back in, already written out, so that a pass over a file reuses a few buffers
   * instead of page-faulting fresh memory for every block.
   */
  into?: ArrayBuffer;
  /**
   * Write the block to this file at this offset as it decodes, holes for its zero 4 KiB blocks,
   * instead of replying with it (the native engine only; the reply's data is then empty).
   */
  to?: { fd: number; position: number; name: string; outputOffset: number };
}
export interface XzDecodeReply {
  data: Uint8Array;
}

export interface ZstdDecodeJob {
  kind: 'zstd-decode';
  /** One whole frame. */
  frame: Uint8Array;
  /** What the index says it decodes to; any other length is a failed decode. */
  expectedSize: number;
  /** For messages: the frame's number and file offset. */
  number: number;
  offset: number;
  /** The seek table's checksum for the frame, checked too. */
  tableChecksum?: number;
}
export interface ZstdDecodeReply {
  data: Uint8Array;
}

/** Several frames' data in one buffer (seekzstd): frame i is `lengths[i]` bytes at `starts[i]`. */
export interface ZstdEncodeRunJob {
  kind: 'zstd-encode-run';
  data: Uint8Array;
  starts: number[];
  lengths: number[];
  level: number;
  /**
   * In process only (workers/in-process.ts; a worker would get a copy): a buffer an earlier run's
   * frames came back in, already written out, for this run's frames when large enough.
   */
  output?: Uint8Array;
}
export interface ZstdEncodeRunReply {
  /** One frame (content size and checksum) per length: in process, views of `output`. */
  frames: Uint8Array[];
  data: Uint8Array;
  /** In process: the buffer that holds the frames, for a later run once they are written. */
  output?: Uint8Array;
}

/** Several frames that lie in one span of the file, decoded in one message (seekzstd -d, -t). */
export interface ZstdDecodeBatchJob {
  kind: 'zstd-decode-batch';
  /** The span of the file that holds the frames. */
  bytes: Uint8Array;
  /** Where each frame's data goes, one after another; its length is their total plus one (with `to`: the largest frame plus one). */
  out: Uint8Array;
  /** Each frame: where it starts in `bytes`, and what zstd-decode takes. */
  frames: Array<{ start: number; compressedSize: number; expectedSize: number; number: number; offset: number; tableChecksum?: number }>;
  /**
   * In process only (the addon): each frame decodes at the start of `out`, is checked, and goes to
   * this file (fd -1: nowhere, a test) at `position` + the sizes of the frames before it, holes for
   * its zero 4 KiB blocks, instead of staying in `out`. `outputOffset` is `position` as messages
   * name it (an offset in the output).
   */
  to?: { fd: number; position: number; name: string; outputOffset: number };
}
export interface ZstdDecodeBatchReply {
  /** Both buffers come back for reuse; `out` holds the frames' data. */
  bytes: Uint8Array;
  out: Uint8Array;
}

export type Job = DeflateJob | XzEncodeJob | XzDecodeJob | ZstdEncodeRunJob | ZstdDecodeJob | ZstdDecodeBatchJob;
export interface ReplyOf {
  deflate: DeflateReply;
  'xz-encode': XzEncodeReply;
  'xz-decode': XzDecodeReply;
  'zstd-decode': ZstdDecodeReply;
  'zstd-encode-run': ZstdEncodeRunReply;
  'zstd-decode-batch': ZstdDecodeBatchReply;
}

export interface Done<R> {
  reply: R;
  transfer: ArrayBuffer[];
}

/**
 * A deflate job runs in process (workers/in-process.ts), with zlib on libuv's thread pool: Node's
 * own zlib, so no addon is needed and no worker thread ever gets one.
 */
export async function runDeflate(job: DeflateJob): Promise<Done<DeflateReply>> {
  const deflating = deflateChunkAsync(job.data, { level: job.level, memLevel: job.memLevel });
  const crc = crc32(job.data); // meanwhile, on this thread
  return { reply: { compressed: await deflating, crc, data: job.data }, transfer: [] };
}
