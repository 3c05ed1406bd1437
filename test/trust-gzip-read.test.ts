import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32 } from '../src/crc/crc32.js';
import { ByteWriter } from '../src/cursor.js';
import { SeekzError } from '../src/errors.js';
import { buildGzipIndex } from '../src/gzip/index/build.js';
import { parseGzidx } from '../src/gzip/index/gzidx.js';
import { parseGztoolIndex } from '../src/gzip/index/gztool.js';
import { openIndexedGzip } from '../src/gzip/index/indexed-reader.js';
import { parseSeekzIndex, serializeSeekzIndex } from '../src/gzip/index/seekz-format.js';
import type { GzipIndex } from '../src/gzip/index/types.js';
import { bufferSource } from '../src/source/buffer.js';
import { countingSource, diskLikeData, noise, requireTool, run, runCli, sha256, SYSTEM_PYTHON, tempDir, type RunResult } from './helpers/tools.js';

/*
 * Issue 8, "never a wrong byte", for gzip read through indexes (trust-gzipread). The oracle is
 * always the real gzip 1.12: its exit status (0 fine, 1 error, 2 warning), its output and its
 * message. seekz must never exit 0 (or 2) with bytes other than gzip's, and must fail whenever
 * gzip does.
 */

const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const KiB = 1024;

/** Deterministic positions: a linear congruential generator, so every run tests the same flips. */
function positions(seed: number, count: number, below: number): number[] {
  let state = seed >>> 0;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state % below;
  });
}

function compress(tool: 'gzip' | 'pigz', data: Uint8Array, extra: string[] = []): Uint8Array {
  const args = tool === 'gzip' ? ['-6', '-n', '-c', ...extra] : ['-6', '-n', '-c', '-p', '2', ...extra];
  const result = run(tool, args, { input: data });
  if (result.status !== 0) throw new Error(`${tool} failed: ${result.stderr}`);
  return new Uint8Array(result.stdout);
}

/** What gzip -d says about a file: the oracle. */
function gunzip(path: string): RunResult {
  return run('gzip', ['-dc', path]);
}

/** seekz's verdict must be gzip's: same status class, and the same bytes whenever it succeeds. */
function expectLikeGzip(seekz: RunResult, gzip: RunResult, what: string): void {
  if (gzip.status === 1) {
    expect(seekz.status, `${what}: gzip -d fails (${gzip.stderr.trim()}), seekz must too`).toBe(1);
    expect(seekz.stderr, what).not.toMatch(/internal error|\n\s+at /);
    return;
  }
  expect(seekz.status, `${what}: gzip -d exits ${gzip.status} (${gzip.stderr.trim()}); seekz said ${seekz.stderr.trim()}`).toBe(gzip.status);
  expect(sha256(seekz.stdout), `${what}: bytes`).toBe(sha256(gzip.stdout));
}

/** A read through `index` is either the truth or a SeekzError, never other bytes. */
async function readOrRefuse(file: Uint8Array, index: GzipIndex, offset: number, length: number, truth: Uint8Array): Promise<'same' | string> {
  try {
    const bytes = await openIndexedGzip(bufferSource(file), index).read(offset, length);
    expect(sha256(bytes), `read(${offset}, ${length})`).toBe(sha256(truth.subarray(offset, offset + length)));
    return 'same';
  } catch (error) {
    if (!(error instanceof SeekzError)) throw error;
    return error.code;
  }
}

const EXPORT_GZIDX = `
import sys, indexed_gzip
f = indexed_gzip.IndexedGzipFile(sys.argv[1], spacing=int(sys.argv[2]))
f.build_full_index()
f.export_index(sys.argv[3])
f.close()
`;

/** seekz cat through the index indexed_gzip exports for `file` (any seekz .idx moved away). */
function catThroughGzidx(file: string): RunResult {
  rmSync(`${file}.idx`, { force: true });
  const exported = run(SYSTEM_PYTHON, ['-c', EXPORT_GZIDX, file, String(64 * KiB), `${file}.gzidx`]);
  if (exported.status !== 0) throw new Error(`indexed_gzip failed: ${exported.stderr}`);
  const cat = runCli('seekz', ['cat', file]);
  rmSync(`${file}.gzidx`);
  return cat;
}

let dir: { path: string; remove: () => void };
let data: Uint8Array;
const files: Record<'gzip -6' | 'pigz' | 'multi-member' | 'bgzip', Uint8Array> = {} as never;
const path = (name: string) => join(dir.path, name);

beforeAll(() => {
  for (const [tool, pkg] of [['gzip', 'gzip'], ['pigz', 'pigz'], ['gztool', 'gztool'], ['bgzip', 'tabix']] as const) requireTool(tool, pkg);
  dir = tempDir('seekz-trust-gzip-');
  data = concat(diskLikeData(600 * KiB, 31), noise(40 * KiB, 5), diskLikeData(300 * KiB, 32));
  files['gzip -6'] = compress('gzip', data);
  files.pigz = compress('pigz', data);
  files['multi-member'] = concat(compress('gzip', data.subarray(0, 500 * KiB)), compress('pigz', data.subarray(500 * KiB)));
  files.bgzip = new Uint8Array(run('bgzip', ['-c'], { input: data }).stdout);
});
afterAll(() => dir?.remove());

describe('damaged gzip: one flipped bit never gives wrong bytes with exit 0', () => {
  for (const kind of ['gzip -6', 'pigz', 'multi-member'] as const) {
    it(`${kind}: seekz cat, read and index agree with gzip -d on every flip`, () => {
      const good = files[kind];
      positions(kind.length * 7919, 7, good.length * 8).forEach((bit, at) => {
        const damaged = new Uint8Array(good);
        damaged[bit >>> 3]! ^= 1 << (bit & 7);
        const name = path(`flip-${kind.replace(/\W/g, '')}-${at}.gz`);
        writeFileSync(name, damaged);
        const gzip = gunzip(name);
        const what = `${kind}, bit ${bit} (byte ${bit >>> 3} of ${good.length})`;
        expectLikeGzip(runCli('seekz', ['cat', name]), gzip, `seekz cat, ${what}`);
        const offset = 700 * KiB;
        const read = runCli('seekz', ['read', name, '--offset', String(offset), '--length', '20000']);
        if (gzip.status === 1) expect(read.status, `seekz read, ${what}`).toBe(1);
        else expect(sha256(read.stdout), `seekz read, ${what}`).toBe(sha256(gzip.stdout.subarray(offset, offset + 20000)));
        const index = runCli('seekz', ['index', '-q', '-f', '-o', `${name}.built`, name]);
        expect(index.status, `seekz index, ${what}: gzip -d exits ${gzip.status}`).toBe(gzip.status);
      });
    });

  }

  for (const kind of ['gzip -6', 'pigz', 'multi-member', 'bgzip'] as const) {
    it(`${kind}: library reads of 120 flipped files match gzip -d's verdict, and an index made before the damage catches it`, async () => {
      const good = files[kind];
      const before = await buildGzipIndex(bufferSource(good), { spacing: 64 * KiB });
      let caught = 0;
      for (const [at, bit] of positions(kind.length * 104729, 120, good.length * 8).entries()) {
        const damaged = new Uint8Array(good);
        damaged[bit >>> 3]! ^= 1 << (bit & 7);
        const name = path(`lib-${at}.gz`);
        writeFileSync(name, damaged);
        const gzip = gunzip(name);
        let verdict: string;
        try {
          const index = await buildGzipIndex(bufferSource(damaged), { spacing: 64 * KiB });
          const reader = openIndexedGzip(bufferSource(damaged), index);
          const all = await reader.read(0, reader.size);
          expect(sha256(all), `bit ${bit}`).toBe(sha256(gzip.stdout));
          verdict = reader.end?.after === 'garbage' ? 'warning' : 'ok';
        } catch (error) {
          if (!(error instanceof SeekzError)) throw error;
          verdict = 'error';
        }
        expect(verdict, `bit ${bit}: gzip -d exits ${gzip.status} (${gzip.stderr.trim()})`).toBe({ 0: 'ok', 1: 'error', 2: 'warning' }[gzip.status!]);
        // The index of the intact file, on the damaged one: every span is checked by its CRC-32.
        const offset = positions(bit, 1, data.length - 5000)[0]!;
        const outcome = await readOrRefuse(damaged, before, offset, 5000, data);
        if (outcome !== 'same') caught++;
      }
      expect(caught).toBeGreaterThan(0);
    });
  }
});

describe('sidecar indexes: damaged, forged or for another file give an error, never other bytes', () => {
  it('a damaged window in a GZIDX (no checksum there) makes seekz cat fail, naming the member', () => {
    const name = path('gzidx-damaged.gz');
    writeFileSync(name, files['gzip -6']);
    const exported = run(SYSTEM_PYTHON, ['-c', EXPORT_GZIDX, name, String(64 * KiB), `${name}.gzidx`]);
    expect(exported.status, exported.stderr).toBe(0);
    const bytes = new Uint8Array(readFileSync(`${name}.gzidx`));
    const index = parseGzidx(bytes);
    expect(index.points.filter((point) => point.window.length > 0).length).toBeGreaterThan(3);
    // Overwrite the last 4 KiB of the first window, the bytes back-references reach most.
    const firstWindowAt = bytes.length - index.points.filter((point) => point.window.length > 0).length * 32768;
    bytes.fill(0xa5, firstWindowAt + 28 * KiB, firstWindowAt + 32 * KiB);
    writeFileSync(`${name}.gzidx`, bytes);
    const cat = runCli('seekz', ['cat', name]);
    expect(cat.status, cat.stderr).toBe(1);
    expect(cat.stderr).toMatch(/^seekz: \S+: gzip: member 1 at offset 0: crc-32 mismatch/m);
    expect(cat.stderr).not.toMatch(/internal error/);
    // So does a read from the member's start through its end; one inside it cannot be checked
    // without a span CRC, which is what seekz info says about such an index.
    const read = runCli('seekz', ['read', name, '--offset', '0', '--length', String(data.length)]);
    expect(read.status, read.stderr).toBe(1);
    expect(read.stderr).toMatch(/^seekz: \S+: gzip: member 1 at offset 0: crc-32 mismatch/m);
    expect(runCli('seekz', ['info', name]).stdout.toString()).toMatch(/reads: through .*\.gzidx \(no checksums\)/);
  });

  it("another file's gztool index (no size recorded) is a clean error, not a RangeError", () => {
    const big = path('other-big.gz');
    const small = path('other-small.gz');
    writeFileSync(big, concat(files['gzip -6'], files['gzip -6'], files['gzip -6']));
    writeFileSync(small, files['gzip -6']);
    const built = run('gztool', ['-f', '-s', '1', '-I', `${big}.gzi`, '-i', big]);
    expect(built.status, built.stderr).toBe(0);
    // gztool's default sidecar name for small.gz is small.gzi.
    for (const target of [small, path('other-small2.gz')]) {
      if (target !== small) writeFileSync(target, compress('gzip', diskLikeData(2_500_000, 99)));
      writeFileSync(target.replace(/\.gz$/, '.gzi'), readFileSync(`${big}.gzi`));
      for (const args of [['cat', target], ['read', target, '--offset', '1000', '--length', '100']]) {
        const result = runCli('seekz', args);
        expect(result.status, `${args.join(' ')}: ${result.stderr}`).toBe(1);
        expect(result.stderr).toMatch(/^seekz: \S+: index: /);
        expect(result.stderr).not.toMatch(/internal error|RangeError/);
      }
    }
  });

  it('a seekz .idx with an edited window or offset and a recomputed CRC gives an error', async () => {
    const name = path('forged.gz');
    writeFileSync(name, files['gzip -6']);
    expect(runCli('seekz', ['index', '-q', '--spacing', '64K', name]).status).toBe(0);
    const good = parseSeekzIndex(readFileSync(`${name}.idx`));
    const point = good.points.findIndex((candidate) => candidate.window.length === 32768 && candidate.uOffset > 100 * KiB);
    const forgeries: Record<string, GzipIndex> = {
      window: { ...good, points: good.points.map((p, n) => (n === point ? { ...p, window: new Uint8Array(32768).fill(0x20) } : p)) },
      'compressed offset': { ...good, points: good.points.map((p, n) => (n === point ? { ...p, cOffset: p.cOffset + 1 } : p)) },
      'uncompressed offset': { ...good, points: good.points.map((p, n) => (n === point ? { ...p, uOffset: p.uOffset - 1 } : p)) },
    };
    for (const [what, forged] of Object.entries(forgeries)) {
      writeFileSync(`${name}.idx`, serializeSeekzIndex(forged)); // the file's own CRC-32 is recomputed
      const at = good.points[point]!.uOffset + 10;
      const read = runCli('seekz', ['read', name, '--offset', String(at), '--length', '4096']);
      expect(read.status, `${what}: ${read.stderr}`).toBe(1);
      expect(read.stderr, what).toMatch(/^seekz: \S+: index: access point/);
    }
  });

  it('a version-1 seekz .idx (no span CRCs) still reads, checked for structure; seekz info says which guarantee reads get', async () => {
    const name = path('v1.gz');
    writeFileSync(name, files['multi-member']);
    expect(runCli('seekz', ['index', '-q', '--spacing', '64K', name]).status).toBe(0);
    expect(runCli('seekz', ['info', name]).stdout.toString()).toMatch(/reads: through .*v1\.gz\.idx: every span checked against its CRC-32/);
    // Version 1, as seekz wrote it before span CRCs: version byte 1, no CRC per point, no end record.
    const index = parseSeekzIndex(readFileSync(`${name}.idx`));
    const writer = new ByteWriter().bytes(Uint8Array.of(0x53, 0x5a, 0x49, 0x44, 0x58, 0x01, 0x0a, 0x00));
    writer.u64le(index.compressedSize).u64le(index.uncompressedSize).varint(index.spacing).varint(index.points.length);
    let [uAt, cAt] = [0, 0];
    for (const point of index.points) {
      const packed = point.window.length > 0 ? deflateRawSync(point.window) : new Uint8Array(0);
      writer.varint(point.uOffset - uAt).varint(point.cOffset - cAt).u8(point.bits).varint(point.window.length).varint(packed.length).bytes(packed);
      [uAt, cAt] = [point.uOffset, point.cOffset];
    }
    const body = writer.finish();
    const v1 = concat(body, new Uint8Array(new Uint32Array([crc32(body)]).buffer));
    writeFileSync(`${name}.idx`, v1);
    const parsed = parseSeekzIndex(v1);
    expect(parsed.points.every((point) => point.crc === undefined)).toBe(true);
    expect(openIndexedGzip(bufferSource(files['multi-member']), parsed).verification).toBe('structure');
    expect(runCli('seekz', ['info', name]).stdout.toString()).toMatch(/reads: through .*v1\.gz\.idx \(no checksums\)/);
    const cat = runCli('seekz', ['cat', name]);
    expect(cat.status, cat.stderr).toBe(0);
    expect(cat.stderr).not.toMatch(/building one in memory/);
    expect(sha256(cat.stdout)).toBe(sha256(gunzip(name).stdout));
  });

  it('a span that inflates longer, or ends off the next point, is refused (exact length and end bit)', async () => {
    const file = files['gzip -6'];
    const built = await buildGzipIndex(bufferSource(file), { spacing: 64 * KiB });
    // As an imported index would be: no span CRCs, so only the structure is checked.
    const bare: GzipIndex = { ...built, end: undefined, points: built.points.map(({ crc: _, granules: __, ...point }) => point) };
    const reader = openIndexedGzip(bufferSource(file), bare);
    expect(reader.verification).toBe('structure');
    expect(sha256(await reader.read(0, reader.size))).toBe(sha256(data));
    const n = 3;
    const edit = (change: Partial<GzipIndex['points'][number]>): GzipIndex => ({ ...bare, points: bare.points.map((p, at) => (at === n ? { ...p, ...change } : p)) });
    const point = bare.points[n]!;
    // Point n one byte earlier: span n-1 inflates one byte more than the index gives it (the old
    // reader accepted any inflation at least as long as needed).
    const longer = edit({ uOffset: point.uOffset - 1, window: point.window.subarray(0, point.window.length - 1) });
    await expect(openIndexedGzip(bufferSource(file), longer).read(bare.points[n - 1]!.uOffset, 100)).rejects.toMatchObject({ code: 'INDEX_BAD_DATA', message: expect.stringMatching(/more than the \d+ bytes/) });
    // The next point's bit moved: the span no longer ends on a block boundary.
    for (const delta of [-1, 1, 8]) {
      const bit = point.cOffset * 8 - point.bits + delta;
      const moved = edit({ cOffset: Math.ceil(bit / 8), bits: Math.ceil(bit / 8) * 8 - bit });
      const outcome = await readOrRefuse(file, moved, bare.points[n - 1]!.uOffset, 100, data);
      expect(outcome, `end bit moved by ${delta}`).toBe('INDEX_BAD_DATA');
    }
  });
});

describe('multi-member, padded and trailing data behave as in gzip', () => {
  const hello = () => compress('gzip', new TextEncoder().encode('hello\n'));
  const world = () => compress('gzip', new TextEncoder().encode('world\n'));

  /** seekz cat with no index, then with a seekz index, then (if given) with another tool's: all like gzip -d. */
  function catLikeGzip(name: string, bytes: Uint8Array): RunResult {
    const file = path(name);
    writeFileSync(file, bytes);
    const gzip = gunzip(file);
    expectLikeGzip(runCli('seekz', ['cat', file]), gzip, `${name} without an index`);
    const index = runCli('seekz', ['index', '-q', '-f', file]);
    expect(index.status, `seekz index ${name}: ${index.stderr}`).toBe(gzip.status);
    if (index.status !== 1) expectLikeGzip(runCli('seekz', ['cat', file]), gzip, `${name} with its seekz index`);
    return gzip;
  }

  it('seekz info shows multi-member files (cat a.gz b.gz, BGZF) with their members', () => {
    const cat = path('cat-ab.gz');
    writeFileSync(cat, concat(files['gzip -6'], files.pigz));
    const info = runCli('seekz', ['info', cat]);
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout.toString()).toMatch(/format: gzip, 2 members/);
    expect(info.stdout.toString()).toContain(`uncompressed: ${2 * data.length} bytes`);
    expect(info.stdout.toString()).toContain(`member 2: offset ${files['gzip -6'].length}, compressed ${files.pigz.length}, uncompressed ${data.length}`);

    const bgzf = path('data.bgz');
    const made = run('bgzip', ['-c'], { input: data });
    writeFileSync(bgzf, made.stdout);
    const bgzfInfo = runCli('seekz', ['info', bgzf]);
    expect(bgzfInfo.status, bgzfInfo.stderr).toBe(0);
    expect(bgzfInfo.stdout.toString()).toMatch(/format: gzip, \d+ members \(BGZF\)/);
    expect(bgzfInfo.stdout.toString()).toContain(`uncompressed: ${data.length} bytes`);
    expect(sha256(runCli('seekz', ['cat', bgzf]).stdout)).toBe(sha256(data));
  });

  it("gztool's own index of a multi-member file is accepted: reads equal zcat", () => {
    const file = path('multi-gztool.gz');
    const small = concat(hello(), world(), files['multi-member']);
    writeFileSync(file, small);
    const built = run('gztool', ['-f', '-s', '1', '-I', path('multi-gztool.gzi'), '-i', file]);
    expect(built.status, built.stderr).toBe(0);
    expect(parseGztoolIndex(readFileSync(path('multi-gztool.gzi'))).points.length).toBeGreaterThan(0);
    const gzip = gunzip(file);
    const cat = runCli('seekz', ['cat', file]);
    expectLikeGzip(cat, gzip, 'cat through the gztool index');
    expect(cat.stderr).not.toMatch(/building one in memory/);
    const read = runCli('seekz', ['read', file, '--offset', '3', '--length', '700000']);
    expect(read.status, read.stderr).toBe(0);
    expect(sha256(read.stdout)).toBe(sha256(gzip.stdout.subarray(3, 700003)));
  });

  it("NUL padding between members: gzip's bytes, its warning and exit 2, with and without an index", () => {
    const gzip = catLikeGzip('padded.gz', concat(hello(), new Uint8Array(100), world()));
    expect(gzip.status).toBe(2);
    expect(gzip.stderr).toMatch(/decompression OK, trailing garbage ignored/);
    const cat = runCli('seekz', ['cat', path('padded.gz')]);
    expect(cat.stderr).toMatch(/^seekz: .*padded\.gz: decompression OK, trailing garbage ignored/m);
    expect(cat.stdout.toString()).toBe('hello\n');
    // indexed_gzip skips the padding and indexes the member after it, which gzip -d never reads:
    // such an index is refused, never used to give other bytes than gzip's.
    const through = catThroughGzidx(path('padded.gz'));
    expect(through.status).toBe(1);
    expect(through.stderr).toMatch(/^seekz: \S+: index: .*gzip -d stops at file offset \d+ \(trailing garbage after a member\), but the index goes on past it/);
  });

  it('a long zero padding is scanned in pieces: the last span reads only what its data needs', async () => {
    const file = concat(files['gzip -6'], new Uint8Array(24 << 20));
    const index = await buildGzipIndex(bufferSource(file), { spacing: 64 * KiB });
    expect(index.end).toEqual({ offset: files['gzip -6'].length, after: 'zeros' });
    const { source, reads } = countingSource(bufferSource(file));
    const reader = openIndexedGzip(source, index);
    expect(sha256(await reader.read(data.length - 100, 100))).toBe(sha256(data.subarray(data.length - 100)));
    expect(Math.max(...reads.map(([, length]) => length))).toBeLessThanOrEqual(1 << 20);
  });

  it('zero padding to the end is ignored silently, as gzip does without -v', () => {
    const gzip = catLikeGzip('zero-tail.gz', concat(hello(), world(), new Uint8Array(512)));
    expect(gzip.status).toBe(0);
    expect(runCli('seekz', ['cat', path('zero-tail.gz')]).stderr).not.toMatch(/garbage/);
    expectLikeGzip(catThroughGzidx(path('zero-tail.gz')), gzip, 'zero-tail.gz through its GZIDX');
  });

  it('junk after a member: a warning and exit 2; bytes that start like a member but are not one: exit 1', () => {
    const junk = catLikeGzip('junk.gz', concat(hello(), new TextEncoder().encode('junk junk\n')));
    expect(junk.status).toBe(2);
    expectLikeGzip(catThroughGzidx(path('junk.gz')), junk, 'junk.gz through its GZIDX');
    expect(catLikeGzip('junk-between.gz', concat(hello(), new TextEncoder().encode('junk'), world())).status).toBe(2);
    expect(catLikeGzip('bad-member.gz', concat(hello(), Uint8Array.of(0x1f, 0x8b, 0x78, 1, 2, 3, 4, 5, 6, 7, 8))).status).toBe(1);
    expect(catLikeGzip('half-magic.gz', concat(hello(), Uint8Array.of(0x1f))).status).toBe(1);
    expect(catLikeGzip('one-byte.gz', concat(hello(), Uint8Array.of(0x6a))).status).toBe(1);
  });

  it('a BC extra field with a wrong BSIZE in a file that is not BGZF is not taken for BGZF', () => {
    // gzip -6 output with FEXTRA holding a 'BC' subfield whose BSIZE points into the deflate data.
    const plain = files['gzip -6'];
    const extra = Uint8Array.of(6, 0, 0x42, 0x43, 2, 0, 0x34, 0x12); // XLEN 6, 'BC', LEN 2, BSIZE 0x1234
    const header = Uint8Array.from(plain.subarray(0, 10));
    header[3]! |= 0x04; // FEXTRA
    const file = path('fake-bgzf.gz');
    writeFileSync(file, concat(header, extra, plain.subarray(10)));
    expect(gunzip(file).status).toBe(0);
    const info = runCli('seekz', ['info', file]);
    expect(info.status, info.stderr).toBe(0);
    expect(info.stdout.toString()).toContain(`uncompressed: ${data.length} bytes`);
    expect(info.stdout.toString()).not.toMatch(/BGZF/);
    expectLikeGzip(runCli('seekz', ['cat', file]), gunzip(file), 'cat of a fake BGZF file');
  });

  it('a 0-byte file is an error, as in gzip, not an empty index', () => {
    const file = path('empty.gz');
    writeFileSync(file, new Uint8Array(0));
    expect(gunzip(file).status).toBe(1);
    for (const args of [['index', '-q', '-f', file], ['cat', file], ['info', file]]) {
      const result = runCli('seekz', args);
      expect(result.status, args[0]).toBe(1);
      expect(result.stderr).toMatch(/^seekz: \S+empty\.gz: gzip: the file is empty/);
    }
  });
});
