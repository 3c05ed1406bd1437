import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileSource } from '../src/source/file.js';
import { openXz } from '../src/xz/reader.js';
import { diskLikeData, requireTool, run, runCli, sha256, SYSTEM_PYTHON, tempDir, xzList, type XzListBlock } from './helpers/tools.js';

/** Runs a shell line (for pipes and redirections) and fails loudly if it fails. */
function shell(line: string, cwd: string): Buffer {
  const result = run('sh', ['-c', line], { cwd });
  if (result.status !== 0) throw new Error(`${line} failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}

describe('the xz reader on files made by the real tools', () => {
  let dir: { path: string; remove: () => void };
  beforeAll(() => {
    requireTool('xz', 'xz-utils');
    requireTool('pixz', 'pixz');
    requireTool('tar', 'tar');
    requireTool(SYSTEM_PYTHON, 'python3');
    dir = tempDir();
    writeFileSync(join(dir.path, 'a.img'), diskLikeData(800_000, 71));
    writeFileSync(join(dir.path, 'b.img'), diskLikeData(300_000, 72));
    writeFileSync(join(dir.path, 'c.img'), diskLikeData(70_000, 73));
    const seekxz = runCli('seekxz', ['-q', '-k', '-0', '--block-size=64K', '--check=sha256', join(dir.path, 'b.img')]);
    if (seekxz.status !== 0) throw new Error(seekxz.stderr);
    mkdirSync(join(dir.path, 'tree'));
    writeFileSync(join(dir.path, 'tree', 'one.bin'), diskLikeData(400_000, 74));
    writeFileSync(join(dir.path, 'tree', 'two.txt'), 'kernel console=ttyS0\n'.repeat(5000));
  });
  afterAll(() => dir.remove());

  // name, shell line that writes the file, and what `xz --list` must say about its block headers
  const fixtures: [string, string, (blocks: XzListBlock[]) => void][] = [
    ['xz -T2 --block-size=128KiB (sizes in block headers)', 'xz -T2 -1 --block-size=131072 -c a.img', (blocks) => {
      expect(blocks.length).toBe(Math.ceil(800_000 / 131072));
      expect(blocks.every((block) => block.sizeFlags === 'cu')).toBe(true);
    }],
    ['xz -T1 --block-size=128KiB (no sizes in block headers)', 'xz -T1 -1 --block-size=131072 -c a.img', (blocks) => {
      expect(blocks.length).toBe(Math.ceil(800_000 / 131072));
      expect(blocks.every((block) => block.sizeFlags === '--')).toBe(true);
    }],
    ['xz, one block (the single-threaded default)', 'xz -T1 -0 -c a.img', (blocks) => expect(blocks.length).toBe(1)],
    ['pixz', 'pixz -0 -t < a.img', (blocks) => expect(blocks.length).toBe(Math.ceil(800_000 / (512 * 1024)))],
    ['pixz tarball (with its file index block)', 'tar -cf - tree | pixz -0', (blocks) => expect(blocks.length).toBeGreaterThan(1)],
    ['xz --check=none', 'xz -T2 -0 --block-size=100000 --check=none -c a.img', (blocks) => {
      expect(blocks.length).toBe(8);
      expect(blocks.every((block) => block.check === 'None')).toBe(true);
    }],
    ['concatenated streams (cat a.xz b.xz c.xz)', 'xz -T2 -0 --block-size=131072 -c a.img; cat b.img.xz; xz -0 --check=crc32 -c c.img', (blocks) => {
      expect(new Set(blocks.map((block) => block.stream))).toEqual(new Set([1, 2, 3]));
    }],
    ['stream padding between and after streams', 'xz -T2 -0 --block-size=131072 -c a.img; head -c 4 /dev/zero; cat b.img.xz; head -c 8 /dev/zero; xz -0 -c c.img; head -c 12 /dev/zero', (blocks) => {
      expect(new Set(blocks.map((block) => block.stream)).size).toBe(3);
    }],
  ];

  fixtures.forEach(([name, line, expectBlocks], fixture) => {
    it(`${name}: random reads, seekz read and seekz cat equal xz -dc`, async () => {
      const path = join(dir.path, `fixture-${fixture}.xz`);
      writeFileSync(path, shell(line, dir.path));
      expect(run('xz', ['-t', path]).status).toBe(0);
      const truth = run('xz', ['-dc', path]).stdout;
      const list = xzList(path);
      expectBlocks(list.blocks);

      const xz = await openXz(await fileSource(path), { threads: 2 });
      try {
        expect(xz.size).toBe(truth.length);
        // Our layout is the one xz sees: every block at the same place, of the same sizes.
        expect(xz.blocks.map((block) => [block.stream, block.offset, block.uStart, block.totalSize, block.uSize])).toEqual(
          list.blocks.map((block) => [block.stream, block.compressedOffset, block.uncompressedOffset, block.totalSize, block.uncompressedSize]),
        );
        expect(xz.streams.length).toBe(list.streams);
        expect(xz.streams.reduce((sum, stream) => sum + stream.padding, 0)).toBe(list.padding);

        const reads: [number, number][] = [];
        for (let probe = 0; probe < 25; probe++) {
          const offset = (probe * 7919 * 131) % truth.length;
          reads.push([offset, 1 + ((probe * 104729) % 200_000)]);
        }
        // Across every block boundary, and over all of the file.
        for (const block of xz.blocks.slice(1)) reads.push([block.uStart - 777, 2000]);
        reads.push([0, truth.length], [truth.length - 10, 100], [truth.length, 5]);
        for (const [offset, length] of reads) {
          const expected = truth.subarray(offset, offset + length);
          expect(sha256(await xz.read(offset, length)), `read(${offset}, ${length})`).toBe(sha256(expected));
        }
      } finally {
        await xz.close();
      }

      // One CLI read, across the first block boundary (each run costs a process).
      const offset = list.blocks.length > 1 ? list.blocks[1]!.uncompressedOffset - 3000 : 5000;
      const read = runCli('seekz', ['read', path, '--offset', String(offset), '--length', '70000']);
      expect(read.status, read.stderr).toBe(0);
      expect(sha256(read.stdout)).toBe(sha256(truth.subarray(offset, offset + 70_000)));
      const cat = runCli('seekz', ['cat', path]);
      expect(cat.status, cat.stderr).toBe(0);
      expect(sha256(cat.stdout)).toBe(sha256(truth));
    });
  });

  it('seekz info lists the streams, blocks and padding of a padded multi-stream file', () => {
    const path = join(dir.path, 'padded.xz');
    writeFileSync(path, shell('xz -T2 -0 --block-size=131072 -c a.img; head -c 4 /dev/zero; cat b.img.xz; head -c 8 /dev/zero', dir.path));
    const info = runCli('seekz', ['info', path]);
    expect(info.status, info.stderr).toBe(0);
    const text = info.stdout.toString();
    expect(text).toMatch(/Streams: +2\n/);
    expect(text).toMatch(new RegExp(`Blocks: +${xzList(path).blocks.length}\\n`));
    expect(text).toMatch(/Stream Padding: +12 B\n/);
    expect(text).toMatch(/Uncompressed size: .*\(1100000 B\)/);
  });
});

describe('nbdkit --filter=xz serves seekxz output', () => {
  let dir: { path: string; remove: () => void };
  beforeAll(() => {
    requireTool('nbdkit', 'nbdkit');
    requireTool('nbdcopy', 'libnbd-bin');
    dir = tempDir();
  });
  afterAll(() => dir.remove());

  it('nbdcopy from the xz filter gives back the input exactly', () => {
    // Not a multiple of 512, so the last sector is a partial one.
    const data = diskLikeData(3 * 2 ** 20 + 12345, 81);
    writeFileSync(join(dir.path, 'disk.img'), data);
    const compressed = runCli('seekxz', ['-q', '-1', '--block-size=1M', join(dir.path, 'disk.img')]);
    expect(compressed.status, compressed.stderr).toBe(0);
    shell(`nbdkit -U - --filter=xz file disk.img.xz --run 'nbdcopy "$uri" out.raw'`, dir.path);
    expect(sha256(readFileSync(join(dir.path, 'out.raw')))).toBe(sha256(data));
  });
});
