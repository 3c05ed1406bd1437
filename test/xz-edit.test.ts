/**
 * In-place edits of .xz files: seekxz --store writes stored blocks (LZMA2 uncompressed chunks
 * only), `patch` overwrites their bytes and recomputes each touched block's check, and refuses
 * everything else. Judged by xz -t, xz -dc and Python's lzma, never by our own reader alone.
 * Foreign files (xz --lzma2=preset=0 on incompressible data, xz --block-size) are editable where
 * their blocks are all uncompressed chunks; a block that mixes them with LZMA chunks is not.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc64 } from '../src/crc/crc64.js';
import { patchFile, patchFromRegion } from '../src/edit/patch.js';
import { compressXz } from '../src/compress.js';
import { open } from '../src/open.js';
import { bufferSource } from '../src/source/buffer.js';
import { readXzEditable } from '../src/xz/editable.js';
import { buildIndex, buildStreamFooter, parseIndex, parseStreamFooter } from '../src/xz/format.js';
import { fileSource } from '../src/source/file.js';
import { diskLikeData, noise, requireTool, run, runCli, sha256, SYSTEM_PYTHON, tempDir } from './helpers/tools.js';

const KIB = 1024;
const MIB = 1024 * KIB;

let dir: { path: string; remove: () => void };
const file = (name: string) => join(dir.path, name);

/** xz -t passes and xz -dc gives exactly `expected`; Python's lzma agrees. */
function expectXzHolds(path: string, expected: Uint8Array): void {
  const tested = run('xz', ['-t', path]);
  expect(tested.status, `xz -t: ${tested.stderr}`).toBe(0);
  const decompressed = run('xz', ['-dc', path]);
  expect(decompressed.status, `xz -dc: ${decompressed.stderr}`).toBe(0);
  expect(sha256(decompressed.stdout)).toBe(sha256(expected));
  const python = run(SYSTEM_PYTHON, ['-c', 'import lzma,hashlib,sys; print(hashlib.sha256(lzma.open(sys.argv[1]).read()).hexdigest())', path]);
  expect(python.status, python.stderr.toString()).toBe(0);
  expect(python.stdout.toString().trim()).toBe(sha256(expected));
}

/** The editable layout of the .xz at `path`, from a file source closed afterwards. */
async function editableOf<T>(path: string, use: (layout: Awaited<ReturnType<typeof readXzEditable>>) => Promise<T>): Promise<T> {
  const source = await fileSource(path);
  try {
    return await use(await readXzEditable(source));
  } finally {
    await source.close();
  }
}

const withEdit = (base: Uint8Array, offset: number, data: Uint8Array) => {
  const out = base.slice();
  out.set(data, offset);
  return out;
};

beforeAll(() => {
  requireTool('xz', 'xz-utils');
  dir = tempDir('seekz-xz-edit-');
});
afterAll(() => dir?.remove());

describe('crc64', () => {
  it('is CRC-64/XZ: the check value of "123456789", and continues across pieces', () => {
    const bytes = new TextEncoder().encode('123456789');
    expect(crc64(bytes)).toBe(0x995dc9bbdf1939fan);
    expect(crc64(bytes.subarray(4), crc64(bytes.subarray(0, 4)))).toBe(0x995dc9bbdf1939fan);
  });
});

describe('seekxz --store and patch', () => {
  const data = diskLikeData(6 * MIB, 3);
  const stored = { start: 1 * MIB + 12_345, end: 3 * MIB + 777 };

  for (const check of ['crc32', 'crc64', 'sha256', 'none'] as const) {
    it(`stores [${stored.start}, ${stored.end}) in aligned blocks and patches it in place (check ${check})`, async () => {
      writeFileSync(file('in.img'), data);
      const path = file(`stored-${check}.xz`);
      const result = await compressXz(file('in.img'), path, { store: [stored], check, blockSize: MIB, force: true });
      expect(result.storedBytes).toBe(stored.end - stored.start);
      expectXzHolds(path, data);
      const listed = run('xz', ['--robot', '--list', '-vv', path]).stdout.toString();
      const starts = listed.split('\n').filter((line) => line.startsWith('block\t')).map((line) => Number(line.split('\t')[5]));
      expect(starts).toContain(stored.start);
      expect(starts).toContain(stored.end);
      const editable = await editableOf(path, (layout) => layout.editableRanges());
      expect(editable).toContainEqual(stored);

      // An edit across a 1 MiB stored-block boundary, and one across a chunk boundary.
      const first = noise(8 * KIB, 1);
      const second = noise(100, 2);
      const at1 = stored.start + MIB - 4 * KIB;
      const at2 = stored.start + 64 * KIB - 50;
      const patched = await patchFile(path, [{ offset: at1, data: first }, { offset: at2, data: second }]);
      expect(patched.format).toBe('xz');
      expect(patched.bytesWritten).toBe(first.length + second.length);
      expect(patched.checks).toMatch(check === 'none' ? /no block checks/ : /2 block checks/);
      expectXzHolds(path, withEdit(withEdit(data, at1, first), at2, second));
    });
  }

  it('a 4 KiB patch reads at most one stored block, its index and headers: ≤ 2 MiB of a file with many blocks', async () => {
    const big = diskLikeData(24 * MIB, 4);
    writeFileSync(file('big.img'), big);
    const path = file('big.xz');
    await compressXz(file('big.img'), path, { store: [{ start: 4 * MIB, end: 20 * MIB }], blockSize: MIB, level: 0, force: true });
    const result = await patchFile(path, [{ offset: 9 * MIB + 100, data: noise(4096, 3) }]);
    expect(result.bytesRead).toBeLessThanOrEqual(2 * MIB);
    expect(result.bytesRead).toBeGreaterThan(MIB); // the block is read whole: its old check is verified
    expectXzHolds(path, withEdit(big, 9 * MIB + 100, noise(4096, 3)));
  });

  it('refuses bytes outside the stored blocks, naming the editable ranges, and writes nothing', async () => {
    const path = file('stored-crc64.xz');
    const before = readFileSync(path);
    await expect(patchFile(path, [{ offset: stored.end - 10, data: new Uint8Array(20) }])).rejects.toMatchObject({
      code: 'XZ_NOT_EDITABLE',
      message: expect.stringContaining(`[${stored.start}, ${stored.end})`),
    });
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('refuses a stored block whose bytes no longer match its check, and writes nothing', async () => {
    const path = file('damaged.xz');
    copyFileSync(file('stored-crc64.xz'), path);
    const editable = await editableOf(path, (layout) => layout.extents(stored.start + 5000, 1));
    const bytes = readFileSync(path);
    bytes[editable[0]!.fileOffset]! ^= 0xff; // damage inside the block, then try to edit elsewhere in it
    writeFileSync(path, bytes);
    await expect(patchFile(path, [{ offset: stored.start + 100, data: Uint8Array.of(1) }])).rejects.toMatchObject({ code: 'XZ_BLOCK_CHECK' });
    expect(readFileSync(path).equals(bytes)).toBe(true);
    expect(run('xz', ['-t', path]).status).not.toBe(0); // still damaged, never given a fresh check
  });

  it('refuses an index forged to move the edit (two records changed to cancel out, CRC32 recomputed)', async () => {
    const path = file('forged.xz');
    const bytes = new Uint8Array(readFileSync(file('stored-crc64.xz')));
    const size = bytes.length;
    const footer = parseStreamFooter(bytes.subarray(size - 12), size - 12);
    const indexAt = size - 12 - footer.indexSize;
    const records = parseIndex(bytes.subarray(indexAt, size - 12), indexAt);
    // The first two blocks (compressed, before the stored range) trade 100 bytes: the total stays
    // right, and every later block, the stored ones too, would seem to start 100 bytes later.
    records[0]!.uncompressedSize += 100;
    records[1]!.uncompressedSize -= 100;
    const index = buildIndex(records);
    const forged = new Uint8Array([...bytes.subarray(0, indexAt), ...index, ...buildStreamFooter(4, index.length)]);
    writeFileSync(path, forged);
    await expect(patchFile(path, [{ offset: stored.start + 5000, data: Uint8Array.of(1) }])).rejects.toMatchObject({ code: 'XZ_INDEX_MISMATCH' });
    expect(readFileSync(path).equals(forged)).toBe(true);
  });

  it('patch --from writes only the bytes that differ, and extract + open read the edit', async () => {
    const path = file('from.xz');
    copyFileSync(file('stored-sha256.xz'), path); // already patched above: xz -dc says what it holds
    const current = new Uint8Array(run('xz', ['-dc', path]).stdout);
    const region = current.slice(stored.start, stored.end);
    region.set(noise(300, 9), 5000);
    const result = await patchFromRegion(path, bufferSource(region), stored.start);
    expect(result.bytesWritten).toBeLessThanOrEqual(300);
    await using opened = await open(path);
    expect(sha256(await opened.read(stored.start, region.length))).toBe(sha256(region));
    expectXzHolds(path, withEdit(current, stored.start, region));
  });
});

describe('foreign .xz files', () => {
  it('xz --lzma2=preset=0 of incompressible data is editable; the CLI patches it and xz agrees', () => {
    const random = noise(3 * MIB, 11);
    writeFileSync(file('random.img'), random);
    const made = run('xz', ['-k', '-f', '--lzma2=preset=0', '--block-size=1MiB', file('random.img')]);
    expect(made.status, made.stderr).toBe(0);
    const info = runCli('seekz', ['info', file('random.img.xz')]);
    expect(info.stdout.toString()).toContain(`editable: [0, ${3 * MIB})`);
    writeFileSync(file('edit.bin'), noise(4096, 12));
    const patched = runCli('seekz', ['patch', file('random.img.xz'), '--offset', String(MIB - 100), '--data', file('edit.bin'), '-v']);
    expect(patched.status, patched.stderr).toBe(0);
    expect(patched.stderr).toContain('2 block checks (CRC64) recomputed');
    expectXzHolds(file('random.img.xz'), withEdit(random, MIB - 100, noise(4096, 12)));
  });

  for (const check of ['crc64', 'crc32'] as const) {
    it(`one large foreign block (${check}): the check moves by combine math, reading only the changed bytes; xz and Python agree`, async () => {
      const random = noise(5 * MIB + 333, 31);
      writeFileSync(file('large.img'), random);
      const made = run('xz', ['-k', '-f', '-T1', `--check=${check}`, '--lzma2=preset=0', '--stdout', file('large.img')]);
      expect(made.status, made.stderr.toString()).toBe(0);
      const path = file(`large-${check}.xz`);
      writeFileSync(path, made.stdout);
      expect(run('xz', ['--robot', '--list', path]).stdout.toString()).toMatch(/^file\t1\t1\t/m); // one stream, one block
      const edits = [{ offset: 2 * MIB + 7, data: noise(4096, 32) }, { offset: 10, data: noise(100, 33) }];
      const result = await patchFile(path, edits);
      expect(result.checks).toBe(`1 block check (${check.toUpperCase()}) patched by combine math`);
      expect(result.bytesRead).toBeLessThan(64 * KIB); // headers, chunk headers, index, the old bytes: never the block
      expectXzHolds(path, withEdit(withEdit(random, edits[0]!.offset, edits[0]!.data), edits[1]!.offset, edits[1]!.data));

      // Damage elsewhere in the block is kept, never hidden under a fresh check.
      const bytes = readFileSync(path);
      const [extent] = await editableOf(path, (layout) => layout.extents(4 * MIB, 1));
      bytes[extent!.fileOffset]! ^= 0x40;
      writeFileSync(path, bytes);
      await patchFile(path, [{ offset: 3 * MIB, data: noise(64, 34) }]);
      expect(run('xz', ['-t', path]).status).not.toBe(0);
    });
  }

  it('a block mixing uncompressed and LZMA chunks is not editable: later chunks may copy the bytes', async () => {
    // Noise then text in one block: liblzma stores the noise as uncompressed chunks and
    // compresses the text, whose matches may reach back into the noise through the dictionary.
    const mixed = new Uint8Array(1 * MIB);
    mixed.set(noise(256 * KIB, 13));
    mixed.set(diskLikeData(768 * KIB, 14).map((byte, index) => (index % 7 === 0 ? 0x41 : byte & 0x3f)), 256 * KIB);
    writeFileSync(file('mixed.img'), mixed);
    expect(run('xz', ['-k', '-f', '-6', file('mixed.img')]).status).toBe(0);
    const bytes = readFileSync(file('mixed.img.xz'));
    // The block really mixes them: its first chunk is uncompressed (0x01), and the block is smaller than its data.
    expect(bytes[12 + (bytes[12]! + 1) * 4]).toBe(0x01);
    expect(bytes.length).toBeLessThan(mixed.length);
    expect(await editableOf(file('mixed.img.xz'), (layout) => layout.editableRanges())).toEqual([]);
    await expect(patchFile(file('mixed.img.xz'), [{ offset: 10, data: Uint8Array.of(1) }])).rejects.toMatchObject({ code: 'XZ_NOT_EDITABLE' });
  });
});
