/**
 * Results computed out of order (on worker threads) but written in order: a window of at most
 * `limit` pending results. `push` waits while the window is full, which is what bounds memory.
 */
export interface OrderedWindow<T> {
  push(result: Promise<T>): Promise<void>;
  /** Waits for and consumes everything still pending. */
  drain(): Promise<void>;
}

export function orderedWindow<T>(limit: number, consume: (result: T) => Promise<void>): OrderedWindow<T> {
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
