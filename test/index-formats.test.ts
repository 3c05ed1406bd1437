import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, deflateSync, inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { parseGzidx, serializeGzidx } from '../src/gzip/index/gzidx.js';
import { parseGztoolIndex, serializeGztoolIndex } from '../src/gzip/index/gztool.js';
import { openIndexedGzip } from '../src/gzip/index/indexed-reader.js';
import { bufferSource } from '../src/source/buffer.js';
import { WINDOW_SIZE, type AccessPoint, type GzipIndex } from '../src/gzip/index/types.js';
import { diskLikeData, requireTool, run, SYSTEM_PYTHON, tempDir, noise } from './helpers/tools.js';

/*
 * Index files made by the real tools (python3-indexed-gzip 1.7.0, gztool 1.5.1) from gzip files
 * made at test time. Every point is checked against the data itself, not against seekz's own
 * gzip code: its window must be the bytes before it, and inflating from it (raw inflate primed
 * with the window, the stream shifted by `bits`) must give the bytes after it.
 */

const MiB = 1024 * 1024;

/** Deterministic text: numbered lines of words, compressible like logs. */
function textData(length: number, seed: number): Uint8Array {
  const words = ['alpha', 'kernel', 'mount', 'error', 'ok', 'read', 'write', 'sector', 'inode', 'cache', 'gzip', 'index'];
  const lines: string[] = [];
  let size = 0;
  let state = seed >>> 0 || 1;
  for (let line = 0; size < length; line++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const text = `${line} ${words[state % 12]} ${words[(state >>> 8) % 12]} ${state % 99991} ${words[(state >>> 16) % 12]}\n`;
    lines.push(text);
    size += text.length;
  }
  return new TextEncoder().encode(lines.join('')).subarray(0, length);
}


const concat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

function compressWith(tool: 'gzip' | 'pigz', data: Uint8Array): Uint8Array {
  const args = tool === 'gzip' ? ['-6', '-n', '-c'] : ['-6', '-n', '-c', '-p', '2'];
  const result = run(tool, args, { input: data });
  if (result.status !== 0) throw new Error(`${tool} failed: ${result.stderr}`);
  return new Uint8Array(result.stdout);
}

function python(script: string, args: string[]): Buffer {
  const result = run(SYSTEM_PYTHON, ['-c', script, ...args]);
  if (result.status !== 0) throw new Error(`${SYSTEM_PYTHON} failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}

function requireIndexedGzip(): void {
  const result = run(SYSTEM_PYTHON, ['-c', 'import indexed_gzip']);
  if (result.status !== 0) {
    throw new Error(`indexed_gzip is not importable by ${SYSTEM_PYTHON}: apt-get install -y python3-indexed-gzip (${result.stderr.trim()})`);
  }
}

const EXPORT_GZIDX = `
import sys, indexed_gzip
f = indexed_gzip.IndexedGzipFile(sys.argv[1], spacing=int(sys.argv[2]))
f.build_full_index()
f.export_index(sys.argv[3])
f.close()
`;

/** Imports an index and reports the points indexed_gzip holds, then the bytes of each read. */
const READ_WITH_GZIDX = `
import sys, json, base64, indexed_gzip
f = indexed_gzip.IndexedGzipFile(sys.argv[1], index_file=sys.argv[2])
points = [[u, c] for u, c in f.seek_points()]
reads = []
for pair in sys.argv[3:]:
    offset, length = (int(x) for x in pair.split(':'))
    f.seek(offset)
    reads.append(base64.b64encode(f.read(length)).decode())
f.close()
print(json.dumps({'points': points, 'reads': reads}))
`;

function exportWithIndexedGzip(dir: string, name: string, spacing: number): Uint8Array {
  const indexPath = join(dir, `${name}.${spacing}.gzidx`);
  python(EXPORT_GZIDX, [join(dir, name), String(spacing), indexPath]);
  return new Uint8Array(readFileSync(indexPath));
}

function buildWithGztool(dir: string, name: string, spanMiB: number, lines = true): Uint8Array {
  const indexPath = join(dir, `${name}.${spanMiB}.${lines ? 'x' : 'z'}.gzi`);
  const result = run('gztool', ['-f', lines ? '-x' : '-z', '-s', String(spanMiB), '-I', indexPath, join(dir, name)]);
  if (result.status !== 0) throw new Error(`gztool failed (${result.status}): ${result.stderr}`);
  return new Uint8Array(readFileSync(indexPath));
}

/** LSB-first bit writer for the no-op prefix below. */
function bitWriter() {
  const bits: number[] = [];
  const put = (value: number, count: number) => {
    for (let at = 0; at < count; at++) bits.push((value >>> at) & 1);
  };
  return { bits, put };
}

/**
 * Complete, non-final deflate blocks that produce nothing and take a number of bits congruent to
 * `residue` mod 8. Node's zlib has no inflatePrime, and shifting the stream by the missing bits
 * would move the byte boundaries a stored block aligns to; a prefix of this length keeps every
 * original bit at its original position mod 8.
 */
function noOpPrefix(residue: number): number[] {
  const out = bitWriter();
  // Empty fixed-Huffman block: BFINAL 0, BTYPE 01, end-of-block (7-bit code 0). 10 bits.
  const fixed = () => {
    out.put(0, 1); // BFINAL
    out.put(1, 2); // BTYPE 01
    out.put(0, 7); // end-of-block
  };
  // Dynamic block holding only end-of-block, with 19 code-length code lengths. 93 bits.
  const dynamic = () => {
    out.put(0, 1); // BFINAL
    out.put(2, 2); // BTYPE 10
    out.put(0, 5); // HLIT: 257 literal/length codes
    out.put(0, 5); // HDIST: 1 distance code
    out.put(19 - 4, 4); // HCLEN
    const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
    for (const symbol of order) out.put(symbol === 18 || symbol === 1 ? 1 : 0, 3);
    // Code-length codes: symbol 1 is code 0, symbol 18 is code 1 (both one bit).
    out.put(1, 1); // symbol 18: a run of zeros,
    out.put(138 - 11, 7); // 138 of them
    out.put(1, 1);
    out.put(118 - 11, 7); // 118 more: literals 0-255 unused
    out.put(0, 1); // end-of-block has length 1
    out.put(0, 1); // the one distance code has length 1
    out.put(0, 1); // end-of-block
  };
  for (const useDynamic of [0, 1]) {
    for (let fixedCount = 0; fixedCount < 4; fixedCount++) {
      if ((93 * useDynamic + 10 * fixedCount) % 8 !== residue) continue;
      if (useDynamic) dynamic();
      for (let count = 0; count < fixedCount; count++) fixed();
      return out.bits;
    }
  }
  throw new Error(`no prefix for residue ${residue}`);
}

/** Inflates from a point with node's zlib alone: the independent check that the point is right. */
function inflateFrom(file: Uint8Array, point: AccessPoint): Uint8Array {
  let input = file.subarray(point.cOffset, point.cOffset + 16 * 1024);
  if (point.bits > 0) {
    // The point's first bits are the top `bits` bits of the byte before cOffset.
    const { bits, put } = bitWriter();
    bits.push(...noOpPrefix(8 - point.bits));
    put(file[point.cOffset - 1]! >>> (8 - point.bits), point.bits);
    const head = new Uint8Array(bits.length / 8);
    bits.forEach((bit, at) => (head[at >>> 3]! |= bit << (at & 7)));
    input = concat(head, input);
  }
  return new Uint8Array(
    inflateRawSync(input, {
      dictionary: point.window.length > 0 ? point.window : undefined,
      finishFlush: constants.Z_SYNC_FLUSH,
    }),
  );
}

interface Corpus {
  name: string;
  file: Uint8Array;
  data: Uint8Array;
  /** Uncompressed offsets where gzip members start. */
  members: number[];
}

const memberStart = (corpus: Corpus, uOffset: number) => Math.max(...corpus.members.filter((start) => start <= uOffset));

/**
 * The checks every index from a real tool must pass. `exactWindows`: gztool keeps only the
 * member's own history, so each window is exactly min(32 KiB, bytes since the member started).
 */
function checkPoints(index: GzipIndex, corpus: Corpus, exactWindows: boolean): void {
  const { file, data } = corpus;
  expect(index.points.length).toBeGreaterThan(1);
  expect(index.points[0]).toMatchObject({ uOffset: 0, bits: 0 });
  expect(index.points[0]!.window.length).toBe(0);
  let checkedWithWindow = 0;
  index.points.forEach((point, at) => {
    const previous = index.points[at - 1];
    if (previous) {
      expect(point.uOffset).toBeGreaterThanOrEqual(previous.uOffset);
      expect(point.cOffset).toBeGreaterThanOrEqual(previous.cOffset);
    }
    expect(point.bits).toBeGreaterThanOrEqual(0);
    expect(point.bits).toBeLessThanOrEqual(7);
    expect(point.cOffset).toBeLessThanOrEqual(file.length);
    const { window, uOffset } = point;
    expect(window.length).toBeLessThanOrEqual(Math.min(WINDOW_SIZE, uOffset));
    // Inside the point's member the window must be the data right before the point.
    const own = Math.min(window.length, uOffset - memberStart(corpus, uOffset));
    expect(Buffer.from(window.subarray(window.length - own)).equals(data.subarray(uOffset - own, uOffset)), `window of point ${at}`).toBe(true);
    if (exactWindows) expect(window.length).toBe(Math.min(WINDOW_SIZE, uOffset - memberStart(corpus, uOffset)));
    if (window.length > 0) {
      expect(window.length === WINDOW_SIZE || exactWindows || window.length === uOffset).toBe(true);
      checkedWithWindow++;
    }
    if (uOffset === data.length) {
      expect(point.cOffset).toBe(file.length); // indexed_gzip's closing point
      return;
    }
    const memberEnd = corpus.members.find((start) => start > uOffset) ?? data.length;
    const produced = inflateFrom(file, point);
    const compare = Math.min(4096, memberEnd - uOffset);
    expect(produced.length, `inflation from point ${at}`).toBeGreaterThanOrEqual(compare);
    expect(Buffer.from(produced.subarray(0, compare)).equals(data.subarray(uOffset, uOffset + compare)), `inflation from point ${at}`).toBe(true);
  });
  expect(checkedWithWindow).toBeGreaterThan(0);
}

/** Random reads: every point's neighbourhood, member edges, both ends, and seeded offsets. */
function readPlan(corpus: Corpus, index: GzipIndex): [number, number][] {
  const size = corpus.data.length;
  const offsets = new Set<number>([0, size - 1, ...corpus.members, ...corpus.members.map((start) => start - 1)]);
  for (const point of index.points) for (const delta of [-1, 0, 1, 5000]) offsets.add(point.uOffset + delta);
  let state = 12345;
  for (let count = 0; count < 16; count++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    offsets.add(state % size);
  }
  return [...offsets].filter((offset) => offset >= 0 && offset < size).map((offset) => [offset, 1 + ((offset * 7919) % 9000)]);
}

function readWithIndexedGzip(dir: string, corpus: Corpus, index: GzipIndex, indexBytes: Uint8Array, tag: string) {
  const indexPath = join(dir, `${corpus.name}.${tag}.gzidx`);
  writeFileSync(indexPath, indexBytes);
  const plan = readPlan(corpus, index);
  const reply = JSON.parse(python(READ_WITH_GZIDX, [join(dir, corpus.name), indexPath, ...plan.map(([offset, length]) => `${offset}:${length}`)]).toString()) as {
    points: [number, number][];
    reads: string[];
  };
  return { plan, ...reply };
}

const codeOf = (action: () => unknown): string => {
  try {
    action();
  } catch (error) {
    if (error instanceof SeekzError) return error.code;
    throw error;
  }
  return 'no error';
};

/** A parse of a copy of `good` with one change made to it, for the damage tables. */
const editor =
  (good: Uint8Array, parse: (bytes: Uint8Array) => GzipIndex) =>
  (change: (bytes: Uint8Array, view: DataView) => void) => {
    const bytes = new Uint8Array(good);
    change(bytes, new DataView(bytes.buffer));
    return () => parse(bytes);
  };

describe('the independent inflation check', () => {
  it('resumes at every bit offset, before stored blocks too', () => {
    const payload = textData(3000, 1);
    for (let bits = 1; bits <= 7; bits++) {
      // 8 - bits bits of the previous block, then a stored block, which aligns to the file's bytes.
      const { bits: stream, put } = bitWriter();
      put(0b1010101, 8 - bits);
      put(1, 1); // BFINAL
      put(0, 2); // BTYPE 00
      while (stream.length % 8) stream.push(0);
      put(payload.length, 16);
      put(~payload.length & 0xffff, 16);
      const head = new Uint8Array(stream.length / 8);
      stream.forEach((bit, at) => (head[at >>> 3]! |= bit << (at & 7)));
      const file = concat(head, payload);
      const produced = inflateFrom(file, { uOffset: 0, cOffset: 1, bits, window: new Uint8Array(0) });
      expect(Buffer.from(produced).equals(Buffer.from(payload)), `bits ${bits}`).toBe(true);
    }
  });
});

describe('index files of indexed_gzip and gztool', () => {
  let dir: { path: string; remove: () => void };
  const corpora = {} as Record<'gzip' | 'pigz' | 'multi' | 'partial', Corpus>;
  const gzidx: Record<string, Uint8Array> = {};
  const gztool: Record<string, Uint8Array> = {};

  beforeAll(() => {
    requireTool('gzip', 'gzip');
    requireTool('pigz', 'pigz');
    requireTool('gztool', 'gztool');
    requireIndexedGzip();
    dir = tempDir('seekz-index-formats-');

    const base = concat(diskLikeData(3 * MiB, 11), textData(MiB + 4321, 5));
    const second = concat(textData(MiB + MiB / 2, 9), diskLikeData(700_000, 23));
    const baseGz = compressWith('gzip', base);
    // A gzip member that ends just short of gztool's 1 MiB span, then a pigz member of noise: gztool
    // puts its next point in the second member's first 32 KiB, where only part of a window exists.
    const head = textData(1_040_000, 3);
    const tail = noise(300_000, 77);
    const list: Corpus[] = [
      { name: 'gzip.gz', file: baseGz, data: base, members: [0] },
      { name: 'pigz.gz', file: compressWith('pigz', base), data: base, members: [0] },
      { name: 'multi.gz', file: concat(baseGz, compressWith('gzip', second)), data: concat(base, second), members: [0, base.length] },
      { name: 'partial.gz', file: concat(compressWith('gzip', head), compressWith('pigz', tail)), data: concat(head, tail), members: [0, head.length] },
    ];
    for (const corpus of list) {
      writeFileSync(join(dir.path, corpus.name), corpus.file);
      const check = run('gzip', ['-dc', join(dir.path, corpus.name)]); // the data, as gzip itself sees it
      expect(Buffer.from(check.stdout).equals(Buffer.from(corpus.data))).toBe(true);
      corpora[corpus.name.replace('.gz', '') as keyof typeof corpora] = corpus;
      gzidx[corpus.name] = exportWithIndexedGzip(dir.path, corpus.name, MiB);
      gztool[corpus.name] = buildWithGztool(dir.path, corpus.name, 1);
    }
  });
  afterAll(() => dir?.remove());

  describe('indexed_gzip → seekz', () => {
    it('reads the version indexed_gzip 1.7 writes, with points that resume inflation', () => {
      const version = python('import indexed_gzip; print(indexed_gzip.__version__)', []).toString().trim();
      for (const corpus of Object.values(corpora)) {
        const bytes = gzidx[corpus.name]!;
        expect(Buffer.from(bytes.subarray(0, 6)).toString('latin1'), `${corpus.name} with indexed_gzip ${version}`).toBe('GZIDX\x01');
        const index = parseGzidx(bytes);
        expect(index.compressedSize).toBe(corpus.file.length);
        expect(index.uncompressedSize).toBe(corpus.data.length);
        expect(index.spacing).toBe(MiB);
        // A point every MiB or so, one at each member's start, and one at the end of the file.
        expect(index.points.length).toBeGreaterThanOrEqual(Math.floor(corpus.data.length / MiB));
        for (const start of corpus.members) expect(index.points.some((point) => point.uOffset === start && point.window.length === 0)).toBe(true);
        expect(index.points[index.points.length - 1]).toMatchObject({ uOffset: corpus.data.length, cOffset: corpus.file.length });
        checkPoints(index, corpus, false);
        // Every window indexed_gzip stores is 32 KiB; only points at a member's start have none.
        for (const point of index.points) expect([0, WINDOW_SIZE]).toContain(point.window.length);
      }
    });

    it('reads a finer spacing too', () => {
      const corpus = corpora.multi;
      const bytes = exportWithIndexedGzip(dir.path, corpus.name, 256 * 1024);
      const index = parseGzidx(bytes);
      expect(index.spacing).toBe(256 * 1024);
      expect(index.points.length).toBeGreaterThan(corpus.data.length / (512 * 1024));
      checkPoints(index, corpus, false);
    });

    it('reads version 0 files (no per-point window flag)', () => {
      // Version 0 is version 1 without the flag byte, where only the first point lacks a window:
      // a single-member file's index says exactly that, so it can be rewritten as version 0.
      const v1 = gzidx['gzip.gz']!;
      const index = parseGzidx(v1);
      expect(index.points.map((point) => point.window.length > 0)).toEqual(index.points.map((_, at) => at > 0));
      const parts = [v1.subarray(0, 35)];
      for (let at = 0; at < index.points.length; at++) parts.push(v1.subarray(35 + at * 18, 35 + at * 18 + 17));
      parts.push(v1.subarray(35 + index.points.length * 18));
      const v0 = concat(...parts);
      v0[5] = 0;
      expect(parseGzidx(v0)).toEqual(index);
    });
  });

  describe('seekz → indexed_gzip', () => {
    it('writes back byte for byte what indexed_gzip wrote', () => {
      for (const corpus of Object.values(corpora)) {
        const bytes = gzidx[corpus.name]!;
        expect(Buffer.from(serializeGzidx(parseGzidx(bytes))).equals(Buffer.from(bytes)), corpus.name).toBe(true);
      }
    });

    it('writes indexes from other points that indexed_gzip imports and reads through', () => {
      // gztool's points (not indexed_gzip's own), with gztool's partial windows near member starts.
      for (const corpus of [corpora.multi, corpora.partial, corpora.pigz]) {
        const index: GzipIndex = { ...parseGztoolIndex(gztool[corpus.name]!), compressedSize: corpus.file.length, spacing: MiB };
        const { plan, points, reads } = readWithIndexedGzip(dir.path, corpus, index, serializeGzidx(index), 'from-gztool');
        expect(points, `${corpus.name}: the points indexed_gzip imported`).toEqual(index.points.map((point) => [point.uOffset, point.cOffset]));
        plan.forEach(([offset, length], at) => {
          const expected = corpus.data.subarray(offset, offset + length);
          expect(Buffer.from(reads[at]!, 'base64').equals(Buffer.from(expected)), `${corpus.name} read ${length} at ${offset}`).toBe(true);
        });
      }
    });

    it('refuses to write what indexed_gzip could not use', () => {
      const index = parseGzidx(gzidx['gzip.gz']!);
      expect(codeOf(() => serializeGzidx({ ...index, compressedSize: 0 }))).toBe('BAD_ARGUMENT');
      const tooBig = { ...index.points[1]!, window: new Uint8Array(WINDOW_SIZE + 1) };
      expect(codeOf(() => serializeGzidx({ ...index, points: [index.points[0]!, tooBig] }))).toBe('BAD_ARGUMENT');
      const badBits = { ...index.points[1]!, bits: 8 };
      expect(codeOf(() => serializeGzidx({ ...index, points: [badBits] }))).toBe('BAD_ARGUMENT');
    });
  });

  describe('gztool → seekz', () => {
    it('reads version 1 (gztool 1.5 default, with line numbers) and version 0 (-z)', () => {
      for (const corpus of Object.values(corpora)) {
        const v1 = gztool[corpus.name]!;
        expect(Buffer.from(v1.subarray(8, 16)).toString('latin1')).toBe('gzipindX');
        const index = parseGztoolIndex(v1);
        expect(index.compressedSize).toBe(0); // not recorded by gztool
        expect(index.spacing).toBe(0); // not recorded by gztool
        expect(index.uncompressedSize).toBe(corpus.data.length);
        expect(index.points[0]!.cOffset).toBe(10); // after gzip -n's 10-byte header
        checkPoints(index, corpus, true);

        const v0 = buildWithGztool(dir.path, corpus.name, 1, false);
        expect(Buffer.from(v0.subarray(8, 16)).toString('latin1')).toBe('gzipindx');
        expect(parseGztoolIndex(v0)).toEqual(index);
      }
    });

    it('keeps the partial windows gztool writes just after a member starts', () => {
      const corpus = corpora.partial;
      const index = parseGztoolIndex(gztool[corpus.name]!);
      const partial = index.points.filter((point) => point.window.length > 0 && point.window.length < WINDOW_SIZE);
      expect(partial.length).toBeGreaterThan(0);
      for (const point of partial) expect(point.window.length).toBe(point.uOffset - corpus.members[1]!);
    });

    it('agrees with indexed_gzip where both put a point', () => {
      const ours = parseGzidx(gzidx['gzip.gz']!);
      const theirs = parseGztoolIndex(gztool['gzip.gz']!);
      const shared = theirs.points.filter((point) => ours.points.some((other) => other.uOffset === point.uOffset));
      expect(shared.length).toBeGreaterThan(1);
      for (const point of shared) expect(ours.points.find((other) => other.uOffset === point.uOffset)).toEqual(point);
    });

    it('reads an index gztool has not finished (no tail, size unknown)', () => {
      const v1 = gztool['multi.gz']!;
      const complete = parseGztoolIndex(v1);
      // What gztool has on disk while it runs: the completion field is 2^64-1 and there is no tail.
      const growing = new Uint8Array(v1.subarray(0, v1.length - 16));
      growing.fill(0xff, 28, 36);
      const partial = parseGztoolIndex(growing);
      expect(partial.uncompressedSize).toBe(0);
      expect(partial.points).toEqual(complete.points);
      // A point gztool is still writing is left out, not reported as damage.
      const cut = parseGztoolIndex(growing.subarray(0, growing.length - 100));
      expect(cut.points).toEqual(complete.points.slice(0, -1));
    });
  });

  describe('reads through these indexes (issue 8: every span checked)', () => {
    it('every corpus, multi-member included, reads back whole and in pieces through both tools\' indexes', async () => {
      for (const corpus of Object.values(corpora)) {
        for (const [tool, index] of [
          ['indexed_gzip', parseGzidx(gzidx[corpus.name]!)],
          ['gztool', parseGztoolIndex(gztool[corpus.name]!)],
        ] as const) {
          const reader = openIndexedGzip(bufferSource(corpus.file), index);
          expect(reader.verification, tool).toBe('structure');
          const whole = await reader.read(0, reader.size);
          expect(Buffer.from(whole).equals(Buffer.from(corpus.data)), `${corpus.name} through ${tool}'s index`).toBe(true);
          for (const [offset, length] of readPlan(corpus, index)) {
            const fresh = openIndexedGzip(bufferSource(corpus.file), index);
            const bytes = await fresh.read(offset, length);
            expect(Buffer.from(bytes).equals(Buffer.from(corpus.data.subarray(offset, offset + length))), `${corpus.name} ${tool} read(${offset}, ${length})`).toBe(true);
          }
        }
      }
    });
  });

  describe('seekz → gztool', () => {
    it('writes version 0 indexes gztool extracts with', () => {
      for (const corpus of [corpora.multi, corpora.partial]) {
        const index = parseGzidx(gzidx[corpus.name]!);
        const bytes = serializeGztoolIndex(index);
        expect(parseGztoolIndex(bytes)).toEqual({ ...index, compressedSize: 0, spacing: 0 });
        const indexPath = join(dir.path, `${corpus.name}.ours.gzi`);
        writeFileSync(indexPath, bytes);
        for (const [offset, length] of readPlan(corpus, index).slice(0, 12)) {
          const result = run('gztool', ['-v', '0', '-b', String(offset), '-r', String(length), '-I', indexPath, join(dir.path, corpus.name)]);
          expect(result.status).toBe(0);
          expect(Buffer.from(result.stdout).equals(Buffer.from(corpus.data.subarray(offset, offset + length))), `${corpus.name} gztool -b ${offset}`).toBe(true);
        }
        expect(Buffer.from(readFileSync(indexPath)).equals(Buffer.from(bytes)), 'gztool left the index as it was').toBe(true);
      }
    });
  });

  describe('damaged index files', () => {
    it('gzidx: each damage has its code', () => {
      const good = gzidx['multi.gz']!;
      const edit = editor(good, parseGzidx);
      expect(codeOf(() => parseGzidx(new Uint8Array(0)))).toBe('INDEX_BAD_MAGIC');
      expect(codeOf(() => parseGzidx(gztool['multi.gz']!))).toBe('INDEX_BAD_MAGIC');
      expect(codeOf(edit((bytes) => (bytes[0] = 0x67)))).toBe('INDEX_BAD_MAGIC');
      expect(codeOf(edit((bytes) => (bytes[5] = 2)))).toBe('INDEX_UNSUPPORTED');
      for (const length of [5, 6, 20, 34, 35, 40, good.length - 32768, good.length - 1]) {
        expect(codeOf(() => parseGzidx(good.subarray(0, length))), `truncated to ${length}`).toBe('INDEX_TRUNCATED');
      }
      expect(codeOf(edit((_, view) => view.setUint32(31, 0xffffffff, true)))).toBe('INDEX_TRUNCATED'); // 4 billion points
      expect(codeOf(edit((_, view) => view.setUint32(31, 1_000_000, true)))).toBe('INDEX_TRUNCATED');
      expect(codeOf(edit((_, view) => view.setUint32(27, 0xffffffff, true)))).toBe('INDEX_BAD_DATA'); // 4 GiB windows
      expect(codeOf(edit((_, view) => view.setUint32(27, 1024, true)))).toBe('INDEX_BAD_DATA');
      expect(codeOf(edit((_, view) => view.setUint32(27, 65536, true)))).toBe('INDEX_BAD_DATA'); // zlib cannot make such windows
      expect(codeOf(edit((bytes) => (bytes[35 + 18 + 16] = 9)))).toBe('INDEX_BAD_DATA'); // bits
      expect(codeOf(edit((bytes) => (bytes[35 + 18 + 17] = 7)))).toBe('INDEX_BAD_DATA'); // window flag
      expect(codeOf(edit((_, view) => view.setUint32(35 + 18 + 4, 0x00400000, true)))).toBe('INDEX_BAD_DATA'); // offset above 2^53
      expect(codeOf(edit((_, view) => view.setUint32(35 + 2 * 18, 5, true)))).toBe('INDEX_BAD_DATA'); // goes backwards
      expect(codeOf(edit((_, view) => view.setUint32(35 + 18 + 8, 0xfffffff0, true)))).toBe('INDEX_BAD_DATA'); // past the end
      expect(codeOf(() => parseGzidx(concat(good, Uint8Array.of(0))))).toBe('INDEX_BAD_DATA'); // trailing byte
      expect(codeOf(edit((bytes) => (bytes[35 + 18 + 17] = 0)))).toBe('INDEX_BAD_DATA'); // one window left over
    });

    it('gztool: each damage has its code', () => {
      const good = gztool['multi.gz']!;
      const edit = editor(good, parseGztoolIndex);
      const firstWindowPoint = 36 + 32; // v1: 20-byte header + two counts, then point 0 (no window)
      expect(codeOf(() => parseGztoolIndex(new Uint8Array(0)))).toBe('INDEX_BAD_MAGIC');
      expect(codeOf(() => parseGztoolIndex(gzidx['multi.gz']!))).toBe('INDEX_BAD_MAGIC');
      expect(codeOf(edit((bytes) => (bytes[15] = 0x79)))).toBe('INDEX_BAD_MAGIC');
      expect(codeOf(edit((bytes) => (bytes[3] = 1)))).toBe('INDEX_BAD_MAGIC');
      for (const length of [16, 19, 27, 36, 50, firstWindowPoint + 30, good.length - 20, good.length - 1]) {
        expect(codeOf(() => parseGztoolIndex(good.subarray(0, length))), `truncated to ${length}`).toBe('INDEX_TRUNCATED');
      }
      const absurd = (view: DataView, high: number) => {
        view.setUint32(20, high, false);
        view.setUint32(28, high, false);
      };
      expect(codeOf(edit((_, view) => absurd(view, 0x001fffff)))).toBe('INDEX_TRUNCATED'); // 2^53 points
      expect(codeOf(edit((_, view) => absurd(view, 0xffffffff)))).toBe('INDEX_BAD_DATA'); // above 2^53
      expect(codeOf(edit((_, view) => view.setUint32(firstWindowPoint + 20, 0xffffffff, false)))).toBe('INDEX_TRUNCATED'); // window length
      expect(codeOf(edit((_, view) => view.setUint32(firstWindowPoint + 16, 8, false)))).toBe('INDEX_BAD_DATA'); // bits
      expect(codeOf(edit((bytes) => (bytes[firstWindowPoint + 24 + 100] ^= 0x55)))).toBe('INDEX_BAD_DATA'); // window data
      expect(codeOf(edit((_, view) => view.setUint32(firstWindowPoint + 12, 3, false)))).toBe('INDEX_BAD_DATA'); // goes backwards
      expect(codeOf(edit((_, view) => view.setUint32(good.length - 16 + 4, 5, false)))).toBe('INDEX_BAD_DATA'); // size below the last point
      expect(codeOf(() => parseGztoolIndex(concat(good, Uint8Array.of(0))))).toBe('INDEX_BAD_DATA');
    });

    it('gztool: a window that inflates past 32 KiB is refused, not inflated', () => {
      const bomb = deflateSync(new Uint8Array(64 * 1024 * 1024)); // 64 MiB of zeros in ~64 KiB
      const index: GzipIndex = {
        compressedSize: 0,
        uncompressedSize: 200 * MiB,
        spacing: 0,
        points: [{ uOffset: 100 * MiB, cOffset: 1000, bits: 0, window: new Uint8Array(10) }],
      };
      const bytes = serializeGztoolIndex(index);
      const windowAt = 16 + 16 + 24;
      const forged = concat(bytes.subarray(0, windowAt - 4), new Uint8Array(4), bomb, bytes.subarray(bytes.length - 8));
      new DataView(forged.buffer).setUint32(windowAt - 4, bomb.length, false);
      const before = process.memoryUsage().arrayBuffers;
      let error: unknown;
      try {
        parseGztoolIndex(forged);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(SeekzError);
      expect((error as SeekzError).code).toBe('INDEX_BAD_DATA');
      expect((error as SeekzError).message).toContain('more than 32768 bytes');
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * MiB);
    });

    const fuzz = (name: string, parse: (bytes: Uint8Array) => GzipIndex, source: () => Uint8Array) =>
      it(`${name}: random byte flips give an index or a SeekzError, quickly and within bounds`, () => {
        const good = source();
        fc.assert(
          fc.property(
            fc.array(fc.record({ at: fc.oneof(fc.nat(200), fc.nat(good.length - 1)), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
            fc.option(fc.nat(good.length), { freq: 4 }),
            (flips, cut) => {
              const bytes = new Uint8Array(good.subarray(0, cut ?? good.length));
              for (const { at, value } of flips) if (at < bytes.length) bytes[at] = value;
              const started = performance.now();
              try {
                const index = parse(bytes);
                // Whatever parses stays within what the input could hold.
                expect(index.points.length).toBeLessThanOrEqual(bytes.length / 17);
                for (const point of index.points) expect(point.window.length).toBeLessThanOrEqual(WINDOW_SIZE);
              } catch (error) {
                if (!(error instanceof SeekzError)) throw error;
                expect(error.code).toMatch(/^INDEX_/);
                expect(error.message).toMatch(/^index: /);
              }
              expect(performance.now() - started).toBeLessThan(500);
            },
          ),
          { numRuns: 300, seed: 20240601 },
        );
      });
    fuzz('gzidx', parseGzidx, () => gzidx['partial.gz']!);
    fuzz('gztool', parseGztoolIndex, () => gztool['partial.gz']!);
  });
});
