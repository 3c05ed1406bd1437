import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32 } from '../src/crc/crc32.js';
import { SeekzError } from '../src/errors.js';
import { bufferSource } from '../src/source/buffer.js';
import { fileSource } from '../src/source/file.js';
import { sequentialFromSource } from '../src/source/sequential.js';
import { createWorkerPool, type WorkerPool } from '../src/workers/pool.js';
import { buildIndex, buildStreamFooter, CHECK_IDS, type CheckName, type IndexRecord } from '../src/xz/format.js';
import { openXz, readXzLayout, type XzSource } from '../src/xz/reader.js';
import { writeXz, type XzWriterOptions } from '../src/xz/writer.js';
import { countingSource, diskLikeData, requireTool, run, runCli, sha256, SYSTEM_PYTHON, tempDir, xzList } from './helpers/tools.js';

const BLOCK = 64 * 1024;
/** How `xz --list` names each check. */
const CHECK_LABEL: Record<CheckName, string> = { none: 'None', crc32: 'CRC32', crc64: 'CRC64', sha256: 'SHA-256' };

/** Compresses in memory through the library, collecting the file and the blocks it reported. */
async function compressXz(data: Uint8Array, options: XzWriterOptions = {}) {
  const parts: Uint8Array[] = [];
  const blocks: (IndexRecord & { offset: number })[] = [];
  const sink = {
    async write(bytes: Uint8Array) {
      parts.push(new Uint8Array(bytes));
    },
  };
  const result = await writeXz(sequentialFromSource(bufferSource(data)), sink, {
    blockSize: BLOCK,
    threads: 2,
    ...options,
    onBlock: (block) => blocks.push(block),
  });
  return { file: new Uint8Array(Buffer.concat(parts)), result, blocks };
}

/**
 * Holds a file against every xz implementation at hand: xz -t, xz -dc, xz --list (one block per
 * `blockSize`, both sizes in every block header), Python's lzma and pixz.
 */
function expectStandardXz(path: string, data: Uint8Array, blockSize: number, check: CheckName): void {
  const digest = sha256(data);
  const tested = run('xz', ['-t', path]);
  expect(tested.status, tested.stderr).toBe(0);
  expect(sha256(run('xz', ['-dc', path]).stdout)).toBe(digest);
  const list = xzList(path);
  expect(list.blocks.length).toBe(Math.ceil(data.length / blockSize));
  expect(list.sizesInHeaders).toBe(true);
  expect(list.checks).toBe(CHECK_LABEL[check]);
  list.blocks.forEach((block, index) => {
    expect(block.sizeFlags).toBe('cu');
    expect(block.uncompressedOffset).toBe(index * blockSize);
    expect(block.uncompressedSize).toBe(Math.min(blockSize, data.length - index * blockSize));
  });
  const python = run(SYSTEM_PYTHON, ['-c', 'import lzma,sys,hashlib; print(hashlib.sha256(lzma.open(sys.argv[1]).read()).hexdigest())', path]);
  expect(python.stdout.toString().trim(), python.stderr).toBe(digest);
  if (data.length === 0) {
    // pixz cannot read any empty .xz ("Can't locate file index block"), not even xz's own: ours
    // is byte for byte what xz writes for empty input.
    expect(sha256(readFileSync(path))).toBe(sha256(run('xz', ['-c', `--check=${check}`], { input: '' }).stdout));
  } else {
    const pixz = run('pixz', ['-d'], { input: readFileSync(path) });
    expect(pixz.status, pixz.stderr).toBe(0);
    expect(sha256(pixz.stdout)).toBe(digest);
  }
}

/** The code of a rejection: 'ok' when it resolves, the XZ_* code for a SeekzError, else what it was. */
async function codeOf(work: Promise<unknown>): Promise<string> {
  try {
    await work;
    return 'ok';
  } catch (error) {
    return error instanceof SeekzError ? error.code : `not a SeekzError: ${(error as Error)?.stack ?? String(error)}`;
  }
}

/**
 * Opens `bytes` and reads every block, one after the other, so that when a read fails nothing is
 * left decoding on the shared pool. Returns the data, or the size it claimed when that is wrong.
 */
async function readAllBlocks(bytes: Uint8Array, pool: WorkerPool, expectedSize: number): Promise<Uint8Array | { wrongSize: number }> {
  const xz = await openXz(bufferSource(bytes), { pool });
  try {
    if (xz.size !== expectedSize) return { wrongSize: xz.size };
    const out = new Uint8Array(xz.size);
    for (const block of xz.blocks) out.set(await xz.read(block.uStart, block.uSize), block.uStart);
    return out;
  } finally {
    await xz.close();
  }
}

function flipped(file: Uint8Array, at: number, xor: number): Uint8Array {
  const copy = new Uint8Array(file);
  copy[at]! ^= xor;
  return copy;
}

describe('writeXz and seekxz output is standard xz', () => {
  let dir: { path: string; remove: () => void };
  beforeAll(() => {
    requireTool('xz', 'xz-utils');
    requireTool('pixz', 'pixz');
    requireTool(SYSTEM_PYTHON, 'python3');
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  /** Library and CLI on the same input must agree byte for byte; then the file goes through every tool and back through seekxz -d. */
  async function roundTrip(name: string, data: Uint8Array, check: CheckName, preset: 0 | 6, extreme: boolean) {
    const { file, result } = await compressXz(data, { check, preset, extreme });
    expect(result.uncompressedSize).toBe(data.length);
    expect(result.compressedSize).toBe(file.length);
    expect(result.records.length).toBe(Math.ceil(data.length / BLOCK));
    const libraryPath = join(dir.path, `${name}.lib.xz`);
    writeFileSync(libraryPath, file);
    expectStandardXz(libraryPath, data, BLOCK, check);

    const input = join(dir.path, name);
    writeFileSync(input, data);
    const compressed = runCli('seekxz', ['-q', '--block-size=64K', `-${preset}${extreme ? 'e' : ''}`, `--check=${check}`, '-T2', input]);
    expect(compressed.status, compressed.stderr).toBe(0);
    expect(existsSync(input)).toBe(false);
    expect(sha256(readFileSync(`${input}.xz`))).toBe(sha256(file));
    const restored = runCli('seekxz', ['-q', '-d', `${input}.xz`]);
    expect(restored.status, restored.stderr).toBe(0);
    expect(existsSync(`${input}.xz`)).toBe(false);
    expect(sha256(readFileSync(input))).toBe(sha256(data));
  }

  const cases: [string, number, CheckName, 0 | 6, boolean][] = [
    ['empty', 0, 'crc64', 6, false],
    ['one byte', 1, 'crc32', 0, false],
    ['block - 1', BLOCK - 1, 'sha256', 6, true],
    ['block', BLOCK, 'none', 0, false],
    ['block + 1', BLOCK + 1, 'crc64', 6, false],
    ['four blocks and a bit, -0e', 4 * BLOCK + 4321, 'crc32', 0, true],
  ];
  for (const [name, size, check, preset, extreme] of cases) {
    it(`${name} (${size} bytes, --check=${check}, -${preset}${extreme ? 'e' : ''})`, async () => {
      await roundTrip(name.replace(/\W+/g, '-'), diskLikeData(size, size + 3), check, preset, extreme);
    });
  }

  it('random sizes, checks and presets', async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 5 * BLOCK + 999 }),
        fc.constantFrom<CheckName>('none', 'crc32', 'crc64', 'sha256'),
        fc.constantFrom<0 | 6>(0, 6),
        fc.boolean(),
        fc.integer({ min: 1, max: 1000 }),
        async (size, check, preset, extreme, seed) => {
          await roundTrip(`random-${round++}`, diskLikeData(size, seed), check, preset, extreme);
        },
      ),
      { numRuns: 3 },
    );
  });

  it('gives identical bytes for -T1, -T2 and -T3, and the library agrees', async () => {
    const data = diskLikeData(1_000_000, 7);
    const input = join(dir.path, 'threads.img');
    writeFileSync(input, data);
    const outputs = ['1', '2', '3'].map((threads) => {
      const result = runCli('seekxz', ['-q', '-c', '-1', '--block-size=64K', `-T${threads}`, input]);
      expect(result.status, result.stderr).toBe(0);
      return sha256(result.stdout);
    });
    expect(new Set(outputs).size).toBe(1);
    expect(sha256((await compressXz(data, { preset: 1, threads: 3 })).file)).toBe(outputs[0]);
  });

  it('encodes all-zero blocks once and writes the same bytes for each', async () => {
    const blocks = 24;
    const data = new Uint8Array(blocks * BLOCK + BLOCK / 2); // the short last block is zero too
    data.set(diskLikeData(BLOCK, 9), 5 * BLOCK);
    data.set(Uint8Array.of(1, 2, 3), 17 * BLOCK + 500);
    const { file, result, blocks: written } = await compressXz(data, { preset: 6 });
    expect(result.zeroBlocks).toBe(blocks - 2 + 1);
    const bytesOf = (index: number) => {
      const block = written[index]!;
      return sha256(file.subarray(block.offset, block.offset + block.unpaddedSize));
    };
    const zeroFull = [...Array(blocks).keys()].filter((index) => index !== 5 && index !== 17);
    expect(new Set(zeroFull.map(bytesOf)).size).toBe(1);
    expect(bytesOf(blocks)).not.toBe(bytesOf(0)); // the short one is its own encoding
    const path = join(dir.path, 'zeros.xz');
    writeFileSync(path, file);
    expectStandardXz(path, data, BLOCK, 'crc64');
  });
});

describe('seekxz behaves like xz', () => {
  let dir: { path: string; remove: () => void };
  const data = diskLikeData(300_000, 21);
  let count = 0;
  /** A fresh input file (each test consumes or renames its own). */
  const fresh = (bytes: Uint8Array = data) => {
    const path = join(dir.path, `in-${count++}.img`);
    writeFileSync(path, bytes);
    return path;
  };
  const seekxz = (...args: string[]) => runCli('seekxz', ['-q', '--block-size=64K', '-0', ...args]);
  beforeAll(() => {
    requireTool('xz', 'xz-utils');
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  it('FILE becomes FILE.xz and FILE is removed; -d restores FILE and removes FILE.xz', () => {
    const input = fresh();
    expect(seekxz(input).status).toBe(0);
    expect(existsSync(input)).toBe(false);
    expect(sha256(run('xz', ['-dc', `${input}.xz`]).stdout)).toBe(sha256(data));
    expect(seekxz('-d', `${input}.xz`).status).toBe(0);
    expect(existsSync(`${input}.xz`)).toBe(false);
    expect(sha256(readFileSync(input))).toBe(sha256(data));
  });

  it('-k keeps the input, and so does -dk', () => {
    const input = fresh();
    expect(seekxz('-k', input).status).toBe(0);
    expect(existsSync(input)).toBe(true);
    const compressed = readFileSync(`${input}.xz`);
    unlinkSync(input);
    expect(seekxz('-dk', `${input}.xz`).status).toBe(0);
    expect(sha256(readFileSync(`${input}.xz`))).toBe(sha256(compressed));
    expect(sha256(readFileSync(input))).toBe(sha256(data));
  });

  it('-c writes to stdout and keeps the input, both ways', () => {
    const input = fresh();
    const compressed = seekxz('-c', input);
    expect(compressed.status).toBe(0);
    expect(existsSync(input)).toBe(true);
    expect(existsSync(`${input}.xz`)).toBe(false);
    expect(sha256(run('xz', ['-dc'], { input: compressed.stdout }).stdout)).toBe(sha256(data));
    writeFileSync(`${input}.xz`, compressed.stdout);
    const decompressed = seekxz('-dc', `${input}.xz`);
    expect(decompressed.status).toBe(0);
    expect(sha256(decompressed.stdout)).toBe(sha256(data));
    expect(existsSync(`${input}.xz`)).toBe(true);
  });

  it('refuses to overwrite an existing output without -f', () => {
    const input = fresh();
    writeFileSync(`${input}.xz`, 'precious');
    const refused = seekxz(input);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/already exists; use -f to overwrite it/);
    expect(readFileSync(`${input}.xz`, 'utf8')).toBe('precious');
    expect(existsSync(input)).toBe(true);
    expect(seekxz('-f', input).status).toBe(0);
    expect(sha256(run('xz', ['-dc', `${input}.xz`]).stdout)).toBe(sha256(data));

    writeFileSync(input, 'precious');
    const refusedDecompress = seekxz('-d', `${input}.xz`);
    expect(refusedDecompress.status).toBe(1);
    expect(refusedDecompress.stderr).toMatch(/already exists; use -f/);
    expect(readFileSync(input, 'utf8')).toBe('precious');
    expect(seekxz('-df', `${input}.xz`).status).toBe(0);
    expect(sha256(readFileSync(input))).toBe(sha256(data));
  });

  it('compresses stdin to stdout and decompresses stdin to stdout', () => {
    const packed = runCli('seekxz', ['-q', '--block-size=64K', '-0'], { input: data });
    expect(packed.status, packed.stderr).toBe(0);
    const path = join(dir.path, 'piped.xz');
    writeFileSync(path, packed.stdout);
    expect(xzList(path).blocks.length).toBe(Math.ceil(data.length / BLOCK));
    expect(sha256(run('xz', ['-dc', path]).stdout)).toBe(sha256(data));
    const unpacked = runCli('seekxz', ['-d'], { input: packed.stdout });
    expect(unpacked.status, unpacked.stderr).toBe(0);
    expect(sha256(unpacked.stdout)).toBe(sha256(data));
  });

  it('-t passes a good file and fails a damaged one, naming the block', () => {
    const input = fresh();
    expect(seekxz('-k', input).status).toBe(0);
    expect(seekxz('-t', `${input}.xz`).status).toBe(0);
    // Damage in the last block: when it fails nothing else is decoding (see 'closing a reader').
    const last = xzList(`${input}.xz`).blocks.at(-1)!;
    const damaged = readFileSync(`${input}.xz`);
    damaged[last.compressedOffset + last.headerSize + 40]! ^= 0x55;
    writeFileSync(`${input}.bad.xz`, damaged);
    expect(run('xz', ['-t', `${input}.bad.xz`]).status).not.toBe(0);
    const tested = seekxz('-t', `${input}.bad.xz`);
    expect(tested.status).toBe(1);
    expect(tested.stderr).toMatch(new RegExp(`^seekxz: \\S+\\.bad\\.xz: xz: block ${last.number} at offset ${last.compressedOffset} does not decode: `));
  });

  it('-t on a damaged stdin fails with the XZ_BAD_DATA message, not an internal error', () => {
    const packed = runCli('seekxz', ['-q', '--block-size=64K', '-0'], { input: data }).stdout;
    packed[12 + 40]! ^= 0x55;
    const tested = runCli('seekxz', ['-t'], { input: packed });
    expect(tested.stderr).not.toMatch(/internal error/);
    expect(tested.stderr).toMatch(/^seekxz: \(stdin\): xz: bad data at offset \d+: /);
    expect(tested.status).toBe(1);
  });

  it('-d on a truncated stdin fails like xz ("unexpected end of input"), never exits 0', () => {
    const packed = runCli('seekxz', ['-q', '--block-size=64K', '-0'], { input: data }).stdout;
    const truncated = packed.subarray(0, Math.floor(packed.length / 2));
    expect(run('xz', ['-dc'], { input: truncated }).status).toBe(1);
    const decompressed = runCli('seekxz', ['-d'], { input: truncated });
    expect(decompressed.status).toBe(1);
    expect(decompressed.stderr).toMatch(/^seekxz: \(stdin\): xz: /);
  });

  it('-l prints the block table that xz --list sees', () => {
    const input = fresh();
    expect(seekxz('-k', input).status).toBe(0);
    const listed = seekxz('-l', `${input}.xz`);
    expect(listed.status).toBe(0);
    const text = listed.stdout.toString();
    expect(text).toMatch(/Blocks: +5\n/);
    const table = text.split('  Blocks:\n')[1]!.trim().split('\n');
    expect(table[0]).toMatch(/Stream +Block +CompOffset +UncompOffset +TotalSize +UncompSize +Ratio +Check/);
    const rows = table.slice(1).map((line) => line.trim().split(/\s+/).slice(0, 6).map(Number));
    const expected = xzList(`${input}.xz`).blocks;
    expect(rows).toEqual(expected.map((block) => [block.stream, block.number, block.compressedOffset, block.uncompressedOffset, block.totalSize, block.uncompressedSize]));
  });

  it('seekxz --block-size=16M FILE works exactly as written in --help', () => {
    const input = fresh();
    const result = runCli('seekxz', ['--block-size=16M', input]);
    expect(result.status, result.stderr).toBe(0);
    const list = xzList(`${input}.xz`);
    expect(list.blocks.map((block) => [block.uncompressedSize, block.sizeFlags])).toEqual([[data.length, 'cu']]);
    expect(runCli('seekxz', ['--help']).stdout.toString()).toMatch(/seekxz --block-size=16M disk\.img/);
  });
});

describe('the reader fetches only what it needs', () => {
  const data = diskLikeData(20 * BLOCK + 100, 41);
  let one: Uint8Array;
  let two: Uint8Array;
  beforeAll(async () => {
    one = (await compressXz(data, { preset: 0 })).file;
    two = new Uint8Array(Buffer.concat([one, (await compressXz(data.subarray(0, 3 * BLOCK), { preset: 0, check: 'sha256' })).file]));
  });

  /** Each stream's header, index and footer: all that opening should read. */
  async function metadataRanges(file: Uint8Array): Promise<[number, number][]> {
    const { streams, blocks } = await readXzLayout(bufferSource(file));
    return streams.flatMap((stream) => {
      const own = blocks.filter((block) => block.stream === stream.number);
      const last = own[own.length - 1];
      const indexAt = last ? last.offset + last.totalSize : stream.offset + 12;
      const footerAt = stream.offset + stream.size - 12;
      return [
        [stream.offset, 12],
        [indexAt, footerAt - indexAt],
        [footerAt, 12],
      ] as [number, number][];
    });
  }
  const sorted = (ranges: [number, number][]) => [...ranges].sort((a, b) => a[0] - b[0] || a[1] - b[1]);

  it('opening reads each stream footer, index and header, and no block bytes', async () => {
    for (const file of [one, two]) {
      const counted = countingSource(bufferSource(file));
      const xz = await openXz(counted.source);
      await xz.close();
      expect(sorted(counted.reads)).toEqual(sorted(await metadataRanges(file)));
    }
  });

  /** Opens the one-stream file over a counting source and runs `work` with the reads made after opening. */
  async function afterOpening(work: (xz: XzSource, reads: [number, number][]) => Promise<void>): Promise<void> {
    const counted = countingSource(bufferSource(one));
    const xz = await openXz(counted.source, { threads: 2 });
    try {
      counted.reads.length = 0;
      await work(xz, counted.reads);
    } finally {
      await xz.close();
    }
  }
  const expectRead = async (xz: XzSource, offset: number, length: number) =>
    expect(sha256(await xz.read(offset, length)), `read(${offset}, ${length})`).toBe(sha256(data.subarray(offset, offset + length)));

  /**
   * The header of each block before `index`: its offset depends on their index records, so the
   * first read past them holds each record against its block header, once (64 bytes of each, all
   * in one Source.readRanges call: here a source without it, so one read each; these headers fit).
   */
  const headersBefore = (xz: XzSource, index: number): [number, number][] =>
    xz.blocks.slice(0, index).map((block) => [block.offset, Math.min(64, block.totalSize)]);

  it('a random 4 KiB read fetches its block and the headers before it; a second read in that block fetches nothing', async () => {
    await afterOpening(async (xz, reads) => {
      const block = xz.blocks[7]!;
      await expectRead(xz, block.uStart + 1234, 4096);
      const plan = sorted([...headersBefore(xz, 7), [block.offset, block.totalSize]]);
      expect(sorted(reads)).toEqual(plan);
      expect(xz.cache.loads).toBe(1);
      await expectRead(xz, block.uStart + 40_000, 4096);
      expect(sorted(reads)).toEqual(plan);
      expect(xz.cache.loads).toBe(1);
      // Block 3 is confirmed already: a read there fetches that block only.
      reads.length = 0;
      await expectRead(xz, xz.blocks[3]!.uStart, 100);
      expect(reads).toEqual([[xz.blocks[3]!.offset, xz.blocks[3]!.totalSize]]);
    });
  });

  it('a read across a block boundary fetches exactly the two blocks, and the headers before them', async () => {
    await afterOpening(async (xz, reads) => {
      const [left, right] = [xz.blocks[3]!, xz.blocks[4]!];
      await expectRead(xz, right.uStart - 1000, 3000);
      expect(sorted(reads)).toEqual(
        sorted([
          ...headersBefore(xz, 3),
          [left.offset, left.totalSize],
          [right.offset, right.totalSize],
        ]),
      );
      expect(xz.cache.loads).toBe(2);
    });
  });

  it('concurrent reads of one block decode it once', async () => {
    await afterOpening(async (xz, reads) => {
      const block = xz.blocks[11]!;
      await Promise.all(Array.from({ length: 8 }, (_, index) => expectRead(xz, block.uStart + index * 7000, 4096)));
      expect(xz.cache.loads).toBe(1);
      expect(sorted(reads)).toEqual(sorted([...headersBefore(xz, 11), [block.offset, block.totalSize]]));
    });
  });
});

describe('blocks larger than maxBlock', () => {
  let dir: { path: string; remove: () => void };
  const data = diskLikeData(700_000, 51);
  let path: string;
  beforeAll(() => {
    requireTool('xz', 'xz-utils');
    dir = tempDir();
    path = join(dir.path, 'single.img.xz');
    // Single-threaded xz writes one block however large the input.
    writeFileSync(path, run('xz', ['-c', '-0', '-T1'], { input: data }).stdout);
    expect(xzList(path).blocks.length).toBe(1);
  });
  afterAll(() => dir.remove());

  it('XZ_BLOCK_TOO_LARGE: a random read names the block and the fix', async () => {
    const xz = await openXz(await fileSource(path), { maxBlock: 256 * 1024 });
    try {
      await expect(xz.read(1000, 4096)).rejects.toMatchObject({
        code: 'XZ_BLOCK_TOO_LARGE',
        message: expect.stringMatching(/block 1 holds 700000 bytes, more than the 262144-byte limit.*--block-size=16M/),
      });
    } finally {
      await xz.close();
    }
  });

  it('seekxz -d and -t still work on it: the file is streamed', () => {
    const tested = runCli('seekxz', ['-t', '--max-block=256K', path]);
    expect(tested.status, tested.stderr).toBe(0);
    const decompressed = runCli('seekxz', ['-dk', '-q', '--max-block=256K', path]);
    expect(decompressed.status, decompressed.stderr).toBe(0);
    expect(sha256(readFileSync(path.slice(0, -3)))).toBe(sha256(data));
    expect(existsSync(path)).toBe(true);
  });
});

describe('damaged files give the error named after them', () => {
  const SMALL_BLOCK = 16 * 1024;
  const data = diskLikeData(4 * SMALL_BLOCK + 3000, 61);
  let file: Uint8Array;
  let pool: WorkerPool;
  // Offsets of the parts, from the writer's own report.
  let blocks: (IndexRecord & { offset: number })[];
  let indexAt: number;
  let footerAt: number;
  beforeAll(async () => {
    const compressed = await compressXz(data, { blockSize: SMALL_BLOCK, preset: 0 });
    file = compressed.file;
    blocks = compressed.blocks;
    footerAt = file.length - 12;
    const last = blocks[blocks.length - 1]!;
    indexAt = last.offset + last.unpaddedSize + ((4 - (last.unpaddedSize % 4)) % 4);
    // One pool for all cases: starting a pool per case is slow, and see the abort test below.
    pool = createWorkerPool(2);
  });
  afterAll(() => pool.close());

  const openCode = (bytes: Uint8Array) => codeOf(readAllBlocks(bytes, pool, data.length));

  it('the undamaged file reads back (the baseline for the cases below)', async () => {
    const out = await readAllBlocks(file, pool, data.length);
    expect(sha256(out as Uint8Array)).toBe(sha256(data));
  });

  it('XZ_BAD_DATA: a size that is not a multiple of four', async () => {
    for (const bytes of [file.subarray(0, file.length - 1), file.subarray(0, file.length - 3), Buffer.concat([file, Buffer.of(0)]), Buffer.concat([file, Buffer.of(0, 0, 0, 0, 0, 0)])]) {
      expect(await openCode(bytes)).toBe('XZ_BAD_DATA');
    }
  });

  it('XZ_TRUNCATED: too short for a stream header and footer', async () => {
    for (const cut of [0, 4, 8, 12, 16, 20]) expect(await openCode(file.subarray(0, cut))).toBe('XZ_TRUNCATED');
  });

  it('XZ_BAD_FOOTER: cut at any other multiple of four', async () => {
    const wrong: string[] = [];
    for (let cut = 24; cut < file.length; cut += 4) {
      const code = await openCode(file.subarray(0, cut));
      if (code !== 'XZ_BAD_FOOTER') wrong.push(`cut at ${cut}: ${code}`);
    }
    expect(wrong).toEqual([]);
  });

  it('XZ_BAD_FOOTER: the footer magic YZ damaged', async () => {
    for (const at of [footerAt + 10, footerAt + 11]) expect(await openCode(flipped(file, at, 0x20))).toBe('XZ_BAD_FOOTER');
  });

  it('XZ_BAD_CRC: any other footer byte damaged (CRC32, backward size, flags)', async () => {
    for (let at = footerAt; at < footerAt + 10; at++) {
      for (const xor of [0x01, 0x80]) expect(await openCode(flipped(file, at, xor)), `byte ${at} ^ ${xor}`).toBe('XZ_BAD_CRC');
    }
  });

  it('XZ_BAD_CRC or XZ_BAD_INDEX: any index byte damaged', async () => {
    const wrong: string[] = [];
    for (let at = indexAt; at < footerAt; at++) {
      for (const xor of [0x01, 0x80, 0xff]) {
        const code = await openCode(flipped(file, at, xor));
        if (code !== 'XZ_BAD_CRC' && code !== 'XZ_BAD_INDEX') wrong.push(`index byte ${at - indexAt} ^ 0x${xor.toString(16)}: ${code}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('XZ_BAD_MAGIC: the stream header magic damaged', async () => {
    for (let at = 0; at < 6; at++) expect(await openCode(flipped(file, at, 0x01))).toBe('XZ_BAD_MAGIC');
  });

  it('XZ_BAD_CRC: the stream header flags or their CRC32 damaged', async () => {
    for (let at = 6; at < 12; at++) expect(await openCode(flipped(file, at, 0x01))).toBe('XZ_BAD_CRC');
  });

  it('XZ_DECODE_FAILED: any byte of a block header damaged; the other blocks still read', async () => {
    const block = blocks[2]!;
    const headerSize = (file[block.offset]! + 1) * 4;
    const wrong: string[] = [];
    for (let at = block.offset; at < block.offset + headerSize; at++) {
      for (const xor of [0x01, 0x80, 0xff]) {
        const xz = await openXz(bufferSource(flipped(file, at, xor)), { pool });
        try {
          const error = await xz.read(2 * SMALL_BLOCK, 10).then(() => undefined, (caught: unknown) => caught as SeekzError);
          if (error?.code !== 'XZ_DECODE_FAILED' || !/^xz: block 3 at offset \d+ does not decode: /.test(error.message)) {
            wrong.push(`header byte ${at - block.offset} ^ 0x${xor.toString(16)}: ${error ? `${error.code} ${error.message}` : 'read succeeded'}`);
          }
          expect(sha256(await xz.read(0, 2 * SMALL_BLOCK))).toBe(sha256(data.subarray(0, 2 * SMALL_BLOCK)));
        } finally {
          await xz.close();
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('XZ_DECODE_FAILED: a block header size byte that claims more bytes than the block holds', async () => {
    // Blocks of text compress to far less than the 1 KiB that a size byte of 0xff claims, so
    // liblzma runs out of input inside the header instead of finding a bad CRC.
    const text = new TextEncoder().encode('root=UUID=0 console=ttyS0 quiet\n'.repeat(1024));
    const small = await compressXz(text, { blockSize: 4096, preset: 0 });
    const block = small.blocks[1]!;
    expect(block.unpaddedSize).toBeLessThan(1024);
    const damaged = new Uint8Array(small.file);
    damaged[block.offset] = 0xff;
    const xz = await openXz(bufferSource(damaged), { pool });
    try {
      await expect(xz.read(4096, 10)).rejects.toMatchObject({
        code: 'XZ_DECODE_FAILED',
        message: expect.stringMatching(new RegExp(`^xz: block 2 at offset ${block.offset} does not decode: `)),
      });
    } finally {
      await xz.close();
    }
  });

  it('XZ_DECODE_FAILED: compressed data or the check damaged', async () => {
    const block = blocks[1]!;
    const headerSize = (file[block.offset]! + 1) * 4;
    const checkAt = block.offset + block.unpaddedSize - 8; // CRC64
    const positions = [block.offset + headerSize, block.offset + headerSize + 100, checkAt - 1 - 50, checkAt, checkAt + 7];
    for (const at of positions) {
      const xz = await openXz(bufferSource(flipped(file, at, 0x10)), { pool });
      try {
        await expect(xz.read(SMALL_BLOCK + 5, 10), `byte ${at}`).rejects.toMatchObject({ code: 'XZ_DECODE_FAILED' });
      } finally {
        await xz.close();
      }
    }
  });

  it('XZ_BAD_INDEX: a footer that claims an index larger than the file', async () => {
    const lying = new Uint8Array(file);
    lying.set(buildStreamFooter(CHECK_IDS.crc64, 4 * Math.ceil(file.length / 4)), footerAt);
    expect(await openCode(lying)).toBe('XZ_BAD_INDEX');
  });

  it('XZ_BAD_INDEX: an index whose blocks take more bytes than the file holds', async () => {
    const records = blocks.map((block) => ({ unpaddedSize: block.unpaddedSize * 3, uncompressedSize: block.uncompressedSize }));
    const index = buildIndex(records);
    const lying = Buffer.concat([file.subarray(0, indexAt), index, buildStreamFooter(CHECK_IDS.crc64, index.length)]);
    expect(await openCode(lying)).toBe('XZ_BAD_INDEX');
  });

  it('XZ_BAD_INDEX: a record count that the index bytes cannot hold (no allocation)', async () => {
    // Indicator, count 2^40 as a varint, padding, then a valid CRC32: every claim but the count holds.
    const body = Uint8Array.of(0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 0);
    const padded = new Uint8Array(12);
    padded.set(body);
    const index = Buffer.concat([padded, Buffer.from(new Uint32Array([crc32(padded)]).buffer)]);
    const lying = Buffer.concat([file.subarray(0, indexAt), index, buildStreamFooter(CHECK_IDS.crc64, index.length)]);
    expect(await openCode(lying)).toBe('XZ_BAD_INDEX');
  });

  it('not an xz file at all: openXz rejects with an XZ_* code, seekz read says what it is', async () => {
    const text = new TextEncoder().encode('this is plain text, not xz; '.repeat(100));
    expect(await openCode(text)).toMatch(/^XZ_(BAD_MAGIC|BAD_FOOTER)$/);
    const dir = tempDir();
    try {
      const path = join(dir.path, 'text.xz');
      writeFileSync(path, text);
      const read = runCli('seekz', ['read', path, '--offset', '0', '--length', '10']);
      expect(read.status).toBe(1);
      expect(read.stderr).toMatch(/^seekz: \S+text\.xz: not a gzip, xz or zstd file/);
      const decompressed = runCli('seekxz', ['-dc', path]);
      expect(decompressed.status).toBe(1);
      expect(decompressed.stderr).toMatch(/^seekxz: \S+text\.xz: xz: /);
    } finally {
      dir.remove();
    }
  });

  it('fuzz: random damage gives the right bytes or an XZ_* SeekzError, never anything else, never a hang', async () => {
    const CASE_TIMEOUT = 5000;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: file.length - 1 }), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 3 }),
        async (flips) => {
          const damaged = new Uint8Array(file);
          for (const { at, xor } of flips) damaged[at]! ^= xor;
          let timer: NodeJS.Timeout | undefined;
          const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`hang: no answer in ${CASE_TIMEOUT} ms`)), CASE_TIMEOUT);
          });
          try {
            const out = await Promise.race([readAllBlocks(damaged, pool, data.length), timeout]);
            // Only damage that cancels out could read back; it must then read back right.
            expect(out).toBeInstanceOf(Uint8Array);
            expect(sha256(out as Uint8Array)).toBe(sha256(data));
          } catch (error) {
            if (!(error instanceof SeekzError)) throw error;
            expect(error.code).toMatch(/^XZ_/);
            expect(error.message).toMatch(/^xz: /);
          } finally {
            clearTimeout(timer);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('closing a reader', () => {
  let dir: { path: string; remove: () => void };
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  it('right after a failed read, while another block is still decoding, does not abort the process', async () => {
    // Two 4 MiB blocks of text: the first with a damaged header (fails at once), the second takes
    // tens of milliseconds to decode, so close() lands while a worker is inside liblzma.
    const block = 4 << 20;
    const text = new Uint8Array(2 * block);
    let state = 1;
    for (let index = 0; index < text.length; index++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      text[index] = 97 + ((state >>> 16) % 8);
    }
    const { file } = await compressXz(text, { blockSize: block, preset: 0 });
    file[12 + 2]! ^= 0xff;
    const path = join(dir.path, 'two-blocks.xz');
    writeFileSync(path, file);
    // In a child process: if the bug is there, node aborts (SIGABRT), which would take the test runner with it.
    const module = (name: string) => new URL(`../dist/src/${name}`, import.meta.url).href;
    const script = `
      import { readFileSync } from 'node:fs';
      const { openXz } = await import(${JSON.stringify(module('xz/reader.js'))});
      const { bufferSource } = await import(${JSON.stringify(module('source/buffer.js'))});
      const file = readFileSync(${JSON.stringify(path)});
      for (let round = 0; round < 12; round++) {
        const xz = await openXz(bufferSource(file), { threads: 2 });
        // Both workers load liblzma first: two decodes of the damaged block fail at once.
        await Promise.all([xz.decodeBlock(0).catch(() => {}), xz.decodeBlock(0).catch(() => {})]);
        const failed = await xz.read(0, xz.size).then(() => false, (error) => error.code === 'XZ_DECODE_FAILED');
        if (!failed) throw new Error('the read should have failed with XZ_DECODE_FAILED');
        await xz.close();
      }
      console.log('survived');
    `;
    const scriptPath = join(dir.path, 'close-after-failure.mjs');
    writeFileSync(scriptPath, script);
    const child = run(process.execPath, [scriptPath]);
    expect(child.stderr).not.toMatch(/FATAL ERROR/);
    expect(child.stdout.toString().trim()).toBe('survived');
    expect(child.status).toBe(0);
  });
});
