/**
 * Where a writer's bytes go: a file, stdout, a stream. Shared by every writer and decompressor
 * (gzip, xz, zstd), so it lives below all of them. With `writeAt` a writer can go back and fill in
 * what it reserved (partial-deflate's map); without, it can't.
 */
export interface Sink {
  /** Once it resolves, the sink holds no reference to `bytes`: the caller may reuse the buffer. */
  write(bytes: Uint8Array): Promise<void>;
  writeAt?(offset: number, bytes: Uint8Array): Promise<void>;
}
