/**
 * One xz block in, one xz block out, through liblzma (the node-liblzma binding).
 *
 * liblzma's buffer API works on whole .xz streams, so a block is encoded as a one-block stream,
 * and the container parts are taken apart here: the writer then puts the compressed data behind a
 * block header of its own that records both sizes. To decode a block, it is wrapped back into a
 * one-block stream with a one-record index; liblzma then checks everything it would check in the
 * original file: the block header CRC, the sizes, and the block's integrity check.
 *
 * node-liblzma rather than lzma-native: measured here on 64 MiB of disk-image data at -6,
 * node-liblzma (liblzma 5.4.1) took 19.2 s and lzma-native (liblzma 5.2.3) 36.3 s; Debian's
 * xz 5.4.1 took 16.9 s. node-liblzma is LGPL-3.0 (loaded as a separate module; seekz stays MIT).
 */
import { createRequire } from 'node:module';
import { fail } from '../errors.js';
import type { Done, XzDecodeJob, XzDecodeReply, XzEncodeJob, XzEncodeReply } from '../workers/jobs.js';
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

interface Liblzma {
  xzSync(data: Buffer, options: { preset: number; check: number; chunkSize?: number }): Buffer;
  unxzSync(data: Buffer, options?: { chunkSize?: number }): Buffer;
  preset: { EXTREME: number };
}
const liblzma = createRequire(import.meta.url)('node-liblzma') as Liblzma;

const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

export function runXzEncode(job: XzEncodeJob): Done<XzEncodeReply> {
  const preset = job.preset | (job.extreme ? liblzma.preset.EXTREME : 0);
  const stream = new Uint8Array(liblzma.xzSync(asBuffer(job.data), { preset, check: job.checkId, chunkSize: Math.max(4096, job.data.length + 65536) }));
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

export function runXzDecode(job: XzDecodeJob): Done<XzDecodeReply> {
  let data: Uint8Array;
  try {
    // One output buffer of the block's size, instead of 8 KiB pieces joined at the end.
    data = new Uint8Array(liblzma.unxzSync(asBuffer(job.stream), { chunkSize: Math.max(4096, job.expectedSize) }));
  } catch (error) {
    throw fail('XZ_DECODE_FAILED', job.block, job.offset, (error as Error).message.toLowerCase());
  }
  // liblzma's buffer API returns what it decoded when the input ends early, without an error.
  if (data.length !== job.expectedSize) {
    throw fail('XZ_DECODE_FAILED', job.block, job.offset, `it decodes to ${data.length} bytes, the index says ${job.expectedSize}; the block is damaged or truncated`);
  }
  if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = data.slice();
  return { reply: { data }, transfer: [data.buffer as ArrayBuffer] };
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
