/**
 * seekzstd and the zstd reader judged by the real tools: zstd -t / -dc and zstd's own seekable
 * implementation (contrib/seekable_format, built from Debian's source by
 * scripts/build-zstd-seekable.sh) read what seekzstd writes, and seekz reads what they write
 * (the reference compressor, zstd single- and multi-frame, cat a.zst b.zst, pzstd, zstd from a
 * pipe). Over NBD: nbdcopy, qemu-img compare and nbdinfo --map through seekz serve; over HTTP:
 * open() of a URL served with ranges.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from '../src/open.js';
import { cliPath, diskLikeData, requireTool, run, runCli, sha256, tempDir } from './helpers/tools.js';

const MIB = 2 ** 20;
let dir: { path: string; remove: () => void };
const path = (name: string) => join(dir.path, name);
let reference: string; // folder of seekable_compression and seekable_decompression
/** 3 MiB of disk-like bytes with a 1 MiB hole in the middle, so frames of zeros exist. */
let truth: Buffer;

function shell(line: string): Buffer {
  const result = run('sh', ['-c', line], { cwd: dir.path });
  if (result.status !== 0) throw new Error(`${line} failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}

beforeAll(() => {
  for (const [tool, pkg] of [['zstd', 'zstd'], ['pzstd', 'zstd'], ['nbdcopy', 'libnbd-bin'], ['nbdinfo', 'libnbd-bin'], ['qemu-img', 'qemu-utils']]) requireTool(tool!, pkg!);
  reference = execFileSync('bash', [new URL('../scripts/build-zstd-seekable.sh', import.meta.url).pathname], { encoding: 'utf8' }).trim();
  dir = tempDir('seekz-zstd-interop-');
  truth = Buffer.concat([diskLikeData(MIB + 12345, 61), Buffer.alloc(MIB), diskLikeData(MIB - 999, 62)]);
  writeFileSync(path('disk.img'), truth);
  const made = runCli('seekzstd', ['-q', '-T2', '--frame-size=256K', path('disk.img')]);
  if (made.status !== 0) throw new Error(made.stderr);
}, 600_000);
afterAll(() => dir?.remove());

describe('the reference tools read seekzstd output', () => {
  it('zstd -t passes and zstd -dc gives the input back', () => {
    expect(run('zstd', ['-t', path('disk.img.zst')]).status).toBe(0);
    expect(sha256(run('zstd', ['-dc', path('disk.img.zst')]).stdout)).toBe(sha256(truth));
  });

  it("zstd's seekable_decompression reads random ranges of it, every one equal to the input", () => {
    const ranges: [number, number][] = [[0, 1], [truth.length - 1, truth.length], [256 * 1024 - 7, 256 * 1024 + 7], [MIB, 2 * MIB + 4096], [0, truth.length]];
    for (let probe = 0; probe < 12; probe++) {
      const start = (probe * 7919 * 131) % truth.length;
      ranges.push([start, Math.min(truth.length, start + 1 + ((probe * 104729) % 300_000))]);
    }
    for (const [start, end] of ranges) {
      const result = run(join(reference, 'seekable_decompression'), [path('disk.img.zst'), String(start), String(end)]);
      expect(result.status, result.stderr).toBe(0);
      expect(sha256(result.stdout), `[${start}, ${end})`).toBe(sha256(truth.subarray(start, end)));
    }
  });

  it('an empty input gives a seek table alone, which zstd -t, zstd -dc and seekz cat take as empty', () => {
    writeFileSync(path('empty'), '');
    expect(runCli('seekzstd', ['-q', path('empty')]).status).toBe(0);
    expect(run('zstd', ['-t', path('empty.zst')]).status).toBe(0);
    expect(run('zstd', ['-dc', path('empty.zst')]).stdout.length).toBe(0);
    const cat = runCli('seekz', ['cat', path('empty.zst')]);
    expect(cat.status, cat.stderr).toBe(0);
    expect(cat.stdout.length).toBe(0);
  });

  it('seekzstd -d and -t agree with zstd; a damaged frame fails both, never giving other bytes', () => {
    const out = runCli('seekzstd', ['-dc', '-T2', path('disk.img.zst')]);
    expect(out.status, out.stderr).toBe(0);
    expect(sha256(out.stdout)).toBe(sha256(truth));
    const damaged = readFileSync(path('disk.img.zst'));
    damaged[Math.floor(damaged.length / 3)]! ^= 0x10;
    writeFileSync(path('damaged.zst'), damaged);
    expect(run('zstd', ['-t', path('damaged.zst')]).status).not.toBe(0);
    const test = runCli('seekzstd', ['-t', path('damaged.zst')]);
    expect(test.status).toBe(1);
    expect(test.stderr.trim().split('\n')).toHaveLength(1);
    expect(test.stderr).toMatch(/^seekzstd: \S+damaged\.zst: zstd: /);
  });

  // -d writes a frame as zeros, undecoded, only when its bytes are those of a zero frame it decoded
  // and checked in this pass. Here a frame of sevens, exactly as long as the zero frame, takes the
  // place of a later zero frame, whose table entry (sizes and the zeros' checksum) stays: zstd -dc
  // (which ignores the seek table) prints the sevens, so seekzstd must fail, not write zeros.
  it('seekzstd -d: a frame with the zero frame\'s length and table entry that decodes to other bytes fails, in every output', () => {
    const frame = 64 * 1024;
    writeFileSync(path('sevens.img'), Buffer.concat([Buffer.alloc(frame, 7), Buffer.alloc(3 * frame)]));
    expect(runCli('seekzstd', ['-q', '-f', '--frame-size=64K', path('sevens.img')]).status).toBe(0);
    const file = readFileSync(path('sevens.img.zst'));
    const frames = [0, 1, 2, 3].map((index) => ({ index, offset: 0, size: file.readUInt32LE(file.length - 9 - (4 - index) * 12) }));
    for (let index = 1; index < 4; index++) frames[index]!.offset = frames[index - 1]!.offset + frames[index - 1]!.size;
    expect(frames[0]!.size).toBe(frames[3]!.size); // a precondition of the forgery, not a result
    const forged = Buffer.from(file);
    file.copy(forged, frames[3]!.offset, 0, frames[0]!.size);
    writeFileSync(path('forged.zst'), forged);
    const real = run('zstd', ['-dc', path('forged.zst')]);
    expect(real.status).toBe(0);
    expect(real.stdout.subarray(3 * frame).every((byte) => byte === 7)).toBe(true);
    for (const args of [['-t'], ['-d', '-c'], ['-d', '-o', path('forged.out')]]) {
      for (const threads of ['-T1', '-T2']) {
        const result = runCli('seekzstd', [...args, threads, path('forged.zst')]);
        expect(result.status, `${args.join(' ')} ${threads}`).toBe(1);
        expect(result.stderr).toMatch(/checksum/);
        expect(existsSync(path('forged.out'))).toBe(false);
      }
    }
    // Stdout redirected to a regular file (written with holes, by offset): it is cut back to nothing.
    const redirected = run('sh', ['-c', `"${process.execPath}" "${cliPath('seekzstd')}" -d -c -T2 forged.zst > forged.stdout`], { cwd: dir.path });
    expect(redirected.status).toBe(1);
    expect(statSync(path('forged.stdout')).size).toBe(0);
  });
});

describe('seekzstd speaks like zstd', () => {
  it('seekz patch refuses bytes of compressed frames in one line, naming the fix, and leaves the file as it was', () => {
    writeFileSync(path('patch.bin'), 'new bytes');
    const before = sha256(readFileSync(path('disk.img.zst')));
    const result = runCli('seekz', ['patch', path('disk.img.zst'), '--offset', '4096', '--data', path('patch.bin')]);
    expect(result.status).toBe(1);
    expect(result.stderr.toString()).toMatch(/^seekz: \S+disk\.img\.zst: zstd: bytes \[4096, 4105\) are not all inside stored frames [^\n]*seekzstd --store START:END[^\n]*\n$/);
    expect(sha256(readFileSync(path('disk.img.zst')))).toBe(before);
  });

  it('keeps the input by default, refuses to overwrite without -f, --rm removes the input, -d restores it', () => {
    writeFileSync(path('cli.img'), truth.subarray(0, 700_000));
    expect(runCli('seekzstd', ['-q', path('cli.img')]).status).toBe(0);
    expect(statSync(path('cli.img')).size).toBe(700_000); // kept, as zstd keeps it
    const again = runCli('seekzstd', ['-q', path('cli.img')]);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already exists; use -f/);
    expect(runCli('seekzstd', ['-q', '-f', '--rm', path('cli.img')]).status).toBe(0);
    expect(() => statSync(path('cli.img'))).toThrow();
    expect(runCli('seekzstd', ['-q', '-d', path('cli.img.zst')]).status).toBe(0);
    expect(sha256(readFileSync(path('cli.img')))).toBe(sha256(truth.subarray(0, 700_000)));
    expect(statSync(path('cli.img.zst')).size).toBeGreaterThan(0);
  });

  it('levels above 19 need --ultra (a usage error: exit 1, as every seekz command); stdin to stdout gives the bytes a file gives', () => {
    const refused = runCli('seekzstd', ['-22', '-c', path('disk.img')]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^seekzstd: .*--ultra/);
    const piped = runCli('seekzstd', ['-T2', '--frame-size=256K'], { input: truth });
    expect(piped.status, piped.stderr).toBe(0);
    expect(sha256(piped.stdout)).toBe(sha256(readFileSync(path('disk.img.zst'))));
    const back = runCli('seekzstd', ['-d'], { input: piped.stdout });
    expect(back.status, back.stderr).toBe(0);
    expect(sha256(back.stdout)).toBe(sha256(truth));
  });

  it('-l lists one line per frame; several files go on past a bad one and exit 1', () => {
    const list = runCli('seekzstd', ['-l', path('disk.img.zst')]);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout.toString()).toMatch(/# Zstandard Frames: 13\n/);
    writeFileSync(path('bad.zst'), 'not zstd at all');
    const several = runCli('seekzstd', ['-t', path('bad.zst'), path('disk.img.zst')]);
    expect(several.status).toBe(1);
    expect(several.stderr).toMatch(/bad\.zst: /);
  });
});

describe('seekz reads .zst files the real tools made', () => {
  // name, shell line writing the file, and the layout seekz must find
  const fixtures: [string, string, 'seekable' | 'frames' | 'stream'][] = [
    ["zstd's seekable_compression (table checksums, frames without their own)", `cp disk.img ref.img && '@REF@/seekable_compression' ref.img 100000 && cat ref.img.zst`, 'seekable'],
    ['zstd -3 of a file (one frame with its content size)', 'zstd -q -3 -c disk.img', 'frames'],
    ['zstd --long -T2 of a file', 'zstd -q --long -T2 -c disk.img', 'frames'],
    ['cat a.zst b.zst (two frames with content sizes)', 'head -c 1500000 disk.img > a && tail -c +1500001 disk.img > b && zstd -q -c a && zstd -q -19 -c b', 'frames'],
    ['zstd from a pipe (no content size: streamed)', 'zstd -q -c < disk.img', 'stream'],
    ['pzstd (skippable frames, no content sizes: streamed)', 'pzstd -q -p 2 -c disk.img', 'stream'],
  ];
  fixtures.forEach(([name, line, layout], index) => {
    it(`${name}: seekz cat, and random reads where it is seekable`, async () => {
      const file = path(`fixture-${index}.zst`);
      writeFileSync(file, shell(line.replace('@REF@', reference)));
      expect(sha256(run('zstd', ['-dc', file]).stdout)).toBe(sha256(truth));
      await using zst = await open(file);
      const info = await zst.info();
      expect(info.format === 'zstd' && info.layout).toBe(layout);
      expect(zst.size).toBe(truth.length);
      const cat = runCli('seekz', ['cat', file]);
      expect(cat.status, cat.stderr).toBe(0);
      expect(sha256(cat.stdout)).toBe(sha256(truth));
      // seekzstd -d and -t: whole passes, each frame checked and written by the thread that decodes it.
      const out = path(`fixture-${index}.out`);
      const decompressed = runCli('seekzstd', ['-d', '-q', '-f', '-T2', file, '-o', out]);
      expect(decompressed.status, decompressed.stderr).toBe(0);
      expect(sha256(readFileSync(out))).toBe(sha256(truth));
      expect(runCli('seekzstd', ['-t', '-q', '-T2', file]).status).toBe(0);
      if (layout === 'seekable') {
        // A seek table checksum that is not its frame's (XXH64 of the data: these frames have none
        // of their own) fails -d and -t as it fails cat: that of the largest frame, one of data.
        const bytes = readFileSync(file);
        const frames = bytes.readUInt32LE(bytes.length - 9);
        const entry = (index: number) => bytes.length - 9 - (frames - index) * 12; // Seek_Table_Entries: 12 bytes each
        let largest = 0;
        for (let index = 1; index < frames; index++) if (bytes.readUInt32LE(entry(index)) > bytes.readUInt32LE(entry(largest))) largest = index;
        bytes[entry(largest) + 8]! ^= 1; // its Checksum field
        writeFileSync(path('bad-table.zst'), bytes);
        const catBad = runCli('seekz', ['cat', path('bad-table.zst')]);
        expect(catBad.stderr.toString()).toMatch(new RegExp(`frame ${largest + 1} .*checksum`));
        for (const args of [['-d', '-f', '-o', out], ['-t']]) {
          const failed = runCli('seekzstd', [...args, '-T2', path('bad-table.zst')]);
          expect(failed.status, args[0]).toBe(1);
          expect(failed.stderr.toString()).toContain(catBad.stderr.toString().replace(/^seekz: /, '').trim().split(': ').slice(1).join(': '));
        }
      }
      if (layout === 'stream') {
        const read = runCli('seekz', ['read', file, '--offset', '5000', '--length', '10']);
        expect(read.status).toBe(1);
        expect(read.stderr).toMatch(/cannot be read at random.*seekzstd/);
        return;
      }
      for (let probe = 0; probe < 10; probe++) {
        const offset = (probe * 7919 * 257) % truth.length;
        const length = 1 + ((probe * 104729) % 400_000);
        expect(sha256(await zst.read(offset, length)), `read(${offset}, ${length})`).toBe(sha256(truth.subarray(offset, offset + length)));
      }
    });
  });

  it('seekz info lists the frames of a seekable file, with zstd -lv\'s totals', () => {
    const info = runCli('seekz', ['info', path('disk.img.zst')]);
    expect(info.status, info.stderr).toBe(0);
    const text = info.stdout.toString();
    const zstdSays = run('zstd', ['-lv', path('disk.img.zst')]).stdout.toString();
    expect(text).toContain(/# Zstandard Frames: \d+/.exec(zstdSays)![0]);
    // Sizes in bytes (the rounded figures before them are each tool's own). Window Size is left
    // out: zstd -lv prints the last frame's, seekz the largest.
    for (const field of ['Decompressed Size', 'Compressed Size']) {
      const bytes = (said: string) => new RegExp(`${field}: .*\\((\\d+) B\\)`).exec(said)?.[1];
      expect(bytes(text), field).toBe(bytes(zstdSays));
    }
    expect(text).toMatch(/Seekable: yes \(seek table with checksums\)/);
    expect(text.split('\n').filter((row) => /^ +\d+ +\d+ +\d+ +\d+ +\d+ /.test(row))).toHaveLength(Math.ceil(truth.length / (256 * 1024)));
  });
});

describe('seekz serve x.zst', () => {
  it('nbdcopy copies it, qemu-img says identical, and nbdinfo --map shows the zero frames as holes', () => {
    const mapFile = path('map.json');
    const result = runCli('seekz', ['serve', path('disk.img.zst'), '--run', `nbdcopy "$uri" '${path('copy.img')}' && qemu-img compare -f raw -F raw "$uri" '${path('disk.img')}' && nbdinfo --map --json "$uri" > '${mapFile}'`]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.toString()).toContain('Images are identical.');
    expect(sha256(readFileSync(path('copy.img')))).toBe(sha256(truth));
    const map = JSON.parse(readFileSync(mapFile, 'utf8')) as { offset: number; length: number; type: number }[];
    const holes = map.filter((extent) => extent.type === 3);
    // The 1 MiB hole holds at least three whole 256 KiB frames.
    expect(holes.reduce((sum, extent) => sum + extent.length, 0)).toBeGreaterThanOrEqual(3 * 256 * 1024);
    for (const hole of holes) expect(truth.subarray(hole.offset, hole.offset + hole.length).every((byte) => byte === 0)).toBe(true);
  });
});

describe('over HTTP', () => {
  let server: Server;
  let requests = 0;
  beforeAll(async () => {
    server = createServer((request, response) => {
      requests++;
      const file = path('disk.img.zst');
      const size = statSync(file).size;
      const match = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
      if (!match) {
        response.writeHead(200, { 'content-length': size, 'accept-ranges': 'bytes' });
        return request.method === 'HEAD' ? response.end() : createReadStream(file).pipe(response);
      }
      const start = Number(match[1]);
      const end = Math.min(Number(match[2]), size - 1);
      response.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${size}`, 'accept-ranges': 'bytes' });
      createReadStream(file, { start, end }).pipe(response);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('open(url) reads a seekable .zst at random with range requests', async () => {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/disk.img.zst`;
    await using zst = await open(url);
    expect(zst.format).toBe('zstd');
    const offset = 2 * MIB + 77_777;
    expect(sha256(await zst.read(offset, 100_000))).toBe(sha256(truth.subarray(offset, offset + 100_000)));
    expect(requests).toBeGreaterThan(0);
  });
});
