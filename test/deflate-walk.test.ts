import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { walkDeflate, type DeflateBlock, type WalkOptions } from '../src/deflate/walk.js';
import { SeekzError } from '../src/errors.js';
import { bufferSource } from '../src/source/buffer.js';
import { fileSource } from '../src/source/file.js';
import type { Source } from '../src/source/source.js';

const KIB = 1024;
const MIB = 1024 * KIB;
/** A hang would show up as a walk that never settles; every fuzz case gets this long. */
const CASE_TIMEOUT_MS = 5_000;

// ---------------------------------------------------------------------------------------------
// Inputs

/** mulberry32: small seeded generator so that every run sees the same data. */
function prng(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(length: number, seed: number): Uint8Array {
  const next = prng(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (next() * 256) | 0;
  return out;
}

const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they you ' +
  'were her she there been one all we their has would when if so no out up said what its about than into them can ' +
  'only other time new some could these two may first then do any like my now over such our man me even most made ' +
  'after also did many before must through back years where much your way down should because each just those ' +
  'people how too little state good very make world still own see men work long get here between both life being'
).split(' ');

function text(length: number, seed: number): Uint8Array {
  const next = prng(seed);
  const out = new Uint8Array(length);
  let at = 0;
  while (at < length) {
    const word = WORDS[(next() * WORDS.length) | 0] + (next() < 0.08 ? '.\n' : ' ');
    for (let i = 0; i < word.length && at < length; i++) out[at++] = word.charCodeAt(i);
  }
  return out;
}

/** Segments of random bytes, text and zeros, so that one stream mixes all block types. */
function mixture(length: number, seed: number): Uint8Array {
  const next = prng(seed);
  const out = new Uint8Array(length); // zero segments are already in place
  let at = 0;
  while (at < length) {
    const size = Math.min(length - at, 1 + ((next() * 200 * KIB) | 0));
    const kind = (next() * 3) | 0;
    if (kind === 0) out.set(randomBytes(size, (next() * 2 ** 31) | 0), at);
    if (kind === 1) out.set(text(size, (next() * 2 ** 31) | 0), at);
    at += size;
  }
  return out;
}

const DATASETS: { name: string; data: Uint8Array }[] = [
  { name: 'empty', data: new Uint8Array(0) },
  { name: 'one byte', data: Uint8Array.of(0x61) },
  { name: 'text 100 B', data: text(100, 1) },
  { name: 'random 70000 B', data: randomBytes(70_000, 2) },
  { name: 'zeros 1 MiB', data: new Uint8Array(MIB) },
  { name: 'text 1 MiB', data: text(MIB, 3) },
  { name: 'random 2 MiB', data: randomBytes(2 * MIB, 4) },
  { name: 'mixture 4 MiB', data: mixture(4 * MIB, 5) },
];

// ---------------------------------------------------------------------------------------------
// Real tools

const DEBIAN_PACKAGE: Record<string, string> = { gzip: 'gzip', pigz: 'pigz' };

function runTool(name: string, args: string[], input: Uint8Array): Uint8Array {
  const result = spawnSync(name, args, { input, maxBuffer: 1 << 30 });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    throw new Error(`${name} is not installed; install the Debian package '${DEBIAN_PACKAGE[name]}' (apt-get install ${DEBIAN_PACKAGE[name]})`);
  }
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${name} ${args.join(' ')} failed: ${result.stderr.toString()}`);
  return new Uint8Array(result.stdout.buffer, result.stdout.byteOffset, result.stdout.length);
}

interface Compressed {
  bytes: Uint8Array;
  /** Byte where the deflate stream starts. */
  start: number;
  /** Byte just after the deflate stream: the gzip trailer, or the end for raw deflate. */
  end: number;
}

function gzipMember(gz: Uint8Array): Compressed {
  return { bytes: gz, start: gzipHeaderLength(gz), end: gz.length - 8 };
}

function rawDeflate(options: zlib.ZlibOptions): (data: Uint8Array) => Compressed {
  return (data) => {
    const bytes = new Uint8Array(zlib.deflateRawSync(data, options));
    return { bytes, start: 0, end: bytes.length };
  };
}

const { Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED } = zlib.constants;

const COMPRESSORS: { name: string; compress: (data: Uint8Array) => Compressed }[] = [
  { name: 'gzip -1', compress: (data) => gzipMember(runTool('gzip', ['-1', '-n', '-c'], data)) },
  { name: 'gzip -6', compress: (data) => gzipMember(runTool('gzip', ['-6', '-n', '-c'], data)) },
  { name: 'gzip -9', compress: (data) => gzipMember(runTool('gzip', ['-9', '-n', '-c'], data)) },
  { name: 'pigz -0', compress: (data) => gzipMember(runTool('pigz', ['-0', '-n', '-c'], data)) },
  { name: 'pigz -6', compress: (data) => gzipMember(runTool('pigz', ['-6', '-n', '-c', '-p', '2'], data)) },
  { name: 'zlib level 0', compress: rawDeflate({ level: 0 }) },
  { name: 'zlib level 1', compress: rawDeflate({ level: 1 }) },
  { name: 'zlib level 6', compress: rawDeflate({ level: 6 }) },
  { name: 'zlib level 9', compress: rawDeflate({ level: 9 }) },
  { name: 'zlib Z_HUFFMAN_ONLY', compress: rawDeflate({ strategy: Z_HUFFMAN_ONLY }) },
  { name: 'zlib Z_RLE', compress: rawDeflate({ strategy: Z_RLE }) },
  { name: 'zlib Z_FIXED', compress: rawDeflate({ strategy: Z_FIXED }) },
];

// RFC 1952 2.3.1: member header flags.
const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;

/** Length of a gzip member header (RFC 1952 2.3), i.e. where its deflate stream starts. */
function gzipHeaderLength(gz: Uint8Array): number {
  if (gz[0] !== 0x1f || gz[1] !== 0x8b || gz[2] !== 8) throw new Error('test helper: not a gzip member');
  const flags = gz[3];
  let at = 10; // ID1 ID2 CM FLG MTIME(4) XFL OS
  if (flags & FEXTRA) at += 2 + (gz[at] | (gz[at + 1] << 8)); // XLEN, little-endian
  if (flags & FNAME) at = gz.indexOf(0, at) + 1;
  if (flags & FCOMMENT) at = gz.indexOf(0, at) + 1;
  if (flags & FHCRC) at += 2;
  return at;
}

// ---------------------------------------------------------------------------------------------
// Walking and checking

async function collect(source: Source, start: number, options?: WalkOptions): Promise<DeflateBlock[]> {
  const blocks: DeflateBlock[] = [];
  for await (const block of walkDeflate(source, start, options)) blocks.push(block);
  return blocks;
}

/** Walks with a deadline, so that a walk that never settles fails the case instead of the run. */
async function collectWithin(source: Source, start: number, options?: WalkOptions): Promise<DeflateBlock[]> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`walk did not settle within ${CASE_TIMEOUT_MS} ms`)), CASE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([collect(source, start, options), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

/** The invariants every walk of a good stream must meet. */
function checkBlocks(blocks: DeflateBlock[], compressed: Compressed, original: Uint8Array): void {
  expect(blocks.length).toBeGreaterThan(0);
  expect(blocks[0].headerBit).toBe(compressed.start * 8);
  let out = 0;
  for (let i = 0; i < blocks.length; i++) {
    const block = blocks[i];
    if (i > 0) expect(block.headerBit).toBe(blocks[i - 1].endBit);
    expect(block.final).toBe(i === blocks.length - 1);
    expect(block.outStart).toBe(out);
    expect(block.endBit).toBeGreaterThan(block.headerBit);
    out += block.outLength;
    if (block.type === 'stored') {
      const at = block.dataOffset!;
      expect(at * 8).toBeGreaterThanOrEqual(block.headerBit + 3 + 32);
      expect(block.endBit).toBe((at + block.outLength) * 8);
      // The property that makes in-place patching possible: stored bytes are the output bytes.
      const stored = compressed.bytes.subarray(at, at + block.outLength);
      const expected = original.subarray(block.outStart, block.outStart + block.outLength);
      expect(sameBytes(stored, expected), `stored block at byte ${at}`).toBe(true);
    } else {
      expect(block.dataOffset).toBeUndefined();
    }
  }
  expect(out).toBe(original.length);
  // Less than one byte of padding separates the final block from the trailer.
  expect(Math.ceil(blocks[blocks.length - 1].endBit / 8)).toBe(compressed.end);
}

function expectDeflateError(error: unknown, code?: 'DEFLATE_BAD_DATA' | 'DEFLATE_TRUNCATED'): SeekzError {
  expect(error).toBeInstanceOf(SeekzError);
  const seekz = error as SeekzError;
  if (code) expect(seekz.code, seekz.message).toBe(code);
  else expect(seekz.code, seekz.message).toMatch(/^DEFLATE_/);
  return seekz;
}

async function walkError(source: Source, start: number, options?: WalkOptions): Promise<unknown> {
  try {
    await collectWithin(source, start, options);
  } catch (error) {
    return error;
  }
  throw new Error('expected the walk to fail');
}

/** Counts reads, to check that the walk reads in chunks and skips stored data. */
function countingSource(inner: Source): Source & { reads: number; bytesRead: number; largestRead: number } {
  const counted = {
    size: inner.size,
    reads: 0,
    bytesRead: 0,
    largestRead: 0,
    async read(offset: number, length: number) {
      const bytes = await inner.read(offset, length);
      counted.reads++;
      counted.bytesRead += bytes.length;
      counted.largestRead = Math.max(counted.largestRead, length);
      return bytes;
    },
  };
  return counted;
}

let scratch: string;
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'seekz-walk-'));
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('walkDeflate on streams from real tools', () => {
  const typesSeen = new Set<string>();
  let caseNumber = 0;

  describe.each(COMPRESSORS)('$name', ({ name, compress }) => {
    it.each(DATASETS)('$name: blocks add up, are contiguous, and stored bytes are the data', async ({ data }) => {
      const compressed = compress(data);
      if (compressed.start > 0) {
        const isize = new DataView(compressed.bytes.buffer, compressed.bytes.byteOffset).getUint32(compressed.end + 4, true);
        expect(isize).toBe(data.length % 2 ** 32);
      }
      const blocks = await collect(bufferSource(compressed.bytes), compressed.start);
      checkBlocks(blocks, compressed, data);
      for (const block of blocks) typesSeen.add(block.type);
      if (name === 'pigz -0' && data.length > 0) expect(blocks.every((block) => block.type === 'stored')).toBe(true);

      // The same walk through a file, and with reads small enough to split every field.
      const path = join(scratch, `case-${caseNumber++}.bin`);
      writeFileSync(path, compressed.bytes);
      const file = await fileSource(path);
      try {
        expect(await collect(file, compressed.start)).toEqual(blocks);
        expect(await collect(file, compressed.start, { chunkSize: 4096 })).toEqual(blocks);
        if (compressed.bytes.length <= 64 * KIB) expect(await collect(file, compressed.start, { chunkSize: 7 })).toEqual(blocks);
      } finally {
        await file.close();
      }
      if (compressed.bytes.length <= 1 * MIB) {
        expect(await collect(bufferSource(compressed.bytes), compressed.start, { chunkSize: 7 })).toEqual(blocks);
      }
    });
  });

  it('saw stored, fixed and dynamic blocks across the corpus', () => {
    expect([...typesSeen].sort()).toEqual(['dynamic', 'fixed', 'stored']);
  });

  it('finds the stream after a gzip header with FNAME (gzip of a named file)', async () => {
    const data = mixture(300 * KIB, 6);
    const path = join(scratch, 'named.txt');
    writeFileSync(path, data);
    const gz = runTool('gzip', ['-6', '-c', path], new Uint8Array(0));
    expect(gz[3] & FNAME).toBe(FNAME);
    const compressed = gzipMember(gz);
    checkBlocks(await collect(bufferSource(gz), compressed.start), compressed, data);
  });
});

describe('walkDeflate reads in bounded chunks', () => {
  it('never asks for more than chunkSize bytes and skips stored data instead of reading it', async () => {
    const data = randomBytes(4 * MIB, 7);
    const compressed = gzipMember(runTool('pigz', ['-0', '-n', '-c'], data));
    const source = countingSource(bufferSource(compressed.bytes));
    const blocks = await collect(source, compressed.start, { chunkSize: 4096 });
    checkBlocks(blocks, compressed, data);
    expect(source.largestRead).toBeLessThanOrEqual(4096);
    // One small read near each block header; the stored bytes in between are never fetched.
    expect(source.bytesRead).toBeLessThan(compressed.bytes.length / 8);
  });

  it('reads a compressed stream about once with the default chunk size', async () => {
    const data = text(3 * MIB, 8);
    const compressed = gzipMember(runTool('gzip', ['-6', '-n', '-c'], data));
    const source = countingSource(bufferSource(compressed.bytes));
    checkBlocks(await collect(source, compressed.start), compressed, data);
    expect(source.largestRead).toBeLessThanOrEqual(MIB);
    expect(source.bytesRead).toBeLessThanOrEqual(compressed.bytes.length);
  });
});

describe('walkDeflate arguments', () => {
  const source = bufferSource(new Uint8Array(zlib.deflateRawSync(text(1000, 9))));

  it('throws at once for a bad chunk size or start byte', () => {
    expect(() => walkDeflate(source, 0, { chunkSize: 0 })).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    expect(() => walkDeflate(source, -1)).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    expect(() => walkDeflate(source, 1.5)).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    expect(() => walkDeflate(source, source.size + 1)).toThrow(expect.objectContaining({ code: 'OUT_OF_RANGE' }));
  });

  it('reports an empty stream as truncated', async () => {
    expectDeflateError(await walkError(source, source.size), 'DEFLATE_TRUNCATED');
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-made streams for each validation rule. Each is also given to zlib, which must agree on
// whether it is valid.

/** Writes a deflate bit stream: plain values LSB-first, Huffman codes starting with their top bit. */
class BitWriter {
  private readonly bytes: number[] = [];
  private buffer = 0;
  private count = 0;

  bits(value: number, count: number): this {
    for (let i = 0; i < count; i++) {
      this.buffer |= ((value >>> i) & 1) << this.count;
      if (++this.count === 8) this.flushByte();
    }
    return this;
  }

  code(code: number, length: number): this {
    for (let i = length - 1; i >= 0; i--) this.bits((code >>> i) & 1, 1);
    return this;
  }

  finish(): Uint8Array {
    if (this.count > 0) this.flushByte();
    return Uint8Array.from(this.bytes);
  }

  private flushByte(): void {
    this.bytes.push(this.buffer);
    this.buffer = 0;
    this.count = 0;
  }
}

/** Canonical codes for the given lengths (RFC 1951 3.2.2). */
function canonicalCodes(lengths: number[]): number[] {
  const counts = new Array<number>(16).fill(0);
  for (const length of lengths) if (length) counts[length]++;
  const next = new Array<number>(16).fill(0);
  let code = 0;
  for (let bits = 1; bits < 16; bits++) {
    code = (code + counts[bits - 1]) << 1;
    next[bits] = code;
  }
  return lengths.map((length) => (length ? next[length]++ : -1));
}

const CODE_LENGTH_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
/** A complete code length code that can emit every symbol: 13 codes of 4 bits, 6 of 5 bits. */
const CODE_LENGTH_LENGTHS = Array.from({ length: 19 }, (_, symbol) => (symbol < 13 ? 4 : 5));
const CODE_LENGTH_CODES = canonicalCodes(CODE_LENGTH_LENGTHS);

interface DynamicHeader {
  literalLengths: number[];
  distanceLengths: number[];
  /** Code length symbols to write instead of the lengths, as [symbol, extra value, extra bits]. */
  rawSymbols?: [number, number, number][];
  literalCount?: number;
}

function writeDynamicHeader(writer: BitWriter, final: boolean, header: DynamicHeader): void {
  writer.bits(final ? 1 : 0, 1).bits(2, 2);
  const literalCount = header.literalCount ?? header.literalLengths.length;
  writer.bits(literalCount - 257, 5).bits(header.distanceLengths.length - 1, 5).bits(19 - 4, 4);
  for (const symbol of CODE_LENGTH_ORDER) writer.bits(CODE_LENGTH_LENGTHS[symbol], 3);
  const symbols = header.rawSymbols ?? [...header.literalLengths, ...header.distanceLengths].map((length) => [length, 0, 0]);
  for (const [symbol, extra, extraBits] of symbols) {
    writer.code(CODE_LENGTH_CODES[symbol], CODE_LENGTH_LENGTHS[symbol]).bits(extra, extraBits);
  }
}

function lengthsWith(size: number, entries: Record<number, number>): number[] {
  const lengths = new Array<number>(size).fill(0);
  for (const [symbol, length] of Object.entries(entries)) lengths[Number(symbol)] = length;
  return lengths;
}

/** zlib's verdict on a raw deflate stream: its output length, or 'error'. */
function zlibVerdict(bytes: Uint8Array): number | 'error' {
  try {
    return zlib.inflateRawSync(bytes).length;
  } catch {
    return 'error';
  }
}

// RFC 1951 3.2.6: fixed literal/length codes.
function fixedLiteral(writer: BitWriter, symbol: number): BitWriter {
  if (symbol < 144) return writer.code(0x30 + symbol, 8);
  if (symbol < 256) return writer.code(0x190 + symbol - 144, 9);
  if (symbol < 280) return writer.code(symbol - 256, 7);
  return writer.code(0xc0 + symbol - 280, 8);
}

describe('walkDeflate rejects invalid streams as zlib does', () => {
  const fixedBlock = (body: (writer: BitWriter) => void) => {
    const writer = new BitWriter().bits(1, 1).bits(1, 2);
    body(writer);
    fixedLiteral(writer, 256);
    return writer.finish();
  };

  const cases: { name: string; bytes: () => Uint8Array; error?: RegExp; output?: number }[] = [
    {
      name: 'stored LEN and NLEN that disagree',
      bytes: () => {
        const bytes = new Uint8Array(zlib.deflateRawSync(text(500, 10), { level: 0 }));
        bytes[3] ^= 0x10; // NLEN low byte
        return bytes;
      },
      error: /LEN 500 does not match NLEN 65051 \(expected 65035\)/,
    },
    { name: 'reserved block type 3', bytes: () => Uint8Array.of(0x07, 0, 0), error: /reserved block type 3/ },
    {
      name: 'a distance before the start of the stream',
      bytes: () => fixedBlock((w) => fixedLiteral(w, 257).code(0, 5)),
      error: /distance 1 reaches before the start of the stream \(0 bytes so far\)/,
    },
    {
      name: 'a distance within the output so far',
      bytes: () => fixedBlock((w) => fixedLiteral(fixedLiteral(w, 0x61), 257).code(0, 5)),
      output: 4,
    },
    { name: 'fixed length symbol 286', bytes: () => fixedBlock((w) => fixedLiteral(w, 286)), error: /invalid literal\/length symbol 286/ },
    { name: 'fixed length symbol 287', bytes: () => fixedBlock((w) => fixedLiteral(w, 287)), error: /invalid literal\/length symbol 287/ },
    {
      name: 'fixed distance symbol 30',
      bytes: () => fixedBlock((w) => fixedLiteral(fixedLiteral(w, 0x61), 257).code(30, 5)),
      error: /invalid distance symbol 30/,
    },
    {
      name: 'over-subscribed literal/length code',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: lengthsWith(257, { 0x61: 1, 0x62: 1, 256: 1 }), distanceLengths: [1] });
        return w.finish();
      },
      error: /literal\/length code lengths are over-subscribed/,
    },
    {
      name: 'incomplete literal/length code',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: lengthsWith(257, { 0x61: 2, 256: 2 }), distanceLengths: [1] });
        return w.code(1, 2).finish();
      },
      error: /literal\/length code lengths are incomplete/,
    },
    {
      name: 'incomplete distance code with two codes',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: lengthsWith(257, { 0x61: 1, 256: 1 }), distanceLengths: [2, 2] });
        return w.code(1, 1).finish();
      },
      error: /distance code lengths are incomplete/,
    },
    {
      name: 'a single one-bit distance code (allowed, as zlib does)',
      bytes: () => {
        const w = new BitWriter();
        const literals = lengthsWith(258, { 0x61: 1, 256: 2, 257: 2 });
        writeDynamicHeader(w, true, { literalLengths: literals, distanceLengths: [1] });
        const codes = canonicalCodes(literals);
        w.code(codes[0x61], 1).code(codes[257], 2).code(0, 1); // 'a', then length 3 at distance 1
        return w.code(codes[256], 2).finish();
      },
      output: 4,
    },
    {
      name: 'a single one-bit code that is end-of-block (allowed, as zlib does)',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: lengthsWith(257, { 256: 1 }), distanceLengths: [0] });
        return w.code(0, 1).finish();
      },
      output: 0,
    },
    {
      name: 'a length symbol when no distance codes exist',
      bytes: () => {
        const w = new BitWriter();
        const literals = lengthsWith(258, { 0x61: 1, 256: 2, 257: 2 });
        writeDynamicHeader(w, true, { literalLengths: literals, distanceLengths: [0] });
        const codes = canonicalCodes(literals);
        return w.code(codes[0x61], 1).code(codes[257], 2).bits(0, 8).finish();
      },
      error: /bit pattern with no distance code/,
    },
    {
      name: 'no end-of-block code',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: lengthsWith(257, { 0x61: 1, 0x62: 1 }), distanceLengths: [1] });
        return w.finish();
      },
      error: /no end-of-block code/,
    },
    {
      name: 'HLIT above 286',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: lengthsWith(287, { 256: 1, 0: 1 }), distanceLengths: [1] });
        return w.finish();
      },
      error: /HLIT says 287/,
    },
    {
      name: 'HDIST above 30',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: lengthsWith(257, { 256: 1, 0: 1 }), distanceLengths: new Array(31).fill(0) });
        return w.finish();
      },
      error: /HDIST says 31/,
    },
    {
      name: 'code length 16 with no previous length',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: [], literalCount: 257, distanceLengths: [1], rawSymbols: [[16, 0, 2]] });
        return w.bits(0, 32).finish();
      },
      error: /code length 16 \(repeat previous\) with no previous length/,
    },
    {
      name: 'a code length repeat past the end of the lengths',
      bytes: () => {
        const w = new BitWriter();
        writeDynamicHeader(w, true, { literalLengths: [], literalCount: 257, distanceLengths: [1], rawSymbols: [[18, 127, 7], [18, 127, 7], [18, 127, 7]] });
        return w.bits(0, 32).finish();
      },
      error: /code length repeat of 138 runs past the 258 lengths/,
    },
    {
      name: 'an incomplete code length code',
      bytes: () => {
        const w = new BitWriter().bits(1, 1).bits(2, 2).bits(0, 5).bits(0, 5).bits(0, 4);
        return w.bits(1, 3).bits(0, 3).bits(0, 3).bits(0, 3).bits(0, 32).finish(); // only symbol 16, one bit
      },
      error: /code length code is incomplete/,
    },
  ];

  it.each(cases)('$name', async ({ bytes, error, output }) => {
    const stream = bytes();
    if (error) {
      expect(zlibVerdict(stream)).toBe('error');
      const walkFailure = expectDeflateError(await walkError(bufferSource(stream), 0), 'DEFLATE_BAD_DATA');
      expect(walkFailure.message).toMatch(/^deflate: invalid data at compressed bit \d+/);
      expect(walkFailure.message).toMatch(error);
    } else {
      expect(zlibVerdict(stream)).toBe(output);
      const blocks = await collect(bufferSource(stream), 0);
      expect(blocks.reduce((sum, block) => sum + block.outLength, 0)).toBe(output);
    }
  });
});

describe('walkDeflate on damaged streams', () => {
  let bases: Compressed[];
  beforeAll(() => {
    const data = mixture(60 * KIB, 11);
    bases = [
      rawDeflate({ level: 6 })(text(20 * KIB, 12)),
      rawDeflate({ level: 0 })(text(5 * KIB, 13)),
      rawDeflate({ strategy: Z_FIXED })(text(8 * KIB, 14)),
      rawDeflate({ strategy: Z_HUFFMAN_ONLY })(text(8 * KIB, 15)),
      gzipMember(runTool('gzip', ['-9', '-n', '-c'], data)),
      gzipMember(runTool('pigz', ['-6', '-n', '-c'], data)),
    ];
  });

  /** The raw deflate bytes of a base, so that zlib can judge them too. */
  const deflateBytes = (base: Compressed) => base.bytes.slice(base.start, base.end);

  it('reports every cut of a good stream as truncated', async () => {
    for (const base of bases) {
      const stream = deflateBytes(base);
      const next = prng(stream.length);
      const cuts = new Set([0, 1, stream.length - 1]);
      while (cuts.size < 40) cuts.add((next() * stream.length) | 0);
      for (const cut of cuts) {
        const source = bufferSource(stream.subarray(0, cut));
        for (const chunkSize of [undefined, 7]) {
          const error = expectDeflateError(await walkError(source, 0, { chunkSize }), 'DEFLATE_TRUNCATED');
          expect(error.message).toContain(`at compressed bit ${cut * 8} `);
        }
      }
    }
  });

  it('agrees with zlib on streams with flipped bits, overwritten bytes and cuts', async () => {
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant('overwrite' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 5 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.constantFrom<number | undefined>(undefined, 7, 4096),
        async (baseIndex, mutations, chunkSize) => {
          let stream = deflateBytes(bases[baseIndex]);
          for (const change of mutations) {
            if (stream.length === 0) break;
            const at = change.at % stream.length;
            if (change.kind === 'flip') stream[at] ^= 1 << change.bit;
            if (change.kind === 'overwrite') stream.set(change.bytes.subarray(0, stream.length - at), at);
            if (change.kind === 'cut') stream = stream.slice(0, at);
          }
          await expectSameVerdict(stream, chunkSize);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('agrees with zlib on arbitrary bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), async (stream) => {
        await expectSameVerdict(stream, undefined);
      }),
      { numRuns: 300 },
    );
  });

  async function expectSameVerdict(stream: Uint8Array, chunkSize: number | undefined): Promise<void> {
    const verdict = zlibVerdict(stream);
    let blocks: DeflateBlock[] | undefined;
    let failure: unknown;
    try {
      blocks = await collectWithin(bufferSource(stream), 0, { chunkSize });
    } catch (error) {
      failure = error;
    }
    if (verdict === 'error') {
      expectDeflateError(failure);
    } else {
      expect(failure).toBeUndefined();
      expect(blocks!.reduce((sum, block) => sum + block.outLength, 0)).toBe(verdict);
    }
  }
});

describe('walkDeflate throughput', () => {
  it(
    'walks a 64 MiB gzip -6 file (printed, not asserted)',
    async () => {
      const data = text(64 * MIB, 16);
      const gz = runTool('gzip', ['-6', '-n', '-c'], data);
      const path = join(scratch, 'throughput.gz');
      writeFileSync(path, gz);
      const file = await fileSource(path);
      try {
        const started = performance.now();
        let out = 0;
        let blocks = 0;
        for await (const block of walkDeflate(file, gzipHeaderLength(gz))) {
          out += block.outLength;
          blocks++;
        }
        const seconds = (performance.now() - started) / 1000;
        expect(out).toBe(data.length);
        const inflateStarted = performance.now();
        zlib.gunzipSync(gz);
        const inflateSeconds = (performance.now() - inflateStarted) / 1000;
        console.log(
          `deflate walk: ${(out / 1e6 / seconds).toFixed(0)} MB/s of uncompressed data ` +
            `(${blocks} blocks, ${(gz.length / MIB).toFixed(1)} MiB compressed, 64 MiB out, ${seconds.toFixed(2)} s); ` +
            `zlib gunzipSync for comparison: ${(out / 1e6 / inflateSeconds).toFixed(0)} MB/s`,
        );
      } finally {
        await file.close();
      }
    },
    180_000,
  );
});
