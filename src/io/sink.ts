/**
 * Where a writer's bytes go: a file, stdout, a stream. Shared by every writer and decompressor
 * (gzip, xz, zstd), so it lives below all of them. With `writeAt` a writer can go back and fill in
 * what it reserved (partial-deflate's map); without, it can't.
 */
export interface Sink {
  /** Once it resolves, the sink holds no reference to `bytes`: the caller may reuse the buffer. */
  write(bytes: Uint8Array): Promise<void>;
  writeAt?(offset: number, bytes: Uint8Array): Promise<void>;
  /**
   * A file the caller may write itself, at known offsets and from any thread (an xz decompressor's
   * workers, one block each): flushes what is buffered and returns the file descriptor and the file
   * offset of the next byte; undefined when the output is not a regular file that can take that.
   */
  positional?(): Promise<PositionalOutput | undefined>;
}

/**
 * Bytes written by offset into a file that holds nothing from `at` on: zero 4 KiB blocks may be
 * left as holes. `advance` says how many bytes from `at` now belong to the output (holes
 * included), so that the file gets its size and the sink's next byte goes after them.
 */
export interface PositionalOutput {
  readonly fd: number;
  readonly at: number;
  /** How messages name the output ("stdout", a path). */
  readonly name: string;
  /** Writes `bytes` at file offset `offset` (≥ at), leaving zero 4 KiB blocks as holes. */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  advance(length: number): void;
}
