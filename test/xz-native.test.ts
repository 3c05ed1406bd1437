/**
 * The block decode engines (src/native/xz-engine.ts): this file runs twice (vitest.config.ts), on
 * the native addon and with SEEKZ_NATIVE=0 on node-liblzma, and each run holds its engine to the
 * same outcomes: xz -dc's bytes for a good block, XZ_DECODE_FAILED for every kind of damage, and
 * INTERRUPTED when the stop flag is up.
 */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeekzError } from '../src/errors.js';
import { describeEngines, nativeXz } from '../src/native/xz-engine.js';
import { bufferSource } from '../src/source/buffer.js';
import { sequentialFromSource } from '../src/source/sequential.js';
import type { XzDecodeJob } from '../src/workers/jobs.js';
import { runXzDecode } from '../src/xz/block-codec.js';
import { readXzLayout, type XzBlock } from '../src/xz/reader.js';
import { writeXz } from '../src/xz/writer.js';
import { diskLikeData, requireTool, run, sha256, tempDir } from './helpers/tools.js';

const BLOCK = 1 << 20;
const fallback = process.env.SEEKZ_NATIVE === '0';

let dir: { path: string; remove: () => void };
let file: Uint8Array;
let blocks: XzBlock[];
let decoded: Uint8Array; // what xz -dc says the file holds

beforeAll(async () => {
  requireTool('xz', 'xz-utils');
  dir = tempDir('seekz-xz-native-');
  const data = diskLikeData(2 * BLOCK + 4321, 17);
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
