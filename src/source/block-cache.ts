import { isAllZero } from '../zeros.js';

/**
 * An LRU cache of decoded blocks, bounded in bytes. Invariants:
 * - A block is decoded once while it stays cached, whatever order and overlap its requests come
 *   in: a miss for a block whose decode is under way joins that decode instead of starting
 *   another. Failed decodes are not cached.
 * - What `get` returns is always the block's bytes, whole. Under pressure the least recently used
 *   block is first kept *sparse* (its all-zero granules dropped, the rest packed), and only then
 *   evicted; a sparse block is made whole again when it is asked for. A disk image's blocks are
 *   mostly zeros, so the cache holds two or three times as many of them: nbdcopy checks the
 *   allocation of a 128 MiB range per connection before it reads it, and the blocks it decoded
 *   for that are still here when it reads them.
 * - A block a reader has gone past (`passed`) is dropped, not packed: packing costs a pass over
 *   the block and a copy of its data, which a sequential copy never gets back.
 * - Recycling (off unless `recycle()` is called: the NBD server over a file it opened itself): the
 *   buffer of a whole block the cache lets go of is handed to a later load (`spare`) only once
 *   nothing can still read it. Whoever keeps a block's bytes past the continuation of the `get`
 *   that returned them takes a `hold` on the buffer in that continuation and releases it when
 *   done (the server: once the kernel has taken a reply sent from it). A buffer let go of becomes
 *   spare only on a later turn of the event loop (setImmediate), after every continuation of a
 *   `get` that returned it has run, and only while no hold is on it.
 * Pinned by test/nbd-pipeline.test.ts ("decode once", "sparse blocks", "recycled buffers").
 */
export interface BlockCache {
  /**
   * The cached bytes for `key`, or `load()`'s. With `isEnough`, a cached value that fails it (a
   * prefix decoded for an earlier, shorter read) is loaded again and replaced.
   */
  get(key: number, load: (spare: Spare) => Promise<Uint8Array>, isEnough?: (data: Uint8Array) => boolean): Promise<Uint8Array>;
  /**
   * True when `key` is cached or its decode is under way: a read of it now starts no decode. The
   * NBD server's budget charges a read only for the blocks it would decode (src/nbd/export.ts).
   */
  has(key: number): boolean;
  /**
   * The block's bytes if they are cached whole right now, else undefined: no load, no unpacking,
   * no change of recency. For answers that must not decode (the NBD server's BLOCK_STATUS).
   */
  peek(key: number): Uint8Array | undefined;
  /**
   * A reader has read up to the end of `key`'s block, so it is unlikely to be read again: under
   * pressure it is dropped at once instead of packed. A hint; the next `get` clears it.
   */
  passed(key: number): void;
  /** Bytes held: whole blocks at their length, sparse ones at what they keep. */
  readonly bytes: number;
  readonly capacity: number;
  /** Decodes started, for tests and the bench: a warm read starts none. */
  readonly loads: number;
  /** Forgets every decoded block (the file under it was patched in place); decodes in flight are not kept. */
  clear(): void;
  /** Turns recycling on (see the invariants): from now on, blocks' buffers let go of are handed to later loads. */
  recycle(): void;
  /** Keeps `buffer` from being handed to a load until the returned release is called (once; more calls do nothing). */
  hold(buffer: ArrayBufferLike): () => void;
  /** Loads given a spare buffer, for tests and the bench. */
  readonly recycled: number;
}

/** A buffer of exactly `size` bytes that nothing reads any more, to decode into, or undefined. */
export type Spare = (size: number) => ArrayBuffer | undefined;

/** Buffers kept for later loads at most: as many as decoder threads fill at once, and one more. */
const MAX_SPARES = 3;

/** Granule of sparse blocks: an all-zero run of this size, aligned, is not stored. */
const SPARSE_GRANULE = 64 * 1024;
/** Blocks smaller than this are kept whole or evicted: packing them saves too little. */
const SPARSE_MIN_BLOCK = 1024 * 1024;

/** A block with its all-zero granules dropped: which granules are kept, and their bytes packed. */
interface SparseBlock {
  length: number;
  kept: Uint8Array; // 1 per kept granule
  packed: Uint8Array;
}

/** `dense`: a whole block already found not to pack well; `passed`: read to its end (see `passed`). */
type Entry = { whole: Uint8Array; dense?: boolean; passed?: boolean } | { sparse: SparseBlock };

const sizeOf = (entry: Entry) => ('whole' in entry ? entry.whole.length : entry.sparse.packed.length + entry.sparse.kept.length);

/** The block without its all-zero granules, or undefined when that would not save a quarter. */
function makeSparse(data: Uint8Array): SparseBlock | undefined {
  if (data.length < SPARSE_MIN_BLOCK) return undefined;
  const granules = Math.ceil(data.length / SPARSE_GRANULE);
  const kept = new Uint8Array(granules);
  let keptBytes = 0;
  for (let index = 0; index < granules; index++) {
    const granule = data.subarray(index * SPARSE_GRANULE, (index + 1) * SPARSE_GRANULE);
    if (!isAllZero(granule)) {
      kept[index] = 1;
      keptBytes += granule.length;
    }
  }
  if (keptBytes > data.length * 0.75) return undefined;
  const packed = new Uint8Array(keptBytes);
  for (let index = 0, at = 0; index < granules; index++) {
    if (!kept[index]) continue;
    const granule = data.subarray(index * SPARSE_GRANULE, (index + 1) * SPARSE_GRANULE);
    packed.set(granule, at);
    at += granule.length;
  }
  return { length: data.length, kept, packed };
}

function makeWhole(sparse: SparseBlock): Uint8Array {
  const data = new Uint8Array(sparse.length);
  for (let index = 0, at = 0; index < sparse.kept.length; index++) {
    if (!sparse.kept[index]) continue;
    const length = Math.min(SPARSE_GRANULE, sparse.length - index * SPARSE_GRANULE);
    data.set(sparse.packed.subarray(at, at + length), index * SPARSE_GRANULE);
    at += length;
  }
  return data;
}

export function createBlockCache(capacity: number): BlockCache {
  const ready = new Map<number, Entry>(); // insertion order = recency
  const loading = new Map<number, Promise<Uint8Array>>();
  let bytes = 0;
  let loads = 0;
  let recycling = false;
  let recycled = 0;
  /** Holds on buffers, by buffer; and buffers let go of while held, to retire once the last hold goes. */
  const holds = new Map<ArrayBufferLike, number>();
  const heldWhenDropped = new Set<ArrayBufferLike>();
  const spares: ArrayBuffer[] = [];
  let cooling: ArrayBuffer[] = [];
  /** A buffer nothing holds: spare on the next turn of the event loop, after every continuation of the gets that returned it. */
  const cool = (buffer: ArrayBuffer) => {
    cooling.push(buffer);
    if (cooling.length > 1) return;
    setImmediate(() => {
      for (const cooled of cooling) {
        if (holds.has(cooled)) heldWhenDropped.add(cooled); // held in a continuation: spare once released
        else if (spares.length < MAX_SPARES) spares.push(cooled);
      }
      cooling = [];
    });
  };
  /** The cache lets go of a block's bytes: their buffer may serve a later load, once nothing holds it. */
  const drop = (data: Uint8Array) => {
    const buffer = data.buffer;
    if (!recycling || !(buffer instanceof ArrayBuffer) || data.byteOffset !== 0 || data.byteLength !== buffer.byteLength) return;
    if (holds.has(buffer)) heldWhenDropped.add(buffer);
    else cool(buffer);
  };
  const spare: Spare = (size) => {
    const at = spares.findIndex((buffer) => buffer.byteLength === size);
    if (at < 0) return undefined;
    recycled++;
    return spares.splice(at, 1)[0];
  };
  const put = (key: number, entry: Entry) => {
    const previous = ready.get(key);
    if (previous) {
      ready.delete(key);
      bytes -= sizeOf(previous);
      if ('whole' in previous && (!('whole' in entry) || entry.whole !== previous.whole)) drop(previous.whole);
    }
    ready.set(key, entry);
    bytes += sizeOf(entry);
  };
  const evict = () => {
    if (bytes <= capacity) return;
    // Least recently used first, never the newest: drop blocks a reader has passed, pack whole
    // blocks that pack well (a key that is set again keeps its place in the order), then drop
    // blocks until the rest fits. The newest block stays even if it alone exceeds the capacity.
    for (const key of [...ready.keys()].slice(0, -1)) {
      if (bytes <= capacity) return;
      const entry = ready.get(key)!;
      if (!('whole' in entry) || entry.dense) continue;
      if (entry.passed) {
        ready.delete(key);
        bytes -= entry.whole.length;
        drop(entry.whole);
        continue;
      }
      const sparse = makeSparse(entry.whole);
      if (!sparse) {
        entry.dense = true; // not worth looking at again
        continue;
      }
      bytes += sparse.packed.length + sparse.kept.length - entry.whole.length;
      ready.set(key, { sparse });
      drop(entry.whole);
    }
    while (bytes > capacity && ready.size > 1) {
      const [oldest, entry] = ready.entries().next().value as [number, Entry];
      ready.delete(oldest);
      bytes -= sizeOf(entry);
      if ('whole' in entry) drop(entry.whole);
    }
  };
  /** The entry's bytes, whole; a sparse entry is made whole and kept whole (it is in use again). */
  const wholeOf = (key: number, entry: Entry): Uint8Array => {
    if ('whole' in entry) return entry.whole;
    const data = makeWhole(entry.sparse);
    put(key, { whole: data });
    evict();
    return data;
  };
  const cache: BlockCache = {
    get bytes() {
      return bytes;
    },
    capacity,
    get loads() {
      return loads;
    },
    get recycled() {
      return recycled;
    },
    recycle() {
      recycling = true;
    },
    hold(buffer) {
      holds.set(buffer, (holds.get(buffer) ?? 0) + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const count = holds.get(buffer)! - 1;
        if (count > 0) return void holds.set(buffer, count);
        holds.delete(buffer);
        if (heldWhenDropped.delete(buffer)) cool(buffer as ArrayBuffer);
      };
    },
    has(key) {
      return ready.has(key) || loading.has(key);
    },
    passed(key) {
      const entry = ready.get(key);
      if (entry && 'whole' in entry) entry.passed = true;
    },
    peek(key) {
      const entry = ready.get(key);
      return entry && 'whole' in entry ? entry.whole : undefined;
    },
    clear() {
      ready.clear();
      loading.clear();
      bytes = 0;
    },
    get(key, load, isEnough) {
      const entry = ready.get(key);
      if (entry) {
        ready.delete(key);
        ready.set(key, entry); // most recently used
        if ('whole' in entry) entry.passed = false; // wanted again after all
        const hit = wholeOf(key, entry);
        if (!isEnough || isEnough(hit)) return Promise.resolve(hit);
        ready.delete(key);
        bytes -= hit.length;
        drop(hit);
      }
      const inFlight = loading.get(key);
      if (inFlight) {
        if (!isEnough) return inFlight;
        return inFlight.then((data) => (isEnough(data) ? data : cache.get(key, load, isEnough)));
      }
      loads++;
      const promise = load(spare).then(
        (data) => {
          if (loading.get(key) !== promise) return data; // cleared meanwhile: not kept
          loading.delete(key);
          put(key, { whole: data });
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
