// The library's public surface. Everything a CLI does is reachable from here.
export { SeekzError, type ErrorCode } from './errors.js';
export type { Source } from './source/source.js';
export { bufferSource } from './source/buffer.js';
export { fileSource } from './source/file.js';
export { sequentialFromSource, sequentialFromStream, type SequentialInput } from './source/sequential.js';
export { crc32, crc32Combine, crc32Patch, crc32Shift, crc32Zeros } from './crc/crc32.js';
export { partialDeflate, writerMemoryBound, type Boundary, type PartialDeflateOptions, type PartialDeflateResult, type Sink } from './gzip/partial-deflate.js';
export { openGzip, type GzipSource } from './gzip/reader.js';
export { readGzipLayout, type GzipLayout } from './gzip/layout.js';
export { patchGzip, patchGzipFromRegion, recoverIfInterrupted, type PatchEdit, type PatchResult } from './edit/patch.js';
export { readPartitionTable, findPartition, type Partition, type PartitionTable } from './disk/partitions.js';
export { createAtomicFile } from './io/atomic-file.js';
export { parseSize, parseRange } from './size.js';

import { fileSource } from './source/file.js';
import { openGzip, type GzipSource } from './gzip/reader.js';

/** Opens a compressed file for random reads: `const disk = await open('disk.img.gz'); await disk.read(offset, length)`. */
export async function open(path: string): Promise<GzipSource> {
  return openGzip(await fileSource(path));
}
