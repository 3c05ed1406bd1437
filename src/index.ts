/**
 * The library's public surface: `open` for random reads of any .gz, .xz or .zst (file, URL or Source),
 * and one function for each thing the CLIs do. Examples: the "Library" section of README.md,
 * each run as written by test/library.test.ts.
 */
export { open, type CompressedFile, type FormatName, type OpenOptions, type Target } from './open.js';
export type { FileInfo, GzipInfo, InfoOptions, XzInfo, ZstdInfo } from './info.js';
export { compressGzip, compressXz, compressZstd, type CompressGzipOptions, type CompressInput, type CompressOutput, type CompressXzOptions, type CompressZstdOptions } from './compress.js';
export type { PartialDeflateResult } from './gzip/partial-deflate.js';
export type { XzWriterResult } from './xz/writer.js';
export type { ZstdWriterResult } from './zstd/writer.js';
export { buildIndex, type BuildIndexOptions, type BuiltIndex } from './build-index.js';
export { serve, type NbdServerHandle, type ServeOptions } from './nbd/serve.js';
export { extract, patch, type ExtractOptions, type PatchInput, type Region } from './region.js';
export type { PatchEdit, PatchOptions, PatchResult } from './edit/patch.js';
export { SeekzError, type ErrorCode } from './errors.js';
export type { Source } from './source/source.js';
export { bufferSource } from './source/buffer.js';
export { fileSource } from './source/file.js';
export { httpSource, type HttpSource, type HttpSourceOptions } from './source/http.js';
export { readPartitionTable, findPartition, type Partition, type PartitionTable } from './disk/partitions.js';
