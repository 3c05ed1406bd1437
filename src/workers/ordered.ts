/**
 * Results computed out of order (on worker threads) but written in order: a window of at most
 * `limit` pending results. `push` waits while the window is full, which is what bounds memory.
 *
 * By default a result is consumed only when `push` finds the window full (or on `drain`). With
 * `eager`, each is consumed as soon as it and all before it are done, while the producer goes on:
 * a writer's output leaves (and its buffer is free again) without waiting for the window to fill.
 * Either way one consume runs at a time, in push order, and the first failure is what `push` and
 * `drain` reject with. Pinned by test/ordered.test.ts.
 */
export interface OrderedWindow<T> {
  push(result: Promise<T>): Promise<void>;
  /** Waits for and consumes everything still pending. */
  drain(): Promise<void>;
}

export function orderedWindow<T>(limit: number, consume: (result: T) => Promise<void>, options: { eager?: boolean } = {}): OrderedWindow<T> {
  if (options.eager) return eagerWindow(limit, consume);
  const pending: Promise<T>[] = [];
  const consumeOne = async () => consume(await pending.shift()!);
  return {
    async push(result) {
      // A rejection waiting in the window would otherwise be reported as unhandled before its turn.
      result.catch(() => {});
      pending.push(result);
      if (pending.length >= limit) await consumeOne();
    },
    async drain() {
      while (pending.length > 0) await consumeOne();
    },
  };
}

function eagerWindow<T>(limit: number, consume: (result: T) => Promise<void>): OrderedWindow<T> {
  /** Pushed and not yet consumed. */
  let count = 0;
  /** Every consume so far, one after another: rejected from the first failure on. */
  let chain: Promise<void> = Promise.resolve();
  let wake: (() => void) | undefined;
  return {
    async push(result) {
      result.catch(() => {});
      count++;
      chain = chain.then(async () => {
        await consume(await result);
        count--;
        wake?.();
      });
      chain.catch(() => {}); // reported by the push or drain that waits on it
      while (count >= limit) await Promise.race([chain, new Promise<void>((resolve) => (wake = resolve))]);
    },
    drain: () => chain,
  };
}
