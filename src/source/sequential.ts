import type { Source } from './source.js';

/**
 * Front-to-back reading for writers, from a random-access Source or from a stream (stdin).
 * `read(length)` returns exactly `length` bytes in a buffer it owns, fewer only at the end.
 */
export interface SequentialInput {
  /** Total length when known in advance (a file); undefined for a pipe. */
  readonly size: number | undefined;
  read(length: number): Promise<Uint8Array>;
  /**
   * True when every read returns a buffer that nobody else holds, so a writer may hand it to a
   * worker thread (transfer detaches it). A buffer source returns views of the caller's bytes.
   */
  readonly freshReads: boolean;
}

export function sequentialFromSource(source: Source, options: { freshReads?: boolean } = {}): SequentialInput {
  let position = 0;
  return {
    size: source.size,
    freshReads: options.freshReads ?? false,
    async read(length) {
      const bytes = await source.read(position, length);
      position += bytes.length;
      return bytes;
    },
  };
}

export function sequentialFromStream(stream: AsyncIterable<Uint8Array>): SequentialInput {
  const iterator = stream[Symbol.asyncIterator]();
  let pending: Uint8Array = new Uint8Array(0);
  let ended = false;
  return {
    size: undefined,
    freshReads: true,
    async read(length) {
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        if (pending.length === 0) {
          if (ended) break;
          const next = await iterator.next();
          if (next.done) {
            ended = true;
            break;
          }
          pending = next.value;
          continue;
        }
        const take = Math.min(pending.length, length - filled);
        out.set(pending.subarray(0, take), filled);
        pending = pending.subarray(take);
        filled += take;
      }
      return filled === length ? out : out.slice(0, filled);
    },
  };
}
