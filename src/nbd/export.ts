import type { Decoder } from '../open.js';
import type { NbdExport } from './server.js';

/**
 * What the NBD server needs to know about a compressed file beyond its bytes: what a read holds
 * in memory (for the server's one budget) and how far ahead a sequential reader is worth
 * decoding. The server itself knows no format; this is the glue between it and the decoders.
 */
export function nbdExportOf(name: string, data: Decoder): NbdExport {
  if (data.format !== 'xz' && data.format !== 'zstd') {
    // A gzip read inflates on the main thread, into as much again as it returns; decoding ahead
    // would only move that work earlier on the same core.
    return { name, source: data, readCost: (_offset, length) => 2 * length };
  }
  // xz blocks and zstd frames: units decoded whole on the worker threads, each cached whole.
  const units: readonly { uStart: number; uSize: number }[] = data.format === 'xz' ? data.blocks : data.frames;
  const largest = units.reduce((most, unit) => Math.max(most, unit.uSize), 0);
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
    // Two decodes at a time keep the two decoder threads busy, two blocks ahead of the reader:
    // farther, and with several readers (nbdcopy's connections) blocks decoded ahead would crowd
    // the cache and be packed or dropped before they are read. Never more than half the cache.
    readAhead: { unit: largest, distance: Math.min(2 * largest, Math.floor(data.cache.capacity / 2 / Math.max(1, largest)) * largest), inFlight: 2 },
  };
}
