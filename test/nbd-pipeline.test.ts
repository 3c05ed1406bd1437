/**
 * The NBD server's request pipeline, with the server in this process (so its decodes can be
 * counted) and real clients in others: libnbd's Python binding, nbdinfo, nbdcopy.
 * - decode once: concurrent, overlapping reads of one block share one decode;
 * - read-ahead: a sequential reader gets the next blocks decoded ahead, never more than the
 *   export's read-ahead allows, and none when the budget has no room; status queries carry a
 *   reader across holes it does not read; a reader warms nothing in another reader's range;
 * - zeroRanges: known zero chunks are holes in BLOCK_STATUS and in reads, without inflating.
 * - status decodes nothing (xz, zstd): holes from the index and from blocks already cached;
 * - replies as views of cached blocks, copied once the server-wide pin limit is reached;
 * - recycled buffers: decodes reuse the buffers of blocks the cache let go of, never one a reply still sends from.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlockCache } from '../src/source/block-cache.js';
import { nbdExportOf } from '../src/nbd/export.js';
import { createNbdServer, type NbdExport, type NbdServerOptions } from '../src/nbd/server.js';
import { decoderOf, open, type OpenOptions } from '../src/open.js';
import type { Decoder } from '../src/open.js';
import type { Source } from '../src/source/source.js';
import { diskLikeData, requireTool, run, runAsync, runCli, sha256, SYSTEM_PYTHON, tempDir } from './helpers/tools.js';
/** The decoder under a file opened as every command opens it (journal, sidecar index). */
const openDecoder = async (path: string, options?: OpenOptions) => decoderOf(await open(path, options));

const MIB = 2 ** 20;
const BLOCK = MIB;
const SIZE = 8 * MIB;

const PYTHON = `
import hashlib, json, sys
import nbd

args = json.load(open(sys.argv[1]))
handles = []
for _ in range(args['connections']):
    h = nbd.NBD()
    h.set_request_structured_replies(args.get('structured', True))
    h.connect_unix(args['socket'])
    handles.append(h)
out = {}
if args['mode'] == 'concurrent':
    # Every read is sent before any reply is awaited.
    pending = []
    for index, (offset, length) in enumerate(args['reads']):
        h = handles[index % len(handles)]
        buf = nbd.Buffer(length)
        pending.append((h, buf, h.aio_pread(buf, offset)))
    for h in handles:
        while h.aio_in_flight() > 0:
            h.poll(-1)
    out['sha'] = [hashlib.sha256(buf.to_bytearray()).hexdigest() for (h, buf, cookie) in pending if h.aio_command_completed(cookie)]
else:
    # One at a time, in order; a read's third item, when given, is the connection it goes on.
    out['sha'] = [hashlib.sha256(handles[read[2] if len(read) > 2 else 0].pread(read[1], read[0])).hexdigest() for read in args['reads']]
for h in handles:
    h.shutdown()
print(json.dumps(out))
`;

describe('NBD pipeline', () => {
  let dir: { path: string; remove: () => void };
  let raw: Uint8Array;
  let xzPath: string;
  const path = (name: string) => join(dir.path, name);

  beforeAll(() => {
    requireTool('xz', 'xz-utils');
    requireTool('nbdinfo', 'libnbd-bin');
    requireTool('nbdcopy', 'libnbd-bin');
    expect(run(SYSTEM_PYTHON, ['-c', 'import nbd']).status, 'python3-libnbd').toBe(0);
    dir = tempDir();
    raw = diskLikeData(SIZE, 5);
    writeFileSync(path('disk.img'), raw);
    // -T2 writes both sizes in every block header, so reads confirm earlier blocks without decoding them.
    expect(run('xz', ['-T2', '-1', `--block-size=${BLOCK}`, '-k', path('disk.img')]).status).toBe(0);
    xzPath = path('disk.img.xz');
    writeFileSync(path('client.py'), PYTHON);
  });
  afterAll(() => dir?.remove());

  /** Serves `exported` on a Unix socket in this process while `client` runs; counts the reads that are still running. */
  async function serving<T>(exported: NbdExport, options: NbdServerOptions, client: (socket: string) => Promise<T>): Promise<{ result: T; settled: () => Promise<void> }> {
    let running = 0;
    let idle: (() => void) | undefined;
    const inner = exported.source;
    const source: Source = {
      ...inner,
      size: inner.size,
      zeroRanges: inner.zeroRanges?.bind(inner),
      read(offset, length) {
        running++;
        return inner.read(offset, length).finally(() => {
          if (--running === 0) idle?.();
        });
      },
    };
    const socket = path(`nbd-${Math.random().toString(36).slice(2)}.sock`);
    const server: Server = createNbdServer({ ...exported, source }, options);
    await new Promise<void>((resolve) => server.listen(socket, resolve));
    try {
      const result = await client(socket);
      // Read-ahead runs behind the replies: wait until the last of it is done, not for a time.
      const settled = () => (running === 0 ? Promise.resolve() : new Promise<void>((resolve) => (idle = resolve)));
      await settled();
      return { result, settled };
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }

  async function python(socket: string, args: Record<string, unknown>): Promise<{ sha: string[] }> {
    const argsPath = path(`args-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(argsPath, JSON.stringify({ socket, ...args }));
    const result = await runAsync(SYSTEM_PYTHON, [path('client.py'), argsPath]);
    expect(result.status, result.stderr).toBe(0);
    return JSON.parse(result.stdout.toString().trim().split('\n').pop()!) as { sha: string[] };
  }

  /**
   * The export with every read of its source and of its views logged in order: warm-ups read one
   * byte of the source, the client's reads come through views.
   */
  const logReads = (exported: NbdExport) => {
    const reads: [number, number][] = [];
    const { source, views } = exported;
    const logged: NbdExport = {
      ...exported,
      source: { ...source, size: source.size, zeroRanges: source.zeroRanges?.bind(source), read: (offset, length) => (reads.push([offset, length]), source.read(offset, length)) },
      views: { ...views!, read: (offset, length) => (reads.push([offset, length]), views!.read(offset, length)) },
    };
    return { logged, reads };
  };
  const withoutReadAhead = (data: Decoder): NbdExport => ({ ...nbdExportOf('', data), readAhead: undefined });
  const shaOf = (offset: number, length: number) => sha256(raw.subarray(offset, offset + length));

  it('decode once: the block cache shares one decode among concurrent misses, and retries a failed one', async () => {
    const cache = createBlockCache(4 * MIB);
    let loads = 0;
    let finish!: (data: Uint8Array) => void;
    const load = () => {
      loads++;
      return new Promise<Uint8Array>((resolve) => (finish = resolve));
    };
    const gets = [cache.get(7, load), cache.get(7, load), cache.get(7, load), cache.get(7, load)];
    expect(cache.has(7)).toBe(true);
    expect(cache.has(8)).toBe(false);
    finish(new Uint8Array(BLOCK).fill(7));
    const results = await Promise.all(gets);
    expect(loads).toBe(1);
    expect(new Set(results).size).toBe(1);
    await expect(cache.get(9, () => Promise.reject(new Error('bad block')))).rejects.toThrow('bad block');
    expect(cache.has(9)).toBe(false);
    expect(await cache.get(9, async () => new Uint8Array(3))).toHaveLength(3);
  });

  it('sparse blocks: under pressure mostly-zero blocks are packed, not dropped, and come back byte for byte', async () => {
    const cache = createBlockCache(5 * MIB);
    const sparseBlock = (seed: number) => {
      const block = new Uint8Array(2 * MIB);
      block.set(diskLikeData(100_000, seed), 70_000 * seed); // a few granules of data, unaligned
      block[block.length - 1] = seed; // and the last byte
      return block;
    };
    const blocks = [sparseBlock(1), sparseBlock(2), diskLikeData(2 * MIB, 3), sparseBlock(4), sparseBlock(5)];
    let loads = 0;
    const get = (key: number) =>
      cache.get(key, async () => {
        loads++;
        return blocks[key]!.slice();
      });
    for (const key of blocks.keys()) await get(key);
    // 10 MiB of blocks in a 5 MiB cache: the sparse ones are packed, so all of them stay.
    expect(cache.bytes).toBeLessThanOrEqual(5 * MIB);
    expect(blocks.map((_block, key) => cache.has(key))).toEqual([true, true, true, true, true]);
    for (const key of [0, 1, 2, 3, 4, 0, 4]) expect(Buffer.compare(await get(key), blocks[key]!), `block ${key}`).toBe(0);
    expect(loads).toBe(5);
    expect(cache.bytes).toBeLessThanOrEqual(5 * MIB);
    // Dense blocks beyond the capacity are dropped, least recently used first.
    blocks.push(diskLikeData(2 * MIB, 6), diskLikeData(2 * MIB, 7));
    await get(5);
    await get(6);
    expect(cache.bytes).toBeLessThanOrEqual(5 * MIB);
    expect(cache.has(2)).toBe(false);
    expect(Buffer.compare(await get(3), blocks[3]!)).toBe(0);
  });

  it('sparse blocks: a block a reader has passed is dropped under pressure, not packed; a later get makes it packable again', async () => {
    const cache = createBlockCache(5 * MIB);
    const sparseBlock = (seed: number) => {
      const block = new Uint8Array(2 * MIB);
      block.set(diskLikeData(100_000, seed), 70_000 * seed);
      return block;
    };
    const blocks = [0, 1, 2, 3].map(sparseBlock);
    let loads = 0;
    const get = (key: number) =>
      cache.get(key, async () => {
        loads++;
        return blocks[key]!.slice();
      });
    await get(0);
    await get(1);
    cache.passed(0);
    cache.passed(1);
    await get(1); // read again: no longer passed
    await get(2);
    await get(3);
    // 8 MiB in a 5 MiB cache: block 0 (passed) went whole, block 1 (wanted again) was packed.
    expect(cache.has(0)).toBe(false);
    expect([1, 2, 3].map((key) => cache.has(key))).toEqual([true, true, true]);
    for (const key of [1, 2, 3, 0]) expect(Buffer.compare(await get(key), blocks[key]!), `block ${key}`).toBe(0);
    expect(loads).toBe(5);
    expect(cache.bytes).toBeLessThanOrEqual(5 * MIB);
  });

  it('decode once: 4 overlapping reads of one xz block on 2 connections, sent before any reply, decode it once', async () => {
    const data = await openDecoder(xzPath);
    try {
      if (data.format !== 'xz') throw new Error('expected xz');
      const reads: [number, number][] = [
        [2 * BLOCK + 1000, 300_000],
        [2 * BLOCK, 4096],
        [2 * BLOCK + 200_000, 600_000],
        [2 * BLOCK + 500_000, BLOCK - 500_000],
      ];
      const { result } = await serving(withoutReadAhead(data), {}, (socket) => python(socket, { mode: 'concurrent', connections: 2, reads }));
      expect(result.sha).toEqual(reads.map(([offset, length]) => shaOf(offset, length)));
      expect(data.cache.loads).toBe(1);
    } finally {
      await data.close?.();
    }
  });

  it('read-ahead: a sequential reader alone gets at most four blocks decoded ahead, and every byte right', async () => {
    const data = await openDecoder(xzPath);
    try {
      if (data.format !== 'xz') throw new Error('expected xz');
      const exported = nbdExportOf('', data);
      expect(exported.readAhead).toEqual({ unit: BLOCK, distance: 4 * BLOCK, inFlight: 2 });
      // Blocks 0 and 1, 256 KiB at a time.
      const reads = Array.from({ length: 8 }, (_unused, index): [number, number] => [index * 256 * 1024, 256 * 1024]);
      const { result } = await serving(exported, {}, (socket) => python(socket, { mode: 'sequential', connections: 1, reads }));
      expect(result.sha).toEqual(reads.map(([offset, length]) => shaOf(offset, length)));
      // Read: blocks 0 and 1. Ahead: up to four units past the end of the last read (blocks 2 to 5).
      expect(data.cache.loads).toBeGreaterThanOrEqual(3);
      expect(data.cache.loads).toBeLessThanOrEqual(6);
    } finally {
      await data.close?.();
    }
  });

  it('read-ahead follows status queries: nbdcopy to a pipe asks the status of each 256 KiB and reads no hole, and the first block after a 12 MiB hole is warmed before it is read', async () => {
    // Blocks 2 to 13 are zeros: nbdcopy reads block 1, then only asks the status of the hole, then reads block 14 on.
    const holed = diskLikeData(24 * MIB, 17);
    holed.fill(0, 2 * MIB, 14 * MIB);
    writeFileSync(path('holed.img'), holed);
    expect(run('xz', ['-T2', '-1', `--block-size=${BLOCK}`, '-k', path('holed.img')]).status).toBe(0);
    const data = await openDecoder(path('holed.img.xz'));
    try {
      const { logged, reads } = logReads(nbdExportOf('', data));
      const { result } = await serving(logged, {}, async (socket) => runAsync('sh', ['-c', `nbdcopy 'nbd+unix:///?socket=${socket}' - | sha256sum`]));
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout.toString().split(' ')[0]).toBe(sha256(holed));
      const inBlock14 = (offset: number) => offset >= 14 * MIB && offset < 15 * MIB;
      const warmed = reads.findIndex(([offset, length]) => length === 1 && inBlock14(offset));
      expect(warmed, 'a warm-up of block 14').toBeGreaterThanOrEqual(0);
      // It is the first thing that touched block 14: no read of the client came before it.
      expect(reads.findIndex(([offset]) => inBlock14(offset))).toBe(warmed);
    } finally {
      await data.close?.();
    }
  });

  it('read-ahead stays out of another reader\'s range: two readers of neighbouring 12 MiB ranges, a four-block cache, no block warmed after it was read, and every block decoded once', async () => {
    // Ranges far enough apart (more than SEQUENTIAL_SLACK) to be two readers, as nbdcopy's connections are.
    const half = 12 * MIB;
    const twice = diskLikeData(2 * half, 19);
    writeFileSync(path('two-ranges.img'), twice);
    expect(run('xz', ['-T2', '-1', `--block-size=${BLOCK}`, '-k', path('two-ranges.img')]).status).toBe(0);
    const data = await openDecoder(path('two-ranges.img.xz'), { cacheSize: 4 * BLOCK });
    try {
      if (data.format !== 'xz') throw new Error('expected xz');
      // Reader 0 reads [0, half), reader 1 reads [half, 2 × half), in turns, 256 KiB at a time.
      // Reader 1 is a block ahead: the blocks it has read are dropped by the time reader 0 nears them.
      const reads: [number, number, number][] = [];
      const step = 256 * 1024;
      for (let at = 0; at < half + BLOCK; at += step) {
        if (at >= BLOCK) reads.push([at - BLOCK, step, 0]);
        if (at < half) reads.push([half + at, step, 1]);
      }
      const { logged, reads: log } = logReads(nbdExportOf('', data));
      const { result } = await serving(logged, {}, (socket) => python(socket, { mode: 'sequential', connections: 2, reads }));
      expect(result.sha).toEqual(reads.map(([offset, length]) => sha256(twice.subarray(offset, offset + length))));
      // No warm-up in reader 1's range comes after reader 1 has read past it.
      let readTo = 0;
      const late: number[] = [];
      for (const [offset, length] of log) {
        if (length > 1) readTo = Math.max(readTo, offset + length);
        else if (offset >= half && offset < readTo) late.push(offset);
      }
      expect(late).toEqual([]);
      expect(data.cache.loads).toBe((2 * half) / BLOCK);
    } finally {
      await data.close?.();
    }
  });

  it('read-ahead is bounded by the budget: with no room for a block beside the reads, nothing is decoded ahead', async () => {
    const data = await openDecoder(xzPath);
    try {
      if (data.format !== 'xz') throw new Error('expected xz');
      const reads = Array.from({ length: 16 }, (_unused, index): [number, number] => [index * 256 * 1024, 256 * 1024]);
      const { result } = await serving(nbdExportOf('', data), { maxBytesInFlight: BLOCK }, (socket) => python(socket, { mode: 'sequential', connections: 1, reads }));
      expect(result.sha).toEqual(reads.map(([offset, length]) => shaOf(offset, length)));
      expect(data.cache.loads).toBe(4);
    } finally {
      await data.close?.();
    }
  });

  it('read-ahead never reaches past half the cache: with a two-block cache, one block ahead', async () => {
    const data = await openDecoder(xzPath, { cacheSize: 2 * BLOCK });
    try {
      if (data.format !== 'xz') throw new Error('expected xz');
      expect(nbdExportOf('', data).readAhead).toEqual({ unit: BLOCK, distance: BLOCK, inFlight: 2 });
    } finally {
      await data.close?.();
    }
  });

  it('recycled buffers: with a two-block cache that recycles, reads across block edges from 2 connections, all sent before any reply, get every byte right, and decodes reuse buffers', async () => {
    for (const maxPinned of [undefined, 1]) {
      const data = await openDecoder(xzPath, { cacheSize: 2 * BLOCK });
      try {
        if (data.format !== 'xz') throw new Error('expected xz');
        const exported = nbdExportOf('', data, { recycle: true });
        // Several passes over the file: blocks leave the two-block cache while replies from them are
        // queued, and the next decodes take the buffers of blocks no reply holds any more.
        const reads = Array.from({ length: 96 }, (_unused, index): [number, number] => [(index * 700_001) % (SIZE - 900_000), 200_000 + ((index * 37_000) % 700_000)]);
        const views = maxPinned === undefined ? exported.views! : { ...exported.views!, maxPinned };
        const { result } = await serving({ ...exported, views }, {}, (socket) => python(socket, { mode: 'concurrent', connections: 2, reads }));
        expect(result.sha, `maxPinned ${maxPinned}`).toEqual(reads.map(([offset, length]) => shaOf(offset, length)));
        expect(data.cache.recycled, `maxPinned ${maxPinned}`).toBeGreaterThan(0);
        // nbdcopy over the same server: the whole disk, byte for byte.
        const copy = path('recycled-copy.img');
        const { result: copied } = await serving({ ...exported, views }, {}, (socket) => runAsync('nbdcopy', ['--connections=2', '--requests=8', `nbd+unix:///?socket=${socket}`, copy]));
        expect(copied.status, copied.stderr).toBe(0);
        expect(sha256(readFileSync(copy))).toBe(sha256(raw));
      } finally {
        await data.close?.();
      }
    }
  });

  it('replies from views of cached blocks: with room to pin blocks or with none (every reply copied), every byte right', async () => {
    const data = await openDecoder(xzPath);
    try {
      if (data.format !== 'xz') throw new Error('expected xz');
      const exported = nbdExportOf('', data);
      expect(exported.views!.maxPinned).toBe(8 * MIB); // two blocks, at least 8 MiB
      // Reads across block edges, all sent before any reply: several replies show the same block at once.
      const reads = Array.from({ length: 24 }, (_unused, index): [number, number] => [(index * 333_333) % (SIZE - 700_000), 300_000 + index * 17_000]);
      for (const maxPinned of [exported.views!.maxPinned, 1]) {
        const { result } = await serving({ ...exported, views: { ...exported.views!, maxPinned } }, {}, (socket) => python(socket, { mode: 'concurrent', connections: 2, reads }));
        expect(result.sha, `maxPinned ${maxPinned}`).toEqual(reads.map(([offset, length]) => shaOf(offset, length)));
      }
    } finally {
      await data.close?.();
    }
  });

  it('status decodes nothing: nbdinfo --map on a fresh xz server gives the zero blocks as holes and decodes no block; once read, every zero granule', async () => {
    const zraw = diskLikeData(SIZE, 11);
    zraw.fill(0, 2 * BLOCK, 3 * BLOCK);
    zraw.fill(0, 5 * BLOCK, 6 * BLOCK);
    writeFileSync(path('zero-blocks.img'), zraw);
    expect(run('xz', ['-T2', '-1', `--block-size=${BLOCK}`, '-k', path('zero-blocks.img')]).status).toBe(0);
    const data = await openDecoder(path('zero-blocks.img.xz'));
    try {
      if (data.format !== 'xz') throw new Error('expected xz');
      const map = async (socket: string) => {
        const result = await runAsync('nbdinfo', ['--map', '--json', `nbd+unix:///?socket=${socket}`]);
        expect(result.status, result.stderr).toBe(0);
        return (JSON.parse(result.stdout.toString()) as { offset: number; length: number; type: number }[]).map(({ offset, length, type }) => ({ offset, length, hole: type === 3 }));
      };
      const { result } = await serving(nbdExportOf('', data), {}, async (socket) => {
        const cold = await map(socket);
        const loadsCold = data.cache.loads;
        const reads = Array.from({ length: SIZE / (512 * 1024) }, (_unused, index): [number, number] => [index * 512 * 1024, 512 * 1024]);
        const read = await python(socket, { mode: 'sequential', connections: 1, reads });
        expect(read.sha).toEqual(reads.map(([offset, length]) => sha256(zraw.subarray(offset, offset + length))));
        return { cold, loadsCold, warm: await map(socket) };
      });
      // The first zero block is decoded once, outside the cache, to learn its encoding; nothing else.
      expect(result.loadsCold).toBe(0);
      expect(result.cold.filter((extent) => extent.hole)).toEqual([
        { offset: 2 * BLOCK, length: BLOCK, hole: true },
        { offset: 5 * BLOCK, length: BLOCK, hole: true },
      ]);
      for (const extent of result.warm) {
        const bytes = zraw.subarray(extent.offset, extent.offset + extent.length);
        expect(bytes.every((byte) => byte === 0), `[${extent.offset}, +${extent.length})`).toBe(extent.hole);
      }
      for (let granule = 0; granule < SIZE; granule += 64 * 1024) {
        if (!zraw.subarray(granule, granule + 64 * 1024).every((byte) => byte === 0)) continue;
        expect(result.warm.find((extent) => extent.offset <= granule && granule < extent.offset + extent.length)!.hole, `zero granule at ${granule}`).toBe(true);
      }
    } finally {
      await data.close?.();
    }
  });

  describe('zero chunks of a partial-deflate file', () => {
    let zraw: Uint8Array;
    let gz: string;
    const CHUNKS = ['data', 'zero', 'zero', 'data', 'zero', 'half', 'zero', 'data'];
    beforeAll(() => {
      zraw = new Uint8Array(CHUNKS.length * MIB);
      CHUNKS.forEach((kind, index) => {
        if (kind === 'data') zraw.set(diskLikeData(MIB, index + 20), index * MIB);
        if (kind === 'half') zraw.set(diskLikeData(MIB / 2, 40), index * MIB + MIB / 4);
      });
      writeFileSync(path('zeros.img'), zraw);
      gz = path('zeros.img.gz');
      const made = runCli('partial-deflate', ['-q', path('zeros.img'), gz]);
      expect(made.status, made.stderr).toBe(0);
    });

    it('nbdinfo --map: every zero granule is a hole, every hole reads as zeros; zero chunks are never inflated', async () => {
      const data = await openDecoder(gz);
      try {
        if (data.format !== 'gzip') throw new Error('expected gzip');
        const { result } = await serving(nbdExportOf('', data), {}, async (socket) => {
          const map = await runAsync('nbdinfo', ['--map', '--json', `nbd+unix:///?socket=${socket}`]);
          expect(map.status, map.stderr).toBe(0);
          return JSON.parse(map.stdout.toString()) as { offset: number; length: number; type: number }[];
        });
        let at = 0;
        for (const extent of result) {
          expect(extent.offset).toBe(at);
          at += extent.length;
          const bytes = zraw.subarray(extent.offset, extent.offset + extent.length);
          const zero = bytes.every((byte) => byte === 0);
          expect(zero, `[${extent.offset}, +${extent.length}) type ${extent.type}`).toBe(extent.type === 3);
        }
        expect(at).toBe(zraw.length);
        // Granule-level holes inside the half-zero chunk come from reading it; whole zero chunks from the map.
        const holes = result.filter((extent) => extent.type === 3).reduce((sum, extent) => sum + extent.length, 0);
        expect(holes).toBeGreaterThanOrEqual(4 * MIB + MIB / 2);
        // Inflated: the 3 data chunks, the half chunk, and one zero chunk to learn its encoding.
        expect(data.segmentLoads).toBe(5);
      } finally {
        await data.close?.();
      }
    });

    it('nbdcopy copies it exactly, and a known-zero read is right with structured and simple replies', async () => {
      const data = await openDecoder(gz);
      try {
        const out = path('copy.img');
        const { result } = await serving(nbdExportOf('', data), {}, async (socket) => {
          const copy = await runAsync('nbdcopy', [`nbd+unix:///?socket=${socket}`, out]);
          expect(copy.status, copy.stderr).toBe(0);
          // Known-zero reads: one hole chunk with structured replies, zero bytes without.
          const reads = [[MIB, 2 * MIB], [4 * MIB + 5, 1000], [0, 8 * MIB]];
          return Promise.all([true, false].map((structured) => python(socket, { mode: 'sequential', connections: 1, structured, reads })));
        });
        expect(sha256(readFileSync(out))).toBe(sha256(zraw));
        const expected = [sha256(zraw.subarray(MIB, 3 * MIB)), sha256(zraw.subarray(4 * MIB + 5, 4 * MIB + 1005)), sha256(zraw)];
        expect(result.map((client) => client.sha)).toEqual([expected, expected]);
      } finally {
        await data.close?.();
      }
    });
  });
});
