import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { buildGzipIndex } from '../src/gzip/index/build.js';
import { openIndexedGzip } from '../src/gzip/index/indexed-reader.js';
import { primeCompressed } from '../src/gzip/index/prime.js';
import { parseSeekzIndex, serializeSeekzIndex } from '../src/gzip/index/seekz-format.js';
import { openGzip } from '../src/gzip/reader.js';
import { bufferSource } from '../src/source/buffer.js';
import type { Source } from '../src/source/source.js';
import { diskLikeData, requireTool, run, runCli, tempDir } from './helpers/tools.js';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const SPACING = 256 * 1024;

/** Random reads (some spanning points) must equal the ground truth. */
async function expectReadsMatch(reader: Source, truth: Uint8Array, count = 60): Promise<void> {
  expect(reader.size).toBe(truth.length);
  let state = 12345;
  const next = () => (state = (state * 1103515245 + 12345) % 2 ** 31);
  for (let probe = 0; probe < count; probe++) {
    const offset = next() % Math.max(1, truth.length);
    const length = probe % 5 === 0 ? 3 * SPACING + 17 : 1 + (next() % 8192);
    const got = await reader.read(offset, length);
    const want = truth.subarray(offset, offset + length);
    expect(got.length).toBe(want.length);
    if (sha256(got) !== sha256(want)) throw new Error(`read(${offset}, ${length}) differs from zcat`);
  }
}

describe('random access into gzip files other tools made', () => {
  let dir: { path: string; remove: () => void };
  let plain: Uint8Array;
  const files: Record<string, Uint8Array> = {};
  beforeAll(() => {
    for (const [tool, pkg] of [['gzip', 'gzip'], ['pigz', 'pigz'], ['bgzip', 'tabix']] as const) requireTool(tool, pkg);
    dir = tempDir();
    // Text, binary and zeros; plus a random stretch that gzip stores verbatim.
    const random = Uint8Array.from({ length: 300_000 }, (_, index) => (Math.sin(index * 12.9898) * 43758.5453 * 256) & 0xff);
    plain = Buffer.concat([diskLikeData(3_000_000, 77), random, diskLikeData(1_500_000, 78)]);
    const input = join(dir.path, 'plain');
    writeFileSync(input, plain);
    const make = (name: string, command: string, args: string[]) => {
      const result = run(command, [...args, input]);
      expect(result.status, result.stderr).toBe(0);
      files[name] = new Uint8Array(result.stdout);
    };
    make('gzip -1', 'gzip', ['-1', '-c', '-n']);
    make('gzip -6', 'gzip', ['-6', '-c', '-n']);
    make('gzip -9', 'gzip', ['-9', '-c', '-n']);
    make('pigz', 'pigz', ['-6', '-c']);
    make('pigz -i', 'pigz', ['-i', '-c']);
    make('pigz -0 (stored blocks)', 'pigz', ['-0', '-c']);
    make('bgzip', 'bgzip', ['-c']);
    files['multi-member'] = Buffer.concat([files['gzip -6']!, files['pigz -i']!, files['gzip -1']!]);
  });
  afterAll(() => dir.remove());

  for (const name of ['gzip -1', 'gzip -6', 'gzip -9', 'pigz', 'pigz -i', 'pigz -0 (stored blocks)', 'bgzip', 'multi-member']) {
    it(`${name}: reads through a fresh index equal zcat`, async () => {
      const file = files[name]!;
      const truth = name === 'multi-member' ? Buffer.concat([plain, plain, plain]) : plain;
      expect(sha256(run('gzip', ['-dc'], { input: file }).stdout)).toBe(sha256(truth));
      const index = await buildGzipIndex(bufferSource(file), { spacing: SPACING });
      expect(index.uncompressedSize).toBe(truth.length);
      expect(index.points[0]!.uOffset).toBe(0);
      for (let at = 1; at < index.points.length; at++) expect(index.points[at]!.uOffset).toBeGreaterThanOrEqual(index.points[at - 1]!.uOffset);
      const reader = openIndexedGzip(bufferSource(file), index);
      await expectReadsMatch(reader, truth);
      // The index survives our file format.
      const again = openIndexedGzip(bufferSource(file), parseSeekzIndex(serializeSeekzIndex(index)));
      await expectReadsMatch(again, truth, 20);
    });
  }

  it('points land at every bit position, and each resumes correctly', async () => {
    const seen = new Set<number>();
    for (const name of ['gzip -1', 'gzip -6', 'gzip -9', 'pigz', 'pigz -i']) {
      const index = await buildGzipIndex(bufferSource(files[name]!), { spacing: 32 * 1024 });
      for (const point of index.points) seen.add(point.bits);
      await expectReadsMatch(openIndexedGzip(bufferSource(files[name]!), index), plain, 40);
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('the empty-block preface inflates to nothing for every bit offset', () => {
    // A fixed-Huffman stream (no byte alignment inside), moved so its first block header starts
    // in the top `bits` bits of byte 0, behind junk bits of a "previous block".
    const data = new TextEncoder().encode('fixed block after a preface');
    for (let bits = 1; bits <= 7; bits++) {
      const raw = deflateRawSync(data, { strategy: constants.Z_FIXED });
      const stream = new Uint8Array(raw.length + 1);
      const shift = 8 - bits;
      stream[0] = (raw[0]! << shift) & 0xff;
      for (let index = 1; index < raw.length + 1; index++) stream[index] = ((raw[index]! << shift) | (raw[index - 1]! >>> (8 - shift))) & 0xff;
      stream[0] |= 0x55 & ((1 << shift) - 1); // junk bits from a "previous block"
      const out = inflateRawSync(primeCompressed(stream, bits), { finishFlush: constants.Z_SYNC_FLUSH });
      expect(Buffer.from(out).toString()).toBe('fixed block after a preface');
    }
  });

  it('seekz read and cat use a sidecar index; an index for another file is refused', () => {
    const path = join(dir.path, 'side.gz');
    writeFileSync(path, files['gzip -6']!);
    const built = runCli('seekz', ['index', '-q', '--spacing', '256K', path]);
    expect(built.status, built.stderr).toBe(0);
    const read = runCli('seekz', ['read', path, '--offset', '1000000', '--length', '5000']);
    expect(read.status).toBe(0);
    expect(read.stderr).not.toMatch(/building one in memory/);
    expect(sha256(read.stdout)).toBe(sha256(plain.subarray(1_000_000, 1_005_000)));
    expect(sha256(runCli('seekz', ['cat', path]).stdout)).toBe(sha256(plain));
    // Swap in an index built for a different file.
    writeFileSync(`${path}.idx`, readFileSync(join(dir.path, 'side.gz.idx')));
    writeFileSync(path, files['gzip -9']!);
    const refused = runCli('seekz', ['read', path, '--offset', '0', '--length', '10']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/index: the index belongs to another file/);
  });

  it('without an index, says it builds one in memory, and reads correctly', () => {
    const path = join(dir.path, 'noindex.gz');
    writeFileSync(path, files['pigz']!);
    const read = runCli('seekz', ['read', path, '--offset', '4000000', '--length', '100']);
    expect(read.status).toBe(0);
    expect(read.stderr).toMatch(/no index; building one in memory/);
    expect(sha256(read.stdout)).toBe(sha256(plain.subarray(4_000_000, 4_000_100)));
  });

  it('an index with a damaged point gives a specific error, never wrong data', async () => {
    const file = files['gzip -6']!;
    const index = await buildGzipIndex(bufferSource(file), { spacing: SPACING });
    const point = index.points[3]!;
    const wrong = { ...index, points: index.points.map((p, n) => (n === 3 ? { ...point, cOffset: point.cOffset + 1 } : p)) };
    // Span 3 starts off its block, and span 2 no longer ends on the next point's bit: both are
    // refused, with or without the span CRCs (trust-gzip-read.test.ts covers the other damage).
    const bare = { ...wrong, points: wrong.points.map(({ crc: _, granules: __, ...p }) => p) };
    for (const damaged of [wrong, bare]) {
      for (const at of [point.uOffset + 10, point.uOffset - 10]) {
        await expect(openIndexedGzip(bufferSource(file), damaged).read(at, 100)).rejects.toMatchObject({ code: 'INDEX_BAD_DATA' });
      }
    }
  });

  it('fuzzed seekz index files: only SeekzError, never a crash or hang', async () => {
    const index = await buildGzipIndex(bufferSource(files['gzip -1']!), { spacing: 1 << 20 });
    const bytes = serializeSeekzIndex(index);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const damaged = new Uint8Array(bytes);
        damaged[at]! ^= flip;
        try {
          parseSeekzIndex(damaged);
          throw new Error('a damaged index parsed'); // the CRC covers every byte
        } catch (error) {
          expect(error).toBeInstanceOf(SeekzError);
        }
      }),
      { numRuns: 300 },
    );
    expect(() => parseSeekzIndex(bytes.subarray(0, 20))).toThrowError(expect.objectContaining({ code: 'INDEX_BAD_DATA' }));
  });

  it('fuzzed gzip files: building an index gives a result or a SeekzError, within a time limit', async () => {
    const small = new Uint8Array(run('gzip', ['-6', '-c', '-n'], { input: diskLikeData(200_000, 5) }).stdout);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 10, max: small.length - 9 }), fc.integer({ min: 1, max: 255 }), async (at, flip) => {
        const damaged = new Uint8Array(small);
        damaged[at]! ^= flip;
        const outcome = await Promise.race([
          buildGzipIndex(bufferSource(damaged), { spacing: 32 * 1024 }).then(() => 'built', (error: unknown) => error),
          new Promise((resolve) => setTimeout(() => resolve('hang'), 5000)),
        ]);
        expect(outcome).not.toBe('hang');
        if (outcome !== 'built') expect(outcome).toBeInstanceOf(SeekzError);
      }),
      { numRuns: 150 },
    );
  });
});

describe('our own partial-deflate files need no index', () => {
  it('openGzip reads them through the map, without building anything', async () => {
    const dir = tempDir();
    try {
      const data = diskLikeData(2_000_000, 9);
      writeFileSync(join(dir.path, 'in'), data);
      const out = join(dir.path, 'out.gz');
      expect(runCli('partial-deflate', ['-q', join(dir.path, 'in'), out, '100000', '300000']).status).toBe(0);
      let built = false;
      const reader = await openGzip(bufferSource(readFileSync(out)), { onBuildIndex: () => (built = true) });
      expect(reader.access).toBe('map');
      expect(built).toBe(false);
      await expectReadsMatch(reader, data, 30);
    } finally {
      dir.remove();
    }
  });
});
