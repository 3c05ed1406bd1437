import type { Sink } from './sink.js';
import type { SequentialInput } from '../source/sequential.js';
import type { Source } from '../source/source.js';

/**
 * AbortSignal at the edges of a long job: every read of its input and every write of its output
 * checks the signal first, so an aborted job stops at its next piece and fails with the signal's
 * reason (an AbortError, as Node's own APIs give), and the caller's cleanup removes the output.
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason;
}

/** The error a job that ran under `signal` ended with: the signal's reason once it is aborted, whatever a stopped worker said. */
export function abortReason(signal: AbortSignal | undefined, error: unknown): unknown {
  return signal?.aborted ? signal.reason : error;
}

export function abortableInput(input: SequentialInput, signal: AbortSignal | undefined): SequentialInput {
  if (!signal) return input;
  return {
    size: input.size,
    read: (into) => {
      throwIfAborted(signal);
      return input.read(into);
    },
  };
}

export function abortableSource<S extends Source>(source: S, signal: AbortSignal | undefined): S {
  if (!signal) return source;
  return {
    ...source,
    size: source.size,
    read: (offset: number, length: number) => {
      throwIfAborted(signal);
      return source.read(offset, length);
    },
    readInto: source.readInto
      ? (into: Uint8Array, offset: number) => {
          throwIfAborted(signal);
          return source.readInto!(into, offset);
        }
      : undefined,
  };
}

export function abortableSink<S extends Sink>(sink: S, signal: AbortSignal | undefined): S {
  if (!signal) return sink;
  return {
    ...sink,
    write: (bytes: Uint8Array) => {
      throwIfAborted(signal);
      return sink.write(bytes);
    },
    writeAt: sink.writeAt
      ? (offset: number, bytes: Uint8Array) => {
          throwIfAborted(signal);
          return sink.writeAt!(offset, bytes);
        }
      : undefined,
  };
}
