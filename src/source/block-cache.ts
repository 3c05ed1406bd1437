/**
 * An LRU cache of decoded blocks, bounded in bytes. Concurrent requests for a block that is
 * being decoded share the one decode. Failed decodes are not cached.
 */
export interface BlockCache {
  /**
   * The cached bytes for `key`, or `load()`'s. With `isEnough`, a cached value that fails it (a
   * prefix decoded for an earlier, shorter read) is loaded again and replaced.
   */
  get(key: number, load: () => Promise<Uint8Array>, isEnough?: (data: Uint8Array) => boolean): Promise<Uint8Array>;
  readonly bytes: number;
  readonly capacity: number;
  /** Decodes started, for tests and the bench: a warm read starts none. */
  readonly loads: number;
  /** Forgets every decoded block (the file under it was patched in place); decodes in flight are not kept. */
  clear(): void;
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
    clear() {
      ready.clear();
      loading.clear();
      bytes = 0;
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
          if (loading.get(key) !== promise) return data; // cleared meanwhile: not kept
          loading.delete(key);
          const previous = ready.get(key);
          if (previous) bytes -= previous.length;
          ready.set(key, data);
          bytes += data.length;
          evict();
          return data;
        },
        (error: unknown) => {
          if (loading.get(key) === promise) loading.delete(key);
          throw error;
        },
      );
      loading.set(key, promise);
      return promise;
    },
  };
  return cache;
}
