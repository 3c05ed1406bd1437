/**
 * seekzstd's format module, writer and reader: XXH64 against xxhsum and against the checksums
 * zstd writes; the seek table and frame walk against zstd's own files; the writer's output the
 * same for any thread count; every damaged frame or table an error, never wrong data; both codec
 * paths (libzstd through the addon, fzstd without it); the I/O plan of a random read.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { compressZstd } from '../src/compress.js';
import { open } from '../src/open.js';
import { bufferSource } from '../src/source/buffer.js';
import { createWorkerPool } from '../src/workers/pool.js';
import { parseFrameHeader, SEEK_TABLE_FOOTER_SIZE, walkFrame } from '../src/zstd/format.js';
import { compressFrame, streamDecoder } from '../src/zstd/codec.js';
import { openZstd } from '../src/zstd/reader.js';
import { writeZstd } from '../src/zstd/writer.js';
import { xxh64 } from '../src/zstd/xxh64.js';
import { countingSource, diskLikeData, requireTool, run, sha256, tempDir } from './helpers/tools.js';

let dir: { path: string; remove: () => void };
beforeAll(() => {
  requireTool('zstd', 'zstd');
  requireTool('xxhsum', 'xxhash');
  dir = tempDir('seekz-zstd-');
});
afterAll(() => dir?.remove());

/**
 * The ways a frame gets decoded: libzstd in process (async work on libuv's thread pool, the
 * default when the addon is built), libzstd on worker threads, fzstd on worker threads (the
 * workers load the codec with SEEKZ_NATIVE=0; this process keeps its addon, so only a pool that
 * starts workers reaches fzstd).
 */
const CODEC_PATHS = [
  { name: 'libzstd in process', hide: false, inProcess: true },
  { name: 'libzstd on worker threads', hide: false, inProcess: false },
  { name: 'fzstd on worker threads', hide: true, inProcess: false },
];

/** Compresses `data` with seekzstd's writer into memory. */
async function seekable(data: Uint8Array, options: { frameSize?: number; level?: number; threads?: number } = {}): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let at = 0;
  await writeZstd({ size: data.length, read: async (into) => {
    const piece = data.subarray(at, at + into.length);
    into.set(piece);
    at += piece.length;
    return into.subarray(0, piece.length);
  } }, { write: async (bytes) => void parts.push(bytes.slice()) }, { frameSize: 64 * 1024, threads: 2, ...options });
  return Buffer.concat(parts);
}

describe('XXH64', () => {
  it('equals xxhsum -H64 at every length around the 32- and 8-byte steps', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (bytes) => {
        const expected = run('xxhsum', ['-H64', '-'], { input: bytes }).stdout.toString().split(/\s/)[0];
        expect(xxh64(bytes).toString(16).padStart(16, '0')).toBe(expected);
      }),
      { numRuns: 60 },
    );
  });

  it("gives the Content_Checksum zstd writes (its frame's last four bytes)", () => {
    const data = diskLikeData(200_001, 5);
    const frame = run('zstd', ['-q', '-c', '--check', '-'], { input: data }).stdout;
    expect(Number(xxh64(data) & 0xffffffffn)).toBe(frame.readUInt32LE(frame.length - 4));
  });
});

describe('frame headers', () => {
  it('walks a zstd frame by its block headers to its exact size, without decoding', async () => {
    const path = join(dir.path, 'walk.img');
    writeFileSync(path, diskLikeData(700_000, 9));
    const frame = run('zstd', ['-q', '-c', '-1', path]).stdout; // a file: zstd states the content size
    const file = Buffer.concat([frame, frame]);
    const read = async (offset: number, length: number) => file.subarray(offset, offset + length);
    const first = await walkFrame(read, 0, file.length);
    expect(first).toMatchObject({ offset: 0, compressedSize: frame.length, contentSize: 700_000, skippable: false });
    expect(parseFrameHeader(file.subarray(0, 18), 0).checksum).toBe(true);
  });

  // Over HTTP each uncached read is a request: the walk reads ahead in chunks of 64 KiB doubling
  // to 4 MiB, not 3 bytes per block (about 60 blocks here, each its own read before).
  it('walking the headers of a plain multi-frame file costs a few reads, each in file order', async () => {
    const path = join(dir.path, 'plain.img');
    writeFileSync(path, diskLikeData(4_000_000, 12));
    const frame = run('zstd', ['-q', '-c', '-1', path]).stdout;
    const file = Buffer.concat([frame, frame]);
    const counted = countingSource(bufferSource(file));
    const zstd = await openZstd(counted.source, { threads: 1 });
    try {
      expect(zstd.layout).toBe('frames');
      expect(zstd.frames.map((one) => one.uSize)).toEqual([4_000_000, 4_000_000]);
      const walk = counted.reads.slice(1); // after the footer probe
      expect(walk.length).toBeLessThanOrEqual(Math.ceil(Math.log2(file.length / 65536)) + 2);
      for (let index = 1; index < walk.length; index++) expect(walk[index]![0]).toBeGreaterThan(walk[index - 1]![0]);
      expect(sha256(await zstd.read(0, zstd.size))).toBe(sha256(Buffer.concat([diskLikeData(4_000_000, 12), diskLikeData(4_000_000, 12)])));
    } finally {
      await zstd.close();
    }
  });

  it('reads window size, content size and checksum flag as zstd -lv states them', () => {
    const path = join(dir.path, 'h.zst');
    writeFileSync(join(dir.path, 'h'), diskLikeData(5000, 3));
    writeFileSync(path, run('zstd', ['-q', '-c', '-19', '--no-check', join(dir.path, 'h')]).stdout);
    const header = parseFrameHeader(run('head', ['-c', '18', path]).stdout, 0);
    expect(header.contentSize).toBe(5000);
    expect(header.checksum).toBe(false);
    expect(run('zstd', ['-lv', path]).stdout.toString()).toMatch(/Check: None/);
  });
});

describe('the seekable writer', () => {
  const data = Buffer.concat([diskLikeData(300_000, 21), new Uint8Array(256 * 1024), diskLikeData(100_000, 22)]);

  it('writes the same bytes for any thread count, and zstd -t / -dc accept them', async () => {
    const one = await seekable(data, { threads: 1 });
    const three = await seekable(data, { threads: 3 });
    expect(sha256(three)).toBe(sha256(one));
    const path = join(dir.path, 'w.zst');
    writeFileSync(path, one);
    expect(run('zstd', ['-t', path]).status).toBe(0);
    expect(sha256(run('zstd', ['-dc', path]).stdout)).toBe(sha256(data));
  });

  it('reuses one compressed all-zero frame, and zeroRanges proves those frames zero', async () => {
    const file = await seekable(data);
    const zstd = await openZstd(bufferSource(file), { threads: 1 });
    try {
      const zeroFrames = zstd.frames.filter((frame) => frame.uStart >= 300_000 && frame.uStart + frame.uSize <= 300_000 + 256 * 1024);
      expect(zeroFrames.length).toBeGreaterThanOrEqual(2);
      const bytes = zeroFrames.map((frame) => sha256(file.subarray(frame.offset, frame.offset + frame.compressedSize)));
      expect(new Set(bytes).size).toBe(1);
      const ranges = await zstd.zeroRanges(0, zstd.size);
      const total = ranges.reduce((sum, range) => sum + range.length, 0);
      expect(total).toBe(zeroFrames.reduce((sum, frame) => sum + frame.uSize, 0));
      for (const range of ranges) expect(data.subarray(range.offset, range.offset + range.length).every((byte) => byte === 0)).toBe(true);
    } finally {
      await zstd.close();
    }
  });
});

/** Number_Of_Frames from a seekable file's footer. */
const frameCount = (file: Uint8Array) => Buffer.from(file).readUInt32LE(file.length - SEEK_TABLE_FOOTER_SIZE);

describe('the reader', () => {
  const data = diskLikeData(1_000_000, 31);
  let file: Uint8Array;
  beforeAll(async () => {
    file = await seekable(data);
  });

  it('a random read costs the footer, the table, the headers before it (once) and the one frame it needs', async () => {
    const counted = countingSource(bufferSource(file));
    const zstd = await openZstd(counted.source, { threads: 1 });
    try {
      expect(counted.reads.length).toBe(2); // footer, then the table it sizes
      expect(counted.reads[0]).toEqual([file.length - SEEK_TABLE_FOOTER_SIZE, SEEK_TABLE_FOOTER_SIZE]);
      counted.reads.length = 0;
      const offset = 5 * 65536 + 100;
      expect(sha256(await zstd.read(offset, 4096))).toBe(sha256(data.subarray(offset, offset + 4096)));
      const frame = zstd.frames[5]!;
      // The sizes that place frame 6: each earlier frame's header against its table entry.
      const headers = zstd.frames.slice(0, 5).map((before) => [before.offset, 18]);
      expect(counted.reads).toEqual([...headers, [frame.offset, frame.compressedSize]]);
      counted.reads.length = 0;
      const later = zstd.frames[3]!;
      expect(sha256(await zstd.read(later.uStart, 4096))).toBe(sha256(data.subarray(later.uStart, later.uStart + 4096)));
      expect(counted.reads).toEqual([[later.offset, later.compressedSize]]);
    } finally {
      await zstd.close();
    }
  });

  // zstd -dc skips the seek table, so it takes this file as whole and right: the data of frame 3
  // sits where frames 1 and 2 end, and a read there must give exactly that or fail.
  it('a seek table that moves bytes between frames (totals unchanged) is refused, not read at the wrong place', async () => {
    const forged = Buffer.from(file);
    const frames = frameCount(file);
    const entries = forged.length - SEEK_TABLE_FOOTER_SIZE - frames * 12;
    forged.writeUInt32LE(forged.readUInt32LE(entries + 4) - 1, entries + 4); // frame 1: one byte less
    forged.writeUInt32LE(forged.readUInt32LE(entries + 12 * 2 + 4) + 1, entries + 12 * 2 + 4); // frame 3: one more
    writeFileSync(join(dir.path, 'moved.zst'), forged);
    expect(run('zstd', ['-dc', join(dir.path, 'moved.zst')]).stdout.equals(Buffer.from(data))).toBe(true);
    const zstd = await openZstd(bufferSource(forged), { threads: 1 });
    try {
      await expect(zstd.read(65536 + 100, 100)).rejects.toMatchObject({ code: 'ZSTD_SIZE_CLAIMS' });
    } finally {
      await zstd.close();
    }
  });

  it('both codec paths read every byte right: libzstd (the addon, in process and on workers) and fzstd (SEEKZ_NATIVE=0)', async () => {
    for (const { name, hide, inProcess } of CODEC_PATHS) {
      const before = process.env.SEEKZ_NATIVE;
      if (hide) process.env.SEEKZ_NATIVE = '0';
      const pool = createWorkerPool(2, undefined, { inProcess }); // workers read the switch when they load the codec
      try {
        const zstd = await openZstd(bufferSource(file), { pool });
        expect(sha256(await zstd.read(0, zstd.size)), name).toBe(sha256(data));
        await zstd.close();
      } finally {
        if (before === undefined) delete process.env.SEEKZ_NATIVE;
        else process.env.SEEKZ_NATIVE = before;
        await pool.close();
      }
    }
  });

  // Damage: every byte of a frame or the table, flipped, is an error with a code, never other data.
  it('a flipped byte anywhere gives an error or the right bytes, on both codec paths', async () => {
    const small = await seekable(diskLikeData(150_000, 41), { frameSize: 65536 });
    const truth = diskLikeData(150_000, 41);
    for (const { name, hide, inProcess } of CODEC_PATHS) {
      const before = process.env.SEEKZ_NATIVE;
      if (hide) process.env.SEEKZ_NATIVE = '0';
      const pool = createWorkerPool(1, undefined, { inProcess });
      try {
        for (let at = 0; at < small.length; at += Math.max(1, Math.floor(small.length / 97))) {
          const damaged = small.slice();
          damaged[at]! ^= 0x40;
          try {
            const zstd = await openZstd(bufferSource(damaged), { pool, cacheSize: 0 });
            const bytes = await zstd.read(0, zstd.size);
            expect(sha256(bytes), `byte ${at} flipped (${name})`).toBe(sha256(truth));
          } catch (error) {
            expect(error, `byte ${at}: ${(error as Error).message}`).toBeInstanceOf(SeekzError);
            expect((error as SeekzError).code).toMatch(/^ZSTD_/);
          }
        }
      } finally {
        if (before === undefined) delete process.env.SEEKZ_NATIVE;
        else process.env.SEEKZ_NATIVE = before;
        await pool.close();
      }
    }
  });

  it('open() finds zstd by its magic and reads through the same door as xz and gzip', async () => {
    const path = join(dir.path, 'door.zst');
    writeFileSync(path, file);
    await using opened = await open(path);
    expect(opened.format).toBe('zstd');
    expect(sha256(await opened.read(123_456, 300_000))).toBe(sha256(data.subarray(123_456, 423_456)));
    const info = await opened.info();
    expect(info.format === 'zstd' && info.layout).toBe('seekable');
  });

  it('compressZstd writes a file that only appears whole, which zstd -dc reads back', async () => {
    const input = join(dir.path, 'lib.img');
    writeFileSync(input, data);
    const result = await compressZstd(input, join(dir.path, 'lib.img.zst'), { frameSize: 256 * 1024, threads: 2 });
    expect(result.entries.length).toBe(Math.ceil(data.length / (256 * 1024)));
    expect(sha256(run('zstd', ['-dc', join(dir.path, 'lib.img.zst')]).stdout)).toBe(sha256(data));
    await expect(compressZstd(input, join(dir.path, 'lib.img.zst'))).rejects.toMatchObject({ code: 'OUTPUT_EXISTS' });
  });

  it('a frame pushed whole to the stream decoder ends it, also when its data ends on a step of the output (4 MiB: four 1 MiB steps)', async () => {
    const frameData = diskLikeData(4 << 20, 23);
    const decoder = streamDecoder();
    const out = decoder.push(compressFrame(frameData, 3));
    expect(sha256(Buffer.concat(out))).toBe(sha256(frameData));
    expect(decoder.ended(), 'the stream is at a frame end').toBe(true);
    // The same frames above maxFrame in a seekable file, each read as a stream in one piece.
    const file = join(dir.path, 'streamed-frames.zst');
    const input = Buffer.concat([frameData, frameData.subarray(0, 12345)]);
    writeFileSync(join(dir.path, 'streamed-frames.img'), input);
    await compressZstd(join(dir.path, 'streamed-frames.img'), file, { frameSize: 4 << 20, threads: 2 });
    await using zst = await open(file, { maxBlock: 3 << 20 });
    expect(sha256(await zst.read(0, zst.size))).toBe(sha256(input));
  });

  it('a frame above maxFrame streams front to back; a read elsewhere in it names the limit and seekzstd', async () => {
    const input = join(dir.path, 'big.img');
    writeFileSync(input, data);
    writeFileSync(join(dir.path, 'big.zst'), run('zstd', ['-q', '-c', input]).stdout);
    await using whole = await open(join(dir.path, 'big.zst'), { maxBlock: 256 * 1024 });
    const pieces: Buffer[] = [];
    for (let at = 0; at < whole.size; at += 300_000) pieces.push(await whole.read(at, 300_000));
    expect(sha256(Buffer.concat(pieces))).toBe(sha256(data));
    await expect(whole.read(5000, 10)).rejects.toMatchObject({ code: 'ZSTD_NOT_SEEKABLE', message: expect.stringMatching(/limit for one decode.*seekzstd/) });
  });
});
