import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { crc32 } from '../src/crc/crc32.js';
import { ByteWriter } from '../src/cursor.js';
import { SeekzError } from '../src/errors.js';
import { buildGzipIndex } from '../src/gzip/index/build.js';
import { openIndexedGzip } from '../src/gzip/index/indexed-reader.js';
import { parseSeekzIndex, serializeSeekzIndex } from '../src/gzip/index/seekz-format.js';
import { GRANULE_SIZE, pointBit, type GzipIndex } from '../src/gzip/index/types.js';
import { nativeZlib } from '../src/native/zlib.js';
import { bufferSource } from '../src/source/buffer.js';
import { countingSource, diskLikeData, noise, requireTool, run, sha256, tempDir } from './helpers/tools.js';

/*
 * The two engines of the gzip index builder (the seekz_zlib addon with Z_BLOCK, and the pure-Node
 * walker beside node:zlib, forced by SEEKZ_NATIVE=0) must give the same index, byte for byte; and
 * reads through index version 3 check every granule they inflate, and inflate no further.
 */

const KiB = 1024;
const SPACING = 256 * KiB;
const engines = ['native', 'node'] as const;

function withEngine<T>(engine: (typeof engines)[number], work: () => Promise<T>): Promise<T> {
  const saved = process.env.SEEKZ_NATIVE;
  process.env.SEEKZ_NATIVE = engine === 'native' ? '1' : '0';
  return work().finally(() => {
    if (saved === undefined) delete process.env.SEEKZ_NATIVE;
    else process.env.SEEKZ_NATIVE = saved;
  });
}

async function codeOf(work: () => Promise<unknown>): Promise<string> {
  try {
    await work();
    return 'ok';
  } catch (error) {
    if (!(error instanceof SeekzError)) throw error;
    return error.code;
  }
}

let dir: { path: string; remove: () => void };
let data: Uint8Array;
const files: Record<string, Uint8Array> = {};

beforeAll(() => {
  for (const [tool, pkg] of [['gzip', 'gzip'], ['pigz', 'pigz'], ['bgzip', 'tabix']] as const) requireTool(tool, pkg);
  dir = tempDir('seekz-engines-');
  // Text-like data, a random stretch gzip stores verbatim, long zero runs.
  data = new Uint8Array(Buffer.concat([diskLikeData(1_500_000, 41), noise(200 * KiB, 3), new Uint8Array(700 * KiB), diskLikeData(900_000, 42)]));
  const input = join(dir.path, 'plain');
  writeFileSync(input, data);
  const make = (command: string, args: string[]) => new Uint8Array(run(command, [...args, input]).stdout);
  files['gzip -6'] = make('gzip', ['-6', '-n', '-c']);
  files['gzip -1'] = make('gzip', ['-1', '-n', '-c']);
  files.pigz = make('pigz', ['-6', '-c']);
  files['pigz -0 (stored blocks)'] = make('pigz', ['-0', '-c']);
  files.bgzip = make('bgzip', ['-c']);
  files['multi-member'] = new Uint8Array(Buffer.concat([files['gzip -1']!, files.pigz!]));
});
afterAll(() => dir?.remove());
afterEach(() => {
  delete process.env.SEEKZ_NATIVE;
});

describe('index builder engines', () => {
  it('the addon is built and loads (npm test builds it); SEEKZ_NATIVE=0 turns it off', () => {
    process.env.SEEKZ_NATIVE = '1';
    expect(nativeZlib(), 'build/Release/seekz_zlib.node: run node scripts/ensure-deps.mjs').toBeDefined();
    process.env.SEEKZ_NATIVE = '0';
    expect(nativeZlib()).toBeUndefined();
  });

  it("the addon's CRC-32 (libdeflate) is zlib's, continued and empty too", () => {
    const native = nativeZlib()!;
    for (const bytes of [new Uint8Array(0), data.subarray(0, 1), data.subarray(3, 100_003), data]) {
      expect(native.crc32(bytes)).toBe(crc32(bytes));
      expect(native.crc32(bytes, 0xdeadbeef)).toBe(crc32(bytes, 0xdeadbeef));
    }
    expect(native.crc32(data.subarray(7), native.crc32(data.subarray(0, 7)))).toBe(crc32(data));
  });

  for (const name of ['gzip -6', 'gzip -1', 'pigz', 'pigz -0 (stored blocks)', 'bgzip', 'multi-member']) {
    it(`${name}: both engines write the same index, with granules, and reads through it equal zcat`, async () => {
      const file = files[name]!;
      const truth = run('gzip', ['-dc'], { input: file }).stdout;
      const [native, node] = await Promise.all(engines.map((engine) => withEngine(engine, () => buildGzipIndex(bufferSource(file), { spacing: SPACING }))));
      const bytes = serializeSeekzIndex(native!);
      expect(Buffer.from(serializeSeekzIndex(node!)).equals(Buffer.from(bytes))).toBe(true);
      // Speculative streams as close as they come (these files are too small for many; see below).
      const speculative = await withEngine('native', () => buildGzipIndex(bufferSource(file), { spacing: SPACING, speculation: { minimum: 0, buffer: 64 * KiB } }));
      expect(Buffer.from(serializeSeekzIndex(speculative)).equals(Buffer.from(bytes))).toBe(true);
      const index = parseSeekzIndex(bytes);
      expect(index.uncompressedSize).toBe(truth.length);
      // Granules: GRANULE_SIZE long except where a span ends; their compressed ends never go back.
      for (const [number, point] of index.points.entries()) {
        const granules = point.granules!;
        expect(granules.length, `point ${number}`).toBeGreaterThan(0);
        let [at, cAt] = [point.uOffset, point.cOffset];
        for (const granule of granules.slice(0, -1)) {
          expect(granule.uEnd - at).toBe(GRANULE_SIZE);
          expect(granule.cEnd).toBeGreaterThanOrEqual(cAt);
          [at, cAt] = [granule.uEnd, granule.cEnd];
        }
        expect(granules[granules.length - 1]!.uEnd - at).toBeLessThanOrEqual(GRANULE_SIZE);
      }
      if (name !== 'bgzip') expect(index.points.some((point) => point.granules!.length > 2)).toBe(true);
      const reader = openIndexedGzip(bufferSource(file), index);
      expect(sha256(await reader.read(0, reader.size))).toBe(sha256(truth));
      // Small reads inflate granules with the addon or with node:zlib: the same bytes.
      for (const engine of engines) {
        await withEngine(engine, async () => {
          const fresh = openIndexedGzip(bufferSource(file), index, { cacheSize: 1 });
          for (let offset = 3; offset < truth.length; offset += 97 * KiB + 13) {
            expect(sha256(await fresh.read(offset, 5000)), `${engine}: read at ${offset}`).toBe(sha256(truth.subarray(offset, offset + 5000)));
          }
        });
      }
    });
  }

  it('bad data gives a SeekzError on both engines, never a crash', async () => {
    const good = files['gzip -6']!;
    for (const cut of [good.length - 9, Math.floor(good.length / 2), 40]) {
      for (const engine of engines) {
        const code = await withEngine(engine, () => codeOf(() => buildGzipIndex(bufferSource(good.subarray(0, cut)), { spacing: SPACING })));
        // The walker can meet the cut as a bit pattern no code has, before it runs out of data.
        expect(code, `${engine}, cut at ${cut}`).toMatch(engine === 'native' ? /TRUNCATED/ : /TRUNCATED|DEFLATE_BAD_DATA/);
      }
    }
    for (const at of [100, 5000, Math.floor(good.length / 3)]) {
      const damaged = new Uint8Array(good);
      damaged[at]! ^= 0x5a;
      const codes = await Promise.all(engines.map((engine) => withEngine(engine, () => codeOf(() => buildGzipIndex(bufferSource(damaged), { spacing: SPACING })))));
      for (const code of codes) expect(code, `byte ${at}`).not.toBe('ok');
    }
  });

  // Big enough for several speculative streams ahead of the live one: 24 MB of disk-like data with zero runs.
  let made: Uint8Array[] | undefined;
  const bigFiles = () => {
    if (made) return made;
    const big = new Uint8Array(Buffer.concat([diskLikeData(12_000_000, 7), new Uint8Array(3_000_000), noise(500 * KiB, 8), diskLikeData(9_000_000, 9)]));
    made = ['-6', '-1'].map((level) => new Uint8Array(run('gzip', [level, '-n', '-c'], { input: big }).stdout));
    made.push(new Uint8Array(run('pigz', ['-6', '-c'], { input: big }).stdout));
    made.push(new Uint8Array(Buffer.concat([made[2]!, made[0]!])));
    return made;
  };

  it('speculative streams (the second core) give the index a single stream gives, byte for byte', async () => {
    for (const [number, file] of bigFiles().entries()) {
      const single = await buildGzipIndex(bufferSource(file), { spacing: SPACING, speculation: { minimum: Infinity } });
      let joins = 0;
      const speculation = { minimum: 0, buffer: 1024 * KiB, onJoin: () => joins++ };
      const speculative = await buildGzipIndex(bufferSource(file), { spacing: SPACING, speculation });
      expect(Buffer.from(serializeSeekzIndex(speculative)).equals(Buffer.from(serializeSeekzIndex(single))), `file ${number}`).toBe(true);
      expect(joins, `file ${number}: speculative streams taken`).toBeGreaterThan(2);
    }
  });

  it('speculative streams change no outcome: damage anywhere gives the error a single stream gives', async () => {
    const good = bigFiles()[0]!;
    const speculation = { minimum: 0, buffer: 1024 * KiB };
    for (let at = 20; at < good.length; at += Math.floor(good.length / 13)) {
      for (const damage of [0x5a, 0x01]) {
        const damaged = new Uint8Array(good);
        damaged[at]! ^= damage;
        const single = await codeOf(() => buildGzipIndex(bufferSource(damaged), { spacing: SPACING, speculation: { minimum: Infinity } }));
        const speculative = await codeOf(() => buildGzipIndex(bufferSource(damaged), { spacing: SPACING, speculation }));
        expect(speculative, `byte ${at} ^ ${damage}`).toBe(single);
      }
    }
    for (const cut of [good.length - 9, Math.floor(good.length / 2), Math.floor(good.length / 5)]) {
      expect(await codeOf(() => buildGzipIndex(bufferSource(good.subarray(0, cut)), { spacing: SPACING, speculation }))).toBe('DEFLATE_TRUNCATED');
    }
  });
});

describe('reads through granules (index version 3)', () => {
  it('a 4 KiB read inflates from its point only to the end of its granule, and decodes once', async () => {
    const file = files['gzip -6']!;
    const index = await buildGzipIndex(bufferSource(file), { spacing: 1024 * KiB });
    const number = index.points.findIndex((point, at) => at > 0 && point.granules!.length >= 6);
    expect(number).toBeGreaterThan(0);
    const point = index.points[number]!;
    const granule = point.granules![1]!;
    const counted = countingSource(bufferSource(file));
    const reader = openIndexedGzip(counted.source, index);
    const offset = granule.uEnd - 5000;
    const got = await reader.read(offset, 4096);
    expect(sha256(got)).toBe(sha256(run('gzip', ['-dc'], { input: file }).stdout.subarray(offset, offset + 4096)));
    // Compressed bytes read: from the point's byte to the end of the granule's block, not to the next point.
    const firstByte = Math.floor(pointBit(point) / 8);
    expect(counted.reads).toEqual([[firstByte, granule.cEnd - firstByte]]);
    expect(granule.cEnd).toBeLessThan(index.points[number + 1]!.cOffset);
    expect(reader.decodes).toBe(1);
    // A read within the checked granule decodes nothing. The granules before it were inflated
    // for their history only, unchecked: a read there decodes again, the whole span this time.
    await reader.read(offset + 100, 100);
    expect(reader.decodes).toBe(1);
    await reader.read(point.uOffset + 10, 100);
    expect(reader.decodes).toBe(2);
    expect(counted.reads[1]).toEqual([firstByte, index.points[number + 1]!.cOffset - firstByte]);
    await reader.read(point.granules![4]!.uEnd - 10, 5);
    expect(reader.decodes).toBe(2);
  });

  for (const engine of engines) {
    it(`a flipped byte inside a granule makes the read fail with a clean error naming the granule or point (${engine})`, () => withEngine(engine, async () => {
      const file = files['gzip -6']!;
      const index = await buildGzipIndex(bufferSource(file), { spacing: 1024 * KiB });
      const point = index.points.find((candidate) => candidate.granules!.length >= 4)!;
      const granule = point.granules![2]!;
      const before = point.granules![1]!;
      const truth = run('gzip', ['-dc'], { input: file }).stdout;
      let refused = 0;
      // Flip bytes in the middle of granule 2's compressed data; read inside granule 2.
      // Granule 2's output comes from the blocks after granule 1's block ends.
      const [startByte, endByte] = [before.cEnd, granule.cEnd];
      expect(endByte - startByte).toBeGreaterThan(1000);
      for (let step = 1; step <= 8; step++) {
        const damaged = new Uint8Array(file);
        damaged[startByte + Math.floor(((endByte - startByte) * step) / 9)]! ^= 0x10;
        const offset = before.uEnd + 100;
        try {
          const got = await openIndexedGzip(bufferSource(damaged), index).read(offset, 4096);
          // A flip that changes nothing the read covers cannot be told from none; the bytes are still right.
          expect(sha256(got)).toBe(sha256(truth.subarray(offset, offset + 4096)));
        } catch (error) {
          expect(error).toBeInstanceOf(SeekzError);
          expect((error as SeekzError).code).toBe('INDEX_BAD_DATA');
          expect((error as Error).message).toMatch(/^index: access point \d+ .*(granule 2 |fails|more than|inflates to)/);
          refused++;
        }
      }
      expect(refused).toBeGreaterThan(4);
      // The index's own record of the granule, changed (and the index file re-signed): refused too.
      const forged: GzipIndex = { ...index, points: index.points.map((p) => (p === point ? { ...p, granules: p.granules!.map((g) => (g === granule ? { ...g, crc: g.crc ^ 1 } : g)) } : p)) };
      const reparsed = parseSeekzIndex(serializeSeekzIndex(forged));
      await expect(openIndexedGzip(bufferSource(file), reparsed).read(before.uEnd + 100, 10)).rejects.toMatchObject({ code: 'INDEX_BAD_DATA', message: expect.stringMatching(/granule 2 .*crc-32/) });
      // A granule's compressed end moved back: its data no longer inflates to its end.
      const moved: GzipIndex = { ...index, points: index.points.map((p) => (p === point ? { ...p, granules: p.granules!.map((g) => (g === before ? { ...g, cEnd: p.cOffset + 100 } : g)) } : p)) };
      expect(await codeOf(() => openIndexedGzip(bufferSource(file), moved).read(before.uEnd - 10, 10))).toBe('INDEX_BAD_DATA');
    }));
  }

  it('version 2 indexes (one CRC-32 per span) still read, whole spans checked', async () => {
    const file = files.pigz!;
    const index = await buildGzipIndex(bufferSource(file), { spacing: SPACING });
    // Version 2 as seekz wrote it before granules.
    const writer = new ByteWriter().bytes(Uint8Array.of(0x53, 0x5a, 0x49, 0x44, 0x58, 0x02, 0x0a, 0x00));
    writer.u64le(index.compressedSize).u64le(index.uncompressedSize).varint(index.spacing).varint(index.points.length);
    let [uAt, cAt] = [0, 0];
    for (const point of index.points) {
      const packed = point.window.length > 0 ? deflateRawSync(point.window) : new Uint8Array(0);
      writer.varint(point.uOffset - uAt).varint(point.cOffset - cAt).u8(point.bits).varint(point.window.length).varint(packed.length).bytes(packed).u32le(point.crc!);
      [uAt, cAt] = [point.uOffset, point.cOffset];
    }
    writer.varint(index.end!.offset).u8(0);
    const body = writer.finish();
    const v2 = parseSeekzIndex(new Uint8Array(Buffer.concat([body, Buffer.from(new Uint32Array([crc32(body)]).buffer)])));
    expect(v2.points.every((point) => point.granules === undefined && point.crc !== undefined)).toBe(true);
    const counted = countingSource(bufferSource(file));
    const reader = openIndexedGzip(counted.source, v2);
    expect(reader.verification).toBe('crc');
    const truth = run('gzip', ['-dc'], { input: file }).stdout;
    const offset = v2.points[2]!.uOffset + 10;
    expect(sha256(await reader.read(offset, 4096))).toBe(sha256(truth.subarray(offset, offset + 4096)));
    // The whole span, up to the next point.
    expect(counted.reads[0]![1]).toBe(Math.ceil(pointBit(v2.points[3]!) / 8) - Math.floor(pointBit(v2.points[2]!) / 8));
    expect(sha256(await reader.read(0, reader.size))).toBe(sha256(truth));
  });
});
