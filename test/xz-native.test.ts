/**
 * The block decode engines (src/native/xz-engine.ts): this file runs twice (vitest.config.ts), on
 * the native addon and with SEEKZ_NATIVE=0 on node-liblzma, and each run holds its engine to the
 * same outcomes: xz -dc's bytes for a good block, XZ_DECODE_FAILED for every kind of damage, and
 * INTERRUPTED when the stop flag is up. The native engine runs in process (libuv's thread pool, no
 * worker thread), node-liblzma on worker threads; both give seekxz the same compressed bytes, the
 * same decoded bytes and the same one-line errors.
 */
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { describeEngines, nativeXz } from '../src/native/xz-engine.js';
import { bufferSource } from '../src/source/buffer.js';
import { sequentialFromSource } from '../src/source/sequential.js';
import type { XzDecodeJob } from '../src/workers/jobs.js';
import { createWorkerPool } from '../src/workers/pool.js';
import { releaseXzCoders, runXzDecode } from '../src/xz/block-codec.js';
import { readXzLayout, type XzBlock } from '../src/xz/reader.js';
import { writeXz } from '../src/xz/writer.js';
import { cliPath, diskLikeData, requireTool, run, sha256, tempDir } from './helpers/tools.js';

const BLOCK = 1 << 20;
const fallback = process.env.SEEKZ_NATIVE === '0';

let dir: { path: string; remove: () => void };
let file: Uint8Array;
let blocks: XzBlock[];
let decoded: Uint8Array; // what xz -dc says the file holds
let input: string; // the data as a file, for seekxz

beforeAll(async () => {
  requireTool('xz', 'xz-utils');
  dir = tempDir('seekz-xz-native-');
  const data = diskLikeData(2 * BLOCK + 4321, 17);
  input = join(dir.path, 'data');
  writeFileSync(input, data);
  const parts: Uint8Array[] = [];
  await writeXz(sequentialFromSource(bufferSource(data)), { write: async (bytes) => void parts.push(new Uint8Array(bytes)) }, { blockSize: BLOCK, threads: 2, preset: 1 });
  file = new Uint8Array(Buffer.concat(parts));
  blocks = (await readXzLayout(bufferSource(file))).blocks;
  const path = join(dir.path, 'data.xz');
  writeFileSync(path, file);
  decoded = new Uint8Array(run('xz', ['-dc', path]).stdout);
});
afterAll(() => dir?.remove());

function jobFor(index: number, change: { bytes?: (bytes: Uint8Array) => void; unpaddedSize?: number; expectedSize?: number } = {}): XzDecodeJob {
  const block = blocks[index]!;
  const bytes = file.slice(block.offset, block.offset + block.totalSize);
  change.bytes?.(bytes);
  return {
    kind: 'xz-decode',
    bytes,
    checkId: block.checkId,
    unpaddedSize: change.unpaddedSize ?? block.unpaddedSize,
    expectedSize: change.expectedSize ?? block.uSize,
    block: block.number,
    offset: block.offset,
  };
}

async function outcome(job: XzDecodeJob, stop?: Int32Array): Promise<string> {
  try {
    return sha256((await runXzDecode(job, stop)).reply.data);
  } catch (error) {
    return error instanceof SeekzError ? `${error.code}: ${error.message}` : `not a SeekzError: ${String(error)}`;
  }
}

describe(`the ${fallback ? 'node-liblzma (SEEKZ_NATIVE=0)' : 'native'} engine`, () => {
  it('is the one describeEngines names', () => {
    if (fallback) {
      expect(nativeXz()).toBeUndefined();
      expect(describeEngines().xz).toMatch(/^node-liblzma \(fallback: SEEKZ_NATIVE=0\)/);
    } else {
      // npm test builds the addon (scripts/ensure-deps.mjs); a machine that cannot build it fails here, loudly.
      expect(nativeXz(), describeEngines().xz).toBeDefined();
      expect(describeEngines().xz).toMatch(/^native addon seekz_xz \(liblzma 5\.\d+\.\d+\)/);
    }
  });

  it('decodes every block to the bytes xz -dc gives', async () => {
    for (const [index, block] of blocks.entries()) {
      expect(await outcome(jobFor(index))).toBe(sha256(decoded.subarray(block.uStart, block.uStart + block.uSize)));
    }
  });

  const damage: [string, (index: number) => XzDecodeJob, RegExp][] = [
    ['a block header byte (its CRC32 fails)', (index) => jobFor(index, { bytes: (bytes) => void (bytes[3]! ^= 0x10) }), /does not decode/],
    ['the header size byte', (index) => jobFor(index, { bytes: (bytes) => void (bytes[0] = 0xff) }), /does not decode/],
    ['an index indicator where the header should be', (index) => jobFor(index, { bytes: (bytes) => void (bytes[0] = 0) }), /does not decode/],
    ['a compressed byte', (index) => jobFor(index, { bytes: (bytes) => void (bytes[bytes.length >> 1]! ^= 0x55) }), /does not decode/],
    ['a byte of the check', (index) => jobFor(index, { bytes: (bytes) => void (bytes[bytes.length - 1]! ^= 0x01) }), /does not decode/],
    ['a record one byte shorter (unpadded size)', (index) => jobFor(index, { unpaddedSize: blocks[index]!.unpaddedSize - 1 }), /does not decode/],
    ['a record one byte longer (unpadded size)', (index) => jobFor(index, { unpaddedSize: blocks[index]!.unpaddedSize + 1 }), /does not decode/],
    ['a record that says one byte less uncompressed', (index) => jobFor(index, { expectedSize: blocks[index]!.uSize - 1 }), /does not decode/],
    ['a record that says one byte more uncompressed', (index) => jobFor(index, { expectedSize: blocks[index]!.uSize + 1 }), /does not decode/],
    ['the block cut short', (index) => ({ ...jobFor(index), bytes: jobFor(index).bytes.subarray(0, blocks[index]!.totalSize >> 1) }), /does not decode/],
  ];
  for (const [what, job, message] of damage) {
    it(`XZ_DECODE_FAILED for ${what}, naming the block`, async () => {
      for (const index of [0, blocks.length - 1]) {
        const result = await outcome(job(index));
        expect(result).toMatch(/^XZ_DECODE_FAILED: xz: block \d+ at offset \d+ does not decode: /);
        expect(result).toMatch(message);
      }
    });
  }

  it('INTERRUPTED when the stop flag is up, before any output', async () => {
    const stop = new Int32Array(new SharedArrayBuffer(4));
    Atomics.store(stop, 0, 1);
    expect(await outcome(jobFor(0), stop)).toMatch(/^INTERRUPTED: /);
  });
});

describe('in process or on worker threads', () => {
  it(`${fallback ? 'starts worker threads for xz jobs' : 'codes xz blocks without starting a worker thread'}`, async () => {
    // Node emits 'worker' on process for every worker thread it starts.
    let started = 0;
    const count = () => void started++;
    process.on('worker', count);
    const pool = createWorkerPool(2);
    try {
      const block = blocks[0]!;
      const data = decoded.slice(block.uStart, block.uStart + block.uSize);
      const [encoded, decodedBlock] = await Promise.all([
        pool.run({ kind: 'xz-encode', data, preset: 1, extreme: false, checkId: block.checkId }, [data.buffer]),
        pool.run(jobFor(0), []),
      ]);
      expect(encoded.compressed.length).toBeGreaterThan(0);
      expect(sha256(decodedBlock.data)).toBe(sha256(decoded.subarray(block.uStart, block.uStart + block.uSize)));
      expect(started).toBe(fallback ? 2 : 0);
    } finally {
      process.off('worker', count);
      await pool.close();
    }
  });

  it(`releaseXzCoders ${fallback ? 'has nothing to free on node-liblzma' : 'gives back the idle encoder (at -6 on a 1 MiB block it has touched about 25 MiB), and coding goes on'}`, async () => {
    const pool = createWorkerPool(2);
    try {
      const block = blocks[0]!;
      const encode = () => {
        const data = decoded.slice(block.uStart, block.uStart + block.uSize);
        return pool.run({ kind: 'xz-encode', data, preset: 6, extreme: false, checkId: block.checkId }, [data.buffer]);
      };
      const first = await encode();
      const before = process.memoryUsage().rss;
      releaseXzCoders();
      const freed = before - process.memoryUsage().rss;
      if (fallback) expect(nativeXz()).toBeUndefined();
      else expect(freed).toBeGreaterThan(16 * 2 ** 20);
      expect(sha256((await encode()).compressed)).toBe(sha256(first.compressed));
    } finally {
      await pool.close();
    }
  });

  // Both engines, whichever this run is on: SEEKZ_NATIVE reaches the command through its environment.
  const engines = [
    { name: 'native', env: { ...process.env, SEEKZ_NATIVE: '1' } },
    { name: 'node-liblzma', env: { ...process.env, SEEKZ_NATIVE: '0' } },
  ];
  const seekxz = (env: NodeJS.ProcessEnv, ...args: string[]) => run(process.execPath, [cliPath('seekxz'), ...args], { env });

  it('seekxz -T1 and -T2 compress to the same bytes on both engines, and each decodes both to the data (to a file and to a pipe)', () => {
    const outputs = engines.flatMap(({ env }) => ['1', '2'].map((threads) => seekxz(env, '-c', '-3', '-T', threads, '--block-size=256KiB', input)));
    for (const output of outputs) expect(output.stderr).toBe('');
    expect(new Set(outputs.map((output) => sha256(output.stdout))).size).toBe(1);
    const compressed = join(dir.path, 'both.xz');
    writeFileSync(compressed, outputs[0]!.stdout);
    const want = sha256(readFileSync(input));
    for (const { name, env } of engines) {
      const out = join(dir.path, `out-${name}`);
      expect(seekxz(env, '-d', '-T2', '-o', out, '-k', compressed).status).toBe(0);
      expect(sha256(readFileSync(out)), `${name}, to a file`).toBe(want);
      expect(sha256(seekxz(env, '-dc', '-T2', compressed).stdout), `${name}, to a pipe`).toBe(want);
    }
  });

  it('a damaged block fails with the same one line on both engines, to a file and to a pipe', () => {
    const damaged = new Uint8Array(file);
    const block = blocks[1]!;
    damaged[block.offset + (block.totalSize >> 1)]! ^= 0x55;
    const path = join(dir.path, 'damaged.xz');
    writeFileSync(path, damaged);
    const lines = engines.flatMap(({ env }) =>
      [['-d', '-T2', '-o', join(dir.path, 'never'), '-k', path], ['-dc', '-T2', path]].map((args) => {
        const result = seekxz(env, ...args);
        expect(result.status).toBe(1);
        return result.stderr;
      }),
    );
    expect(lines[0]).toMatch(/^seekxz: [^:]+: xz: block 2 at offset \d+ does not decode: compressed data is corrupt.*\n$/);
    expect(new Set(lines).size).toBe(1);
  });
});
