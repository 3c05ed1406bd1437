import type { Source } from './source.js';

/**
 * Front-to-back reading for writers, from a random-access Source or from a stream (stdin).
 * `read(into)` fills the caller's buffer, so a writer can recycle a few buffers instead of
 * allocating one per chunk; it returns the filled part, shorter than `into` only at the end.
 */
export interface SequentialInput {
  /** Total length when known in advance (a file); undefined for a pipe. */
  readonly size: number | undefined;
  read(into: Uint8Array): Promise<Uint8Array>;
}

export function sequentialFromSource(source: Source): SequentialInput {
  let position = 0;
  return {
    size: source.size,
    async read(into) {
      let filled: number;
      if (source.readInto) {
        filled = await source.readInto(into, position);
      } else {
        const bytes = await source.read(position, into.length);
        into.set(bytes);
        filled = bytes.length;
      }
      position += filled;
      return into.subarray(0, filled);
    },
  };
}

export function sequentialFromStream(stream: AsyncIterable<Uint8Array>): SequentialInput {
  const iterator = stream[Symbol.asyncIterator]();
  let pending: Uint8Array = new Uint8Array(0);
  let ended = false;
  return {
    size: undefined,
    async read(into) {
      let filled = 0;
      while (filled < into.length) {
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
        const take = Math.min(pending.length, into.length - filled);
        into.set(pending.subarray(0, take), filled);
        pending = pending.subarray(take);
        filled += take;
      }
      return into.subarray(0, filled);
    },
  };
}
