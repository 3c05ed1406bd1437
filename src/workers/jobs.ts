/**
 * What worker threads do, as plain functions: each job kind takes a message and returns a reply
 * plus the buffers to transfer back. The same functions run on the main thread in tests.
 */
import { crc32 } from '../crc/crc32.js';
import { deflateChunk, ownedBytes } from '../deflate/chunk.js';

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

export interface ZstdEncodeJob {
  kind: 'zstd-encode';
  data: Uint8Array;
  level: number;
}
export interface ZstdEncodeReply {
  /** One frame with content size and checksum. */
  compressed: Uint8Array;
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

export type Job = DeflateJob | XzEncodeJob | XzDecodeJob | ZstdEncodeJob | ZstdDecodeJob;
export interface ReplyOf {
  deflate: DeflateReply;
  'xz-encode': XzEncodeReply;
  'xz-decode': XzDecodeReply;
  'zstd-encode': ZstdEncodeReply;
  'zstd-decode': ZstdDecodeReply;
}

export interface Done<R> {
  reply: R;
  transfer: ArrayBuffer[];
}

export function runDeflate(job: DeflateJob): Done<DeflateReply> {
  const compressed = ownedBytes(deflateChunk(job.data, { level: job.level, memLevel: job.memLevel }));
  return {
    reply: { compressed, crc: crc32(job.data), data: job.data },
    transfer: [compressed.buffer as ArrayBuffer, job.data.buffer as ArrayBuffer],
  };
}
