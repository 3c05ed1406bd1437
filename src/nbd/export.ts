import type { Decoder } from '../open.js';
import { PIECE, zeroPiece, type NbdExport } from './server.js';

/**
 * What the NBD server needs to know about a compressed file beyond its bytes: what a read holds
 * in memory (for the server's one budget), how far ahead a sequential reader is worth decoding,
 * the bytes as views of cached units (replies without copies), and what BLOCK_STATUS may say
 * without decoding. The server itself knows no format; this is the glue between it and the decoders.
 */
export function nbdExportOf(name: string, data: Decoder, options: { recycle?: boolean } = {}): NbdExport {
  if (data.format !== 'xz' && data.format !== 'zstd') {
    // A gzip read inflates on the main thread, into as much again as it returns; decoding ahead
    // would only move that work earlier on the same core.
    return { name, source: data, readCost: (_offset, length) => 2 * length };
  }
  // xz blocks and zstd frames: units decoded whole on the worker threads, each cached whole.
  const units: readonly { uStart: number; uSize: number }[] = data.format === 'xz' ? data.blocks : data.frames;
  // A thread takes tens of milliseconds to start: while the first client connects, not after its first read.
  data.startThreads();
  // xz blocks are decoded into the buffers of blocks the cache let go of (no fresh 16 MiB to fault
  // in and collect for each): every view below holds its buffer until the server releases it. Only
  // for a file the server opened itself: a caller's own file may hold blocks' bytes without holds.
  if (options.recycle && data.format === 'xz') data.cache.recycle();
  const largest = units.reduce((most, unit) => Math.max(most, unit.uSize), 0);
  const readUnit = (index: number) => (data.format === 'xz' ? data.readBlock(index) : data.readFrame(index));
  /** Units a view cannot come from: xz blocks of 0 bytes (read() confirms them), zstd frames read as a stream. */
  const plain = (index: number) => units[index]!.uSize === 0 || (data.format === 'zstd' && data.isStreamed(index));
  return {
    name,
    source: data,
    /**
     * Its output, plus every block it touches that it would decode itself: a block already cached
     * is counted by the cache's own bound, and one being decoded is charged to the read (or
     * read-ahead) that started it, which holds its charge until the decode is done. The server
     * asks when it grants the read, so the answer is as fresh as it can be.
     */
    readCost: (offset, length) => {
      let cost = length;
      for (let index = data.locate(offset); index < units.length && units[index]!.uStart < offset + length; index++) {
        if (!data.cache.has(index)) cost += units[index]!.uSize;
      }
      return cost;
    },
    // Two decodes at a time keep the two decoder threads busy, up to four blocks ahead of one
    // reader (blocks differ in decode time: with two ahead, a thread that finished early sat idle
    // until the reader moved on; measured: 1.56 decodes in flight on average). Several readers
    // (nbdcopy's connections) share that distance, so blocks decoded ahead are not dropped from
    // the cache before they are read. Never more than half the cache.
    readAhead: { unit: largest, distance: Math.min(4 * largest, Math.floor(data.cache.capacity / 2 / Math.max(1, largest)) * largest), inFlight: 2 },
    views: {
      /**
       * Each unit's part of the read as a view of its cached bytes (decoded, checked and cached
       * as for read()), known-zero units as a view of one shared zero buffer. A read touching a
       * unit that read() treats specially (see `plain`) is left to read().
       */
      async read(offset, length) {
        const end = offset + length;
        const first = data.locate(offset);
        let last = first;
        while (last + 1 < units.length && (units[last + 1]!.uStart < end || units[last + 1]!.uSize === 0)) last++;
        for (let index = first; index <= last; index++) if (plain(index)) return { parts: [await data.read(offset, length)], release: () => {} };
        const known = await data.zeroRanges(offset, length);
        const parts: Promise<Uint8Array>[] = [];
        // Each unit's buffer is held from the continuation that got it, before any other unit of
        // this read is waited for: it may leave the cache meanwhile, and must not be decoded into.
        const releases: (() => void)[] = [];
        const release = () => releases.forEach((one) => one());
        for (let index = first, at = offset; at < end; index++) {
          const unit = units[index]!;
          const stop = Math.min(end, unit.uStart + unit.uSize);
          if (known.some((zero) => zero.offset <= at && stop <= zero.offset + zero.length)) parts.push(Promise.resolve(zeroPiece().subarray(0, stop - at)));
          else {
            const within = at - unit.uStart;
            const take = stop - at;
            // A read to the unit's end is most likely a sequential reader leaving it (see BlockCache.passed).
            const leaves = stop === unit.uStart + unit.uSize;
            parts.push(
              readUnit(index).then((bytes) => {
                releases.push(data.cache.hold(bytes.buffer));
                if (leaves) data.cache.passed(index);
                return bytes.subarray(within, within + take);
              }),
            );
          }
          at = stop;
        }
        // Every decode of this read settles before it fails, as in read().
        const settled = await Promise.allSettled(parts);
        const failed = settled.find((result) => result.status === 'rejected');
        if (failed) {
          release();
          throw failed.reason;
        }
        return { parts: settled.map((result) => (result as PromiseFulfilledResult<Uint8Array>).value), release };
      },
      // Two units: a reply from each of two readers at once; more replies in the socket's queue
      // at once are copied.
      maxPinned: 2 * Math.max(largest, PIECE),
    },
    async peek(offset) {
      const index = data.locate(offset);
      const unit = units[index]!;
      if (!data.cache.peek(index) || plain(index)) return { skip: unit.uStart + unit.uSize - offset };
      // Its offset rests on the records before it, as a read's does.
      if (data.format === 'xz') await data.confirmBefore(index);
      // Looked up again after the wait: a buffer the cache let go of meanwhile may be decoded into.
      const bytes = data.cache.peek(index);
      if (!bytes) return { skip: unit.uStart + unit.uSize - offset };
      return { bytes: bytes.subarray(offset - unit.uStart) };
    },
  };
}
