/**
 * In-place edits of .zst files: seekzstd --store writes stored frames (raw blocks only), `patch`
 * overwrites their bytes and recomputes each touched frame's XXH64 (its Content_Checksum and its
 * seek table entry), and refuses everything else. Judged by zstd -t, zstd -dc and zstd's
 * reference seekable decompressor (which checks the seek table's checksums), never by our own
 * reader alone. Foreign files (zstd and the reference seekable compressor on incompressible data)
 * are editable where whole frames are raw blocks; a frame that mixes raw and compressed blocks
 * is not.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compressZstd } from '../src/compress.js';
import { patchFile, patchFromRegion } from '../src/edit/patch.js';
import { open } from '../src/open.js';
import { bufferSource } from '../src/source/buffer.js';
import { fileSource } from '../src/source/file.js';
import { readZstdEditable } from '../src/zstd/editable.js';
import { readZstdLayout } from '../src/zstd/reader.js';
import { findStoredFrame } from '../src/zstd/stored.js';
import { xxh64Low32, xxh64Low32Js } from '../src/zstd/xxh64.js';
import { nativeZstd } from '../src/native/zstd.js';
import { diskLikeData, noise, requireTool, run, runCli, sha256, tempDir } from './helpers/tools.js';

const KIB = 1024;
const MIB = 1024 * KIB;

let dir: { path: string; remove: () => void };
let reference: string; // folder of zstd's seekable_compression and seekable_decompression
const file = (name: string) => join(dir.path, name);

/** zstd -t passes, zstd -dc gives exactly `expected`, and (for a seekable file) so does the reference decompressor. */
function expectZstdHolds(path: string, expected: Uint8Array, seekable = true): void {
  const tested = run('zstd', ['-t', path]);
  expect(tested.status, `zstd -t: ${tested.stderr}`).toBe(0);
  const decompressed = run('zstd', ['-dc', path]);
  expect(decompressed.status, `zstd -dc: ${decompressed.stderr}`).toBe(0);
  expect(sha256(decompressed.stdout)).toBe(sha256(expected));
  if (!seekable) return;
  const referenced = run(join(reference, 'seekable_decompression'), [path, '0', String(expected.length)]);
  expect(referenced.status, `seekable_decompression: ${referenced.stderr}`).toBe(0);
  expect(sha256(referenced.stdout)).toBe(sha256(expected));
}

const withEdit = (base: Uint8Array, offset: number, data: Uint8Array) => {
  const out = base.slice();
  out.set(data, offset);
  return out;
};

beforeAll(() => {
  requireTool('zstd', 'zstd');
  reference = execFileSync('bash', [new URL('../scripts/build-zstd-seekable.sh', import.meta.url).pathname], { encoding: 'utf8' }).trim();
  dir = tempDir('seekz-zstd-edit-');
}, 600_000);
afterAll(() => dir?.remove());

describe('xxh64', () => {
  it('the addon (native/zstd/xxh64.c) and the JavaScript path agree on any bytes', () => {
    expect(nativeZstd()).toBeDefined(); // the addon is built where libzstd-dev is: npm run build
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => xxh64Low32(bytes) === xxh64Low32Js(bytes)), { numRuns: 500 });
    const big = noise(MIB + 13, 1);
    expect(xxh64Low32(big)).toBe(xxh64Low32Js(big));
  });
});

describe('seekzstd --store and patch', () => {
  const data = diskLikeData(6 * MIB, 3);
  const stored = { start: 1 * MIB + 12_345, end: 3 * MIB + 777 };
  const edited = (name: string) => file(name);

  it(`stores [${stored.start}, ${stored.end}) in aligned frames of raw blocks, the same for any -T`, async () => {
    writeFileSync(file('in.img'), data);
    const one = await compressZstd(file('in.img'), file('stored.zst'), { store: [stored], threads: 1, force: true });
    await compressZstd(file('in.img'), file('stored-t2.zst'), { store: [stored], threads: 2, force: true });
    expect(readFileSync(file('stored.zst')).equals(readFileSync(file('stored-t2.zst')))).toBe(true);
    expect(one.storedBytes).toBe(stored.end - stored.start);
    expectZstdHolds(file('stored.zst'), data);
    const source = await fileSource(file('stored.zst'));
    try {
      const layout = await readZstdLayout(source);
      if (layout.layout !== 'seekable') throw new Error(`expected a seekable file, got ${layout.layout}`);
      const starts = layout.frames.map((frame) => frame.uStart);
      expect(starts).toContain(stored.start);
      expect(starts).toContain(stored.start + MIB);
      expect(starts).toContain(stored.end);
      for (const frame of layout.frames) {
        const inside = frame.uStart >= stored.start && frame.uStart < stored.end;
        expect(frame.uSize).toBeLessThanOrEqual(MIB);
        expect(Boolean(await findStoredFrame((offset, length) => source.read(offset, length), frame)), `frame ${frame.number}`).toBe(inside);
      }
      expect(await (await readZstdEditable(source)).editableRanges()).toEqual([stored]);
    } finally {
      await source.close();
    }
    const info = runCli('seekz', ['info', file('stored.zst')]);
    expect(info.stdout.toString()).toContain(`editable: [${stored.start}, ${stored.end})`);
  });

  it('the CLI writes the same bytes as the library, and nothing stored is the file without --store', async () => {
    const made = runCli('seekzstd', ['-q', '-f', '--store', `${stored.start}:${stored.end}`, file('in.img'), '-o', file('cli.zst')]);
    expect(made.status, made.stderr.toString()).toBe(0);
    expect(readFileSync(file('cli.zst')).equals(readFileSync(file('stored.zst')))).toBe(true);
    await compressZstd(file('in.img'), file('plain-lib.zst'), { force: true });
    expect(runCli('seekzstd', ['-q', '-f', file('in.img'), '-o', file('plain-cli.zst')]).status).toBe(0);
    expect(readFileSync(file('plain-lib.zst')).equals(readFileSync(file('plain-cli.zst')))).toBe(true);
  });

  it('patches across a frame boundary and a raw block boundary, fixing both checksums of each frame', async () => {
    const path = edited('patched.zst');
    copyFileSync(file('stored.zst'), path);
    const first = noise(8 * KIB, 1);
    const second = noise(100, 2);
    const at1 = stored.start + MIB - 4 * KIB; // across the first stored frame's end
    const at2 = stored.start + MIB + 128 * KIB - 50; // across a raw block's end
    const result = await patchFile(path, [{ offset: at1, data: first }, { offset: at2, data: second }]);
    expect(result.format).toBe('zstd');
    expect(result.checks).toMatch(/^2 frame checksums \(XXH64\) recomputed, 4 fields written$/);
    expectZstdHolds(path, withEdit(withEdit(data, at1, first), at2, second));
  });

  it('a 4 KiB patch reads one stored frame and the seek table: ≤ 2 MiB of a file with many frames', async () => {
    const big = diskLikeData(24 * MIB, 4);
    writeFileSync(file('big.img'), big);
    const path = file('big.zst');
    await compressZstd(file('big.img'), path, { store: [{ start: 4 * MIB, end: 20 * MIB }], force: true });
    const result = await patchFile(path, [{ offset: 9 * MIB + 100, data: noise(4096, 3) }]);
    expect(result.bytesRead).toBeLessThanOrEqual(2 * MIB);
    expect(result.bytesRead).toBeGreaterThan(MIB); // the frame is read whole: its old checksum is verified
    expectZstdHolds(path, withEdit(big, 9 * MIB + 100, noise(4096, 3)));
  });

  it('refuses bytes outside the stored frames, naming the editable ranges and the fix, and writes nothing', async () => {
    const path = file('stored.zst');
    const before = readFileSync(path);
    await expect(patchFile(path, [{ offset: stored.end - 10, data: new Uint8Array(20) }])).rejects.toMatchObject({
      code: 'ZSTD_NOT_EDITABLE',
      message: expect.stringMatching(new RegExp(`\\[${stored.start}, ${stored.end}\\).*seekzstd --store`)),
    });
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('refuses a stored frame whose bytes no longer match its checksum, and writes nothing', async () => {
    const path = file('damaged.zst');
    copyFileSync(file('stored.zst'), path);
    const source = await fileSource(path);
    const extents = await (await readZstdEditable(source)).extents(stored.start + 5000, 1);
    await source.close();
    const bytes = readFileSync(path);
    bytes[extents[0]!.fileOffset]! ^= 0xff; // damage inside the frame, then try to edit elsewhere in it
    writeFileSync(path, bytes);
    await expect(patchFile(path, [{ offset: stored.start + 100, data: Uint8Array.of(1) }])).rejects.toMatchObject({ code: 'ZSTD_CHECKSUM' });
    expect(readFileSync(path).equals(bytes)).toBe(true);
    expect(run('zstd', ['-t', path]).status).not.toBe(0); // still damaged, never given a fresh checksum
  });

  it('patch --from writes only the bytes that differ, and extract + open read the edit', async () => {
    const path = file('from.zst');
    copyFileSync(edited('patched.zst'), path);
    const current = new Uint8Array(run('zstd', ['-dc', path]).stdout);
    const region = current.slice(stored.start, stored.end);
    region.set(noise(300, 9), 5000);
    const result = await patchFromRegion(path, bufferSource(region), stored.start);
    expect(result.bytesWritten).toBeLessThanOrEqual(300);
    await using opened = await open(path);
    expect(sha256(await opened.read(stored.start, region.length))).toBe(sha256(region));
    expectZstdHolds(path, withEdit(current, stored.start, region));
    const extracted = runCli('seekz', ['extract', path, '--range', `${stored.start}:${stored.end}`, '-o', file('region.img')]);
    expect(extracted.status, extracted.stderr.toString()).toBe(0);
    expect(sha256(readFileSync(file('region.img')))).toBe(sha256(region));
  });
});

describe('foreign .zst files', () => {
  it('zstd on incompressible data (raw blocks in one frame) is editable; the CLI patches it and zstd agrees', () => {
    const random = noise(3 * MIB, 11);
    writeFileSync(file('random.img'), random);
    const made = run('zstd', ['-q', '-f', '-k', file('random.img')]);
    expect(made.status, made.stderr.toString()).toBe(0);
    const info = runCli('seekz', ['info', file('random.img.zst')]);
    expect(info.stdout.toString()).toContain(`editable: [0, ${3 * MIB})`);
    writeFileSync(file('edit.bin'), noise(4096, 12));
    const patched = runCli('seekz', ['patch', file('random.img.zst'), '--offset', String(MIB - 100), '--data', file('edit.bin'), '-v']);
    expect(patched.status, patched.stderr.toString()).toBe(0);
    expect(patched.stderr.toString()).toContain('1 frame checksum (XXH64) recomputed, 1 field written'); // no seek table: the frame's own
    expectZstdHolds(file('random.img.zst'), withEdit(random, MIB - 100, noise(4096, 12)), false);
  });

  it("the reference seekable compressor's frames (checksums in the seek table only) are editable and stay readable by it", () => {
    const random = noise(2 * MIB + 5000, 21);
    writeFileSync(file('ref.img'), random);
    const made = run(join(reference, 'seekable_compression'), [file('ref.img'), '262144'], { cwd: dir.path });
    expect(made.status, made.stderr.toString()).toBe(0);
    const info = runCli('seekz', ['info', file('ref.img.zst')]);
    expect(info.stdout.toString()).toContain(`editable: [0, ${random.length})`);
    writeFileSync(file('edit2.bin'), noise(1000, 22));
    const patched = runCli('seekz', ['patch', file('ref.img.zst'), '--offset', String(262144 - 500), '--data', file('edit2.bin'), '-v']);
    expect(patched.status, patched.stderr.toString()).toBe(0);
    expect(patched.stderr.toString()).toContain('2 frame checksums (XXH64) recomputed, 2 fields written'); // the table's only
    expectZstdHolds(file('ref.img.zst'), withEdit(random, 262144 - 500, noise(1000, 22)));
  });

  it('a file whose frames state no sizes (zstd from a pipe) is refused in one line naming why and the fix', () => {
    const made = run('sh', ['-c', `cat '${file('random.img')}' | zstd -q -c > '${file('pipe.zst')}'`]);
    expect(made.status, made.stderr.toString()).toBe(0);
    const before = readFileSync(file('pipe.zst'));
    const refused = runCli('seekz', ['patch', file('pipe.zst'), '--offset', '10', '--data', file('edit.bin')]);
    expect(refused.status).toBe(1);
    expect(refused.stderr.toString()).toMatch(/^seekz: \S+pipe\.zst: zstd: bytes \[10, 4106\) are not all inside stored frames .*editable ranges: none \(its frames do not state their sizes, so no byte can be placed\)\. Recompress with seekzstd --store START:END/);
    expect(readFileSync(file('pipe.zst')).equals(before)).toBe(true);
  });

  it('a frame mixing raw and compressed blocks is not editable, and the refusal is one line naming the fix', async () => {
    const mixed = new Uint8Array(MIB);
    mixed.set(noise(256 * KIB, 13));
    mixed.set(diskLikeData(768 * KIB, 14).map((byte, index) => (index % 7 === 0 ? 0x41 : byte & 0x3f)), 256 * KIB);
    writeFileSync(file('mixed.img'), mixed);
    expect(run('zstd', ['-q', '-f', '-k', file('mixed.img')]).status).toBe(0);
    expect(readFileSync(file('mixed.img.zst')).length).toBeLessThan(mixed.length); // some blocks compressed
    const source = await fileSource(file('mixed.img.zst'));
    expect(await (await readZstdEditable(source)).editableRanges()).toEqual([]);
    await source.close();
    const refused = runCli('seekz', ['patch', file('mixed.img.zst'), '--offset', '10', '--data', file('edit2.bin')]);
    expect(refused.status).toBe(1);
    expect(refused.stderr.toString()).toMatch(/^seekz: \S+mixed\.img\.zst: zstd: bytes \[10, 1010\) are not all inside stored frames .*editable ranges: none\. Recompress with seekzstd --store START:END to make them editable\n$/);
  });
});
