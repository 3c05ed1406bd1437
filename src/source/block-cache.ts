/**
 * An LRU cache of decoded blocks, bounded in bytes. Invariant: a block is decoded once while it
 * stays cached, whatever order and overlap its requests come in: a miss for a block whose decode
 * is under way joins that decode instead of starting another. Failed decodes are not cached.
 * Pinned by test/block-cache.test.ts ("decode once") and, through the NBD server, by
 * test/nbd-pipeline.test.ts.
 */
export interface BlockCache {
  /**
   * The cached bytes for `key`, or `load()`'s. With `isEnough`, a cached value that fails it (a
   * prefix decoded for an earlier, shorter read) is loaded again and replaced.
   */
  get(key: number, load: () => Promise<Uint8Array>, isEnough?: (data: Uint8Array) => boolean): Promise<Uint8Array>;
  /**
   * True when `key` is cached or its decode is under way: a read of it now starts no decode. The
   * NBD server's budget charges a read only for the blocks it would decode (src/nbd/export.ts).
   */
  has(key: number): boolean;
  readonly bytes: number;
  readonly capacity: number;
  /** Decodes started, for tests and the bench: a warm read starts none. */
  readonly loads: number;
}

export function createBlockCache(capacity: number): BlockCache {
  const ready = new Map<number, Uint8Array>(); // insertion order = recency
  const loading = new Map<number, Promise<Uint8Array>>();
  let bytes = 0;
  let loads = 0;
  const evict = () => {
    // Keep at least the newest block, even if it alone exceeds the capacity.
    while (bytes > capacity && ready.size > 1) {
      const [oldest, data] = ready.entries().next().value as [number, Uint8Array];
      ready.delete(oldest);
      bytes -= data.length;
    }
  };
  const cache: BlockCache = {
    get bytes() {
      return bytes;
    },
    capacity,
    get loads() {
      return loads;
    },
    has(key) {
      return ready.has(key) || loading.has(key);
    },
    get(key, load, isEnough) {
      const hit = ready.get(key);
      if (hit && (!isEnough || isEnough(hit))) {
        ready.delete(key);
        ready.set(key, hit);
        return Promise.resolve(hit);
      }
      if (hit) {
        ready.delete(key);
        bytes -= hit.length;
      }
      const inFlight = loading.get(key);
      if (inFlight) {
        if (!isEnough) return inFlight;
        return inFlight.then((data) => (isEnough(data) ? data : cache.get(key, load, isEnough)));
      }
      loads++;
      const promise = load().then(
        (data) => {
          loading.delete(key);
          const previous = ready.get(key);
          if (previous) bytes -= previous.length;
          ready.set(key, data);
          bytes += data.length;
          evict();
          return data;
        },
        (error: unknown) => {
          loading.delete(key);
          throw error;
        },
      );
      loading.set(key, promise);
      return promise;
    },
  };
  return cache;
}
