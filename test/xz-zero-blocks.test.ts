/**
 * All-zero xz blocks are known by their bytes (src/xz/zero-blocks.ts): reads, whole passes and
 * zeroRanges skip a block only when its bytes, check type and record equal those of a block that
 * was decoded, check verified, and found all zeros. The oracles are xz -t / xz -dc and the data.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { bufferSource } from '../src/source/buffer.js';
import { sequentialFromSource } from '../src/source/sequential.js';
import { createWorkerPool, type WorkerPool } from '../src/workers/pool.js';
import { decodeIntoFile, decompressXz } from '../src/xz/decompress.js';
import { buildIndex, buildStreamFooter, buildStreamHeader, CHECK_IDS, type CheckName } from '../src/xz/format.js';
import { openXz, readXzLayout } from '../src/xz/reader.js';
import { writeXz } from '../src/xz/writer.js';
import { forgetZeroBlocks } from '../src/xz/zero-blocks.js';
import { cliPath, diskLikeData, requireTool, run, sha256, tempDir, xzList } from './helpers/tools.js';

const BLOCK = 256 * 1024;
const zeros = (length: number) => new Uint8Array(length);

/** data | zeros | zeros | data | zeros | a short zero block at the end */
function sparseData(): Uint8Array {
  const parts = [diskLikeData(BLOCK, 5), zeros(2 * BLOCK), diskLikeData(BLOCK, 6), zeros(BLOCK), zeros(BLOCK / 4)];
  return new Uint8Array(Buffer.concat(parts));
}

async function compress(data: Uint8Array, check: CheckName = 'crc64'): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await writeXz(sequentialFromSource(bufferSource(data)), { write: async (bytes) => void parts.push(new Uint8Array(bytes)) }, { blockSize: BLOCK, threads: 2, preset: 1, check });
  return new Uint8Array(Buffer.concat(parts));
}

/** A pool that counts the blocks it is asked to decode: the I/O plan of the zero path. */
function countingPool(inner: WorkerPool) {
  const counter = { decodes: 0 };
  const pool: WorkerPool = {
    threads: inner.threads,
    run(job, transfer) {
      if (job.kind === 'xz-decode') counter.decodes++;
      return inner.run(job, transfer);
    },
    close: async () => {},
    stop: () => inner.stop(),
  };
  return { pool, counter };
}

let dir: { path: string; remove: () => void };
let shared: WorkerPool;
let data: Uint8Array;
let file: Uint8Array;

beforeAll(async () => {
  requireTool('xz', 'xz-utils');
  dir = tempDir('seekz-zero-blocks-');
  shared = createWorkerPool(2);
  data = sparseData();
  file = await compress(data);
});
afterAll(async () => {
  await shared?.close();
  dir?.remove();
});
beforeEach(() => forgetZeroBlocks());

/** The zero ranges of `data` at block granularity: the oracle for zeroRanges. */
function zeroBlocksOf(bytes: Uint8Array, from: number, to: number) {
  const ranges: { offset: number; length: number }[] = [];
  for (let start = 0; start < bytes.length; start += BLOCK) {
    const end = Math.min(bytes.length, start + BLOCK);
    if (!bytes.subarray(start, end).every((byte) => byte === 0)) continue;
    const [clippedStart, clippedEnd] = [Math.max(from, start), Math.min(to, end)];
    if (clippedStart >= clippedEnd) continue;
    const last = ranges[ranges.length - 1];
    if (last && last.offset + last.length === clippedStart) last.length += clippedEnd - clippedStart;
    else ranges.push({ offset: clippedStart, length: clippedEnd - clippedStart });
  }
  return ranges;
}

describe('zero blocks are decoded once, then known by their bytes', () => {
  it('the writer reuses one encoding (the premise), and xz -dc agrees with the data', async () => {
    const path = join(dir.path, 'sparse.xz');
    writeFileSync(path, file);
    expect(sha256(run('xz', ['-dc', path]).stdout)).toBe(sha256(data));
    const blocks = await readXzLayout(bufferSource(file)).then((layout) => layout.blocks);
    const bytesOf = (index: number) => sha256(file.subarray(blocks[index]!.offset, blocks[index]!.offset + blocks[index]!.totalSize));
    expect(bytesOf(2)).toBe(bytesOf(1));
    expect(bytesOf(4)).toBe(bytesOf(1));
  });

  it('zeroRanges: exact answer; one decode per distinct zero encoding, none the second time', async () => {
    const { pool, counter } = countingPool(shared);
    const xz = await openXz(bufferSource(file), { pool });
    try {
      expect(await xz.zeroRanges(0, xz.size)).toEqual(zeroBlocksOf(data, 0, data.length));
      // The full-size zero block and the short last one: two encodings, each verified once.
      expect(counter.decodes).toBe(2);
      const [from, to] = [BLOCK + 100, 4 * BLOCK + 7];
      expect(await xz.zeroRanges(from, to - from)).toEqual(zeroBlocksOf(data, from, to));
      expect(await xz.zeroRanges(xz.size, 10)).toEqual([]);
      expect(counter.decodes).toBe(2);
    } finally {
      await xz.close();
    }
  });

  it('reads of zero blocks decode nothing once an encoding is verified, and give zeros', async () => {
    const { pool, counter } = countingPool(shared);
    const xz = await openXz(bufferSource(file), { pool });
    try {
      expect(sha256(await xz.read(BLOCK, BLOCK))).toBe(sha256(zeros(BLOCK))); // decodes it: the first
      expect(counter.decodes).toBe(1);
      const second = await xz.read(2 * BLOCK + 10, BLOCK - 20);
      expect(sha256(second)).toBe(sha256(zeros(BLOCK - 20)));
      expect(sha256(await xz.read(4 * BLOCK, BLOCK))).toBe(sha256(zeros(BLOCK)));
      expect(counter.decodes).toBe(1);
      // A read across data and zeros decodes only the data block.
      expect(sha256(await xz.read(3 * BLOCK - 5, BLOCK + 10))).toBe(sha256(data.subarray(3 * BLOCK - 5, 4 * BLOCK + 5)));
      expect(counter.decodes).toBe(2);
    } finally {
      await xz.close();
    }
  });

  it('a whole pass (seekxz -d) decodes the data blocks and one zero block of each encoding', async () => {
    const { pool, counter } = countingPool(shared);
    const xz = await openXz(bufferSource(file), { pool });
    const out: Uint8Array[] = [];
    try {
      await decompressXz(xz, { write: async (bytes) => void out.push(new Uint8Array(bytes)) }, { threads: 1, maxBlock: 2 ** 30, streamFile: () => [] as never });
    } finally {
      await xz.close();
    }
    expect(sha256(Buffer.concat(out))).toBe(sha256(data));
    // 2 data blocks, the first full zero block, the short zero block; the other 2 zero blocks are known.
    expect(counter.decodes).toBe(4);
  });
});

describe('bytes that only resemble a verified zero block are decoded and checked', () => {
  /** Where each block of `bytes` starts and how long it is in the file. */
  const blocksOf = async (bytes: Uint8Array) => (await readXzLayout(bufferSource(bytes))).blocks;

  it('a zero block with one byte of its check changed: not zero, decoded, rejected as xz -t rejects it', async () => {
    const blocks = await blocksOf(file);
    const target = blocks[2]!; // the second full zero block, identical to blocks[1] but for this byte
    const forged = new Uint8Array(file);
    forged[target.offset + target.unpaddedSize - 1]! ^= 0x01;
    const path = join(dir.path, 'check-changed.xz');
    writeFileSync(path, forged);
    expect(run('xz', ['-t', path]).status).not.toBe(0);
    const { pool, counter } = countingPool(shared);
    const xz = await openXz(bufferSource(forged), { pool });
    try {
      expect(sha256(await xz.read(BLOCK, 100))).toBe(sha256(zeros(100))); // block 2 verified, its encoding learnt
      const failed = await xz.read(2 * BLOCK, 100).then(
        () => 'read',
        (error: SeekzError) => error.code,
      );
      expect(failed).toBe('XZ_DECODE_FAILED');
      expect(counter.decodes).toBe(2);
      await expect(xz.zeroRanges(2 * BLOCK, BLOCK)).rejects.toMatchObject({ code: 'XZ_DECODE_FAILED' });
    } finally {
      await xz.close();
    }
  });

  it('a zero block with one byte of its compressed data changed: never taken for zeros', async () => {
    const blocks = await blocksOf(file);
    const target = blocks[4]!;
    const forged = new Uint8Array(file);
    forged[target.offset + 20]! ^= 0x40; // past the 12–16-byte block header, inside the LZMA2 data
    const path = join(dir.path, 'data-changed.xz');
    writeFileSync(path, forged);
    const xzSays = run('xz', ['-dc', path]);
    const { pool } = countingPool(shared);
    const xz = await openXz(bufferSource(forged), { pool });
    try {
      await xz.read(BLOCK, 10); // learn the genuine encoding first
      const ranges = await xz.zeroRanges(0, xz.size).catch((error: SeekzError) => error.code);
      const read = await xz.read(4 * BLOCK, BLOCK).then(
        (bytes) => sha256(bytes),
        (error: SeekzError) => error.code,
      );
      if (xzSays.status === 0) {
        // Still valid LZMA2 (xz accepts it): then it must read as exactly what xz says it holds.
        expect(read).toBe(sha256(xzSays.stdout.subarray(4 * BLOCK, 5 * BLOCK)));
      } else {
        expect(read).toBe('XZ_DECODE_FAILED');
        expect(ranges).toBe('XZ_DECODE_FAILED');
      }
      if (Array.isArray(ranges)) expect(ranges.some((range) => range.offset <= 4 * BLOCK && range.offset + range.length > 4 * BLOCK)).toBe(false);
    } finally {
      await xz.close();
    }
  });

  it('the very bytes and record of a verified zero block in a stream of another check type: not zeros, rejected as xz -t rejects them', async () => {
    const blocks = await blocksOf(file);
    const zero = blocks[1]!;
    const blockBytes = file.subarray(zero.offset, zero.offset + zero.totalSize);
    // The same block bytes and index record, under a stream header and footer that say "no check".
    const index = buildIndex([{ unpaddedSize: zero.unpaddedSize, uncompressedSize: zero.uSize }]);
    const forged = new Uint8Array(Buffer.concat([buildStreamHeader(CHECK_IDS.none), blockBytes, index, buildStreamFooter(CHECK_IDS.none, index.length)]));
    const path = join(dir.path, 'other-check.xz');
    writeFileSync(path, forged);
    expect(run('xz', ['-t', path]).status).not.toBe(0);
    const { pool } = countingPool(shared);
    const genuine = await openXz(bufferSource(file), { pool });
    await genuine.read(BLOCK, 10); // verified under CRC64
    await genuine.close();
    const xz = await openXz(bufferSource(forged), { pool });
    try {
      // The stream says "no check", so the record's size leaves 8 bytes the header does not account for.
      const rejected = /^XZ_(DECODE_FAILED|INDEX_MISMATCH)$/;
      expect(await xz.zeroRanges(0, xz.size).then(() => 'zero ranges', (error: SeekzError) => error.code)).toMatch(rejected);
      expect(await xz.read(0, 10).then(() => 'read', (error: SeekzError) => error.code)).toMatch(rejected);
    } finally {
      await xz.close();
    }
  });

  it('a zero block whose file has another check type is its own encoding: verified again, not borrowed', async () => {
    const crc32 = await compress(data, 'crc32');
    const { pool, counter } = countingPool(shared);
    for (const bytes of [file, crc32]) {
      const xz = await openXz(bufferSource(bytes), { pool });
      expect(await xz.zeroRanges(0, xz.size)).toEqual(zeroBlocksOf(data, 0, data.length));
      await xz.close();
    }
    expect(counter.decodes).toBe(4);
  });
});

describe('zero runs of whole MiBs inside a block get blocks of their own (writer.ts ZERO_GRAIN)', () => {
  const MIB = 2 ** 20;
  const CELL = 4 * MIB;
  /**
   * Cell 0: data to 1.5 MiB, then zeros. Cell 1: zeros, a little data at 5 MiB, zeros. Cell 2:
   * 3 MiB of zeros, then data to 100 bytes short of 12 MiB.
   */
  function layout(): Uint8Array {
    const bytes = new Uint8Array(3 * CELL - 100);
    bytes.set(diskLikeData(1.5 * MIB, 7), 0);
    bytes.set(diskLikeData(MIB / 4, 8), 5 * MIB);
    bytes.set(diskLikeData(MIB - 100, 9), 11 * MIB);
    return bytes;
  }
  /** The oracle: each block-size cell that is all zeros, and in the others each whole MiB of zeros (aligned to the file), merged. */
  function zeroMibs(bytes: Uint8Array, cell: number) {
    const zero = (from: number, to: number) => bytes.subarray(from, to).every((byte) => byte === 0);
    const ranges: { offset: number; length: number }[] = [];
    const add = (offset: number, length: number) => {
      const last = ranges[ranges.length - 1];
      if (last && last.offset + last.length >= offset) last.length = Math.max(last.length, offset + length - last.offset);
      else ranges.push({ offset, length });
    };
    for (let start = 0; start < bytes.length; start += cell) {
      const end = Math.min(bytes.length, start + cell);
      if (zero(start, end)) add(start, end - start);
      else for (let grain = Math.ceil(start / MIB) * MIB; grain + MIB <= end; grain += MIB) if (zero(grain, grain + MIB)) add(grain, MIB);
    }
    return ranges;
  }

  it('seekxz cuts them out, as xz --list sees it; the same bytes at -T1, -T2 and on worker threads; xz -dc gives the data back', () => {
    const bytes = layout();
    const input = join(dir.path, 'runs.img');
    writeFileSync(input, bytes);
    const outputs = [
      run(process.execPath, [cliPath('seekxz'), '-0', '-T1', '--block-size=4M', '-c', input]),
      run(process.execPath, [cliPath('seekxz'), '-0', '-T2', '--block-size=4M', '-c', input]),
      run(process.execPath, [cliPath('seekxz'), '-0', '-T2', '--block-size=4M', '-c', input], { env: { ...process.env, SEEKZ_NATIVE: '0' } }),
    ];
    for (const output of outputs) expect(output.status, output.stderr).toBe(0);
    expect(sha256(outputs[1]!.stdout)).toBe(sha256(outputs[0]!.stdout));
    expect(sha256(outputs[2]!.stdout)).toBe(sha256(outputs[0]!.stdout));
    const path = join(dir.path, 'runs.img.xz');
    writeFileSync(path, outputs[0]!.stdout);
    expect(sha256(run('xz', ['-dc', path]).stdout)).toBe(sha256(bytes));
    // Zero runs in 1, 2, 4 ... MiB pieces: [2M,4M) | [4M,5M) · [6M,8M) | [8M,10M) [10M,11M).
    expect(xzList(path).blocks.map((block) => block.uncompressedSize)).toEqual([2 * MIB, 2 * MIB, MIB, MIB, 2 * MIB, 2 * MIB, MIB, MIB - 100]);
  });

  it('property: for random layouts, xz -dc gives the data back and zeroRanges is exactly the zero MiBs and zero blocks', async () => {
    let seed = 11;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let round = 0; round < 6; round++) {
      const cell = [2 * MIB, 3 * MIB, 4 * MIB, 3.5 * MIB][round % 4]!;
      const parts: Uint8Array[] = [];
      for (let length = 0; length < 14 * MIB; ) {
        const piece = Math.max(1, Math.floor(random() * 2.5 * MIB));
        parts.push(random() < 0.5 ? zeros(piece) : diskLikeData(piece, round * 100 + parts.length));
        length += piece;
      }
      const bytes = new Uint8Array(Buffer.concat(parts));
      const chunks: Uint8Array[] = [];
      await writeXz(sequentialFromSource(bufferSource(bytes)), { write: async (chunk) => void chunks.push(new Uint8Array(chunk)) }, { blockSize: cell, threads: 2, preset: 0 });
      const compressed = new Uint8Array(Buffer.concat(chunks));
      const path = join(dir.path, `property-${round}.xz`);
      writeFileSync(path, compressed);
      expect(sha256(run('xz', ['-dc', path]).stdout), `round ${round}`).toBe(sha256(bytes));
      const xz = await openXz(bufferSource(compressed), { pool: shared });
      try {
        expect(await xz.zeroRanges(0, xz.size), `round ${round}`).toEqual(zeroMibs(bytes, cell));
        expect(sha256(await xz.read(0, xz.size)), `round ${round}`).toBe(sha256(bytes));
      } finally {
        await xz.close();
      }
    }
  });
});

describe('seekxz -d into a file: zero-block candidates do not hold up the decodes (decompress.ts decodeIntoFile)', () => {
  it('a row of small zero-like blocks behind a block still decoding does not keep the next data blocks from starting', async () => {
    // A stand-in reader: block 0 decodes until released; blocks 1-6 are small and compress like zeros; 7-8 are data.
    const MIB = 2 ** 20;
    const blocks = Array.from({ length: 9 }, (_unused, index) => {
      const small = index >= 1 && index <= 6;
      return { uStart: index * MIB, uSize: MIB, totalSize: small ? 200 : MIB / 2 };
    });
    const started: number[] = [];
    let release!: () => void;
    const first = new Promise<void>((resolve) => (release = resolve));
    const xz = {
      blocks,
      size: blocks.length * MIB,
      decodeBlockTo: async (index: number) => {
        started.push(index);
        if (index === 0) await first;
        return undefined;
      },
      knownZeroBlock: async () => false, // candidates not yet known: decoded, riding on block 0's entry
    };
    const file = { fd: -1, at: 0, name: 'out', write: async () => {}, advance: () => {} };
    let progress = 0;
    const done = decodeIntoFile(xz as never, file, 2, (length) => (progress += length));
    // Let the pass go as far as it can while block 0 is still decoding (turns of the event loop, not time).
    for (let turn = 0; turn < 20; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(progress).toBe(0); // progress is reported in order: nothing before block 0
    release();
    await done;
    expect(progress).toBe(blocks.length * MIB);
  });
});

/**
 * A stand-in reader: block 0 is data that decodes until released, blocks 1-6 are small and known to
 * be zeros, 7-8 are data. Data blocks decode to their index in every byte.
 */
function standInReader(decoded: number[]) {
  const MIB = 2 ** 20;
  const blocks = Array.from({ length: 9 }, (_unused, index) => {
    const small = index >= 1 && index <= 6;
    return { uStart: index * MIB, uSize: MIB, totalSize: small ? 200 : MIB / 2 };
  });
  let release!: () => void;
  const first = new Promise<void>((resolve) => (release = resolve));
  const xz = {
    blocks,
    size: blocks.length * MIB,
    knownZeroBlock: async (index: number) => index >= 1 && index <= 6,
    decodeBlock: async (index: number) => {
      decoded.push(index);
      if (index === 0) await first;
      return new Uint8Array(MIB).fill(index + 1);
    },
    decodeBlockTo: async (index: number) => {
      decoded.push(index);
      if (index === 0) await first;
      return undefined;
    },
  };
  return { xz, release, expected: Buffer.concat(blocks.map((_block, index) => Buffer.alloc(MIB, index >= 1 && index <= 6 ? 0 : index + 1))) };
}

const turns = async (count: number) => {
  for (let turn = 0; turn < count; turn++) await new Promise<void>((resolve) => setImmediate(resolve));
};

describe('known zero blocks are neither decoded nor given a place in the pass (decompress.ts)', () => {
  it('into a file: nothing is decoded or written for them, and the next data blocks start while the first decodes', async () => {
    const decoded: number[] = [];
    const { xz, release } = standInReader(decoded);
    const writes: number[] = [];
    const file = { fd: -1, at: 0, name: 'out', write: async (offset: number) => void writes.push(offset), advance: () => {} };
    let progress = 0;
    const done = decodeIntoFile(xz as never, file, 2, (length) => (progress += length));
    await turns(20);
    expect(decoded).toEqual([0, 7, 8]);
    expect(progress).toBe(0);
    release();
    await done;
    expect(progress).toBe(xz.size);
    expect(writes).toEqual([]); // the stand-in's decodes wrote themselves; the zeros are holes
  });

  it('to a stream (seekxz -dc | …): the same, and the zeros go out in order between the data', async () => {
    const decoded: number[] = [];
    const { xz, release, expected } = standInReader(decoded);
    const out: Buffer[] = [];
    const sink = { write: async (bytes: Uint8Array) => void out.push(Buffer.from(bytes)) };
    const done = decompressXz(xz as never, sink, { threads: 2, maxBlock: 2 ** 30, streamFile: () => [] as never });
    await turns(20);
    // Before: each zero block took a place in the window of threads + 1, so block 7 waited for block 0.
    expect(decoded).toEqual([0, 7, 8]);
    expect(out).toEqual([]);
    release();
    expect(await done).toBe(xz.size);
    expect(Buffer.concat(out).equals(expected)).toBe(true);
  });
});
