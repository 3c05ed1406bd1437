/**
 * The library as a user meets it: every ```ts example of the README's Library section compiled
 * with tsc --strict against the package (`import … from 'seekz'`, resolved through package.json
 * `exports` to dist/) and run as written; `open` on every kind of target, judged by the bytes
 * xz and gzip give; its I/O plan held against the CLI's; and a signal that stops a writer.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferSource, compressGzip, compressXz, extract, open, SeekzError, serve, type Source } from '../src/index.js';
import { httpSource } from '../src/source/http.js';
import { startNginx } from './helpers/nginx.js';
import { countingSource, diskLikeData, requireTool, run, runAsync, runCli, sha256, tempDir } from './helpers/tools.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MIB = 2 ** 20;

let dir: { path: string; remove: () => void };
const file = (name: string) => join(dir.path, name);
let disk: Uint8Array;

beforeAll(() => {
  for (const [tool, pkg] of [['xz', 'xz-utils'], ['gzip', 'gzip'], ['sfdisk', 'fdisk'], ['nginx', 'nginx']]) requireTool(tool!, pkg!);
  dir = tempDir('seekz-library-');
  disk = diskLikeData(6 * MIB, 7);
  writeFileSync(file('disk.img'), disk);
  run('xz', ['-k', '-T2', '--block-size=1MiB', file('disk.img')]);
  run('gzip', ['-k', file('disk.img')]);
});
afterAll(() => dir?.remove());

/** The ```ts blocks of one `## Section` of the README, in order. */
function readmeExamples(section: string): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n## ${section}\n`);
  if (start < 0) throw new Error(`README.md has no "## ${section}" section`);
  const end = readme.indexOf('\n## ', start + 1);
  const text = readme.slice(start, end < 0 ? undefined : end);
  return [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!);
}

/**
 * A project that depends on the package as an installed copy would: node_modules/seekz is this
 * repository (its package.json `exports` decide what resolves), @types/node and typescript come
 * from ours.
 */
function exampleProject(where: string): void {
  mkdirSync(join(where, 'node_modules', '@types'), { recursive: true });
  symlinkSync(ROOT, join(where, 'node_modules', 'seekz'));
  symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(where, 'node_modules', '@types', 'node'));
  writeFileSync(join(where, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  writeFileSync(
    join(where, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', outDir: 'out', types: ['node'], skipLibCheck: false }, include: ['*.ts'] }),
  );
}

describe('README Library section: every example compiles under strict and runs as written', () => {
  const examples = readmeExamples('Library');

  it('has an example for each function', () => {
    const all = examples.join('\n');
    for (const name of ['open', 'compressGzip', 'compressXz', 'buildIndex', 'extract', 'patch', 'createReadStream', 'info()', 'await using']) expect(all, name).toContain(name);
  });

  it('runs them in order against a real disk image and a file gzip made', { timeout: 120_000 }, () => {
    const work = join(dir.path, 'readme');
    mkdirSync(work);
    exampleProject(work);
    // The folder the README promises: disk.img with an MBR (made by sfdisk) and logs.gz (by gzip).
    writeFileSync(join(work, 'disk.img'), diskLikeData(8 * MIB, 3));
    const sfdisk = run('sfdisk', ['-q', join(work, 'disk.img')], { input: 'label: dos\nstart=2048, size=4096, type=83\n' });
    expect(sfdisk.status, sfdisk.stderr).toBe(0);
    writeFileSync(join(work, 'logs'), diskLikeData(3 * MIB, 5));
    run('gzip', [join(work, 'logs')]);
    const names = examples.map((source, number) => {
      const name = `example-${String(number + 1).padStart(2, '0')}`;
      writeFileSync(join(work, `${name}.ts`), source);
      return name;
    });
    const tsc = run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', work]);
    expect(tsc.status, `tsc --strict on the README examples:\n${tsc.stdout.toString()}${tsc.stderr}`).toBe(0);
    for (const [number, name] of names.entries()) {
      const result = run(process.execPath, [join(work, 'out', `${name}.js`)], { cwd: work });
      expect(result.status, `example ${number + 1}:\n${examples[number]}\nstderr: ${result.stderr}`).toBe(0);
      expect(result.stdout.length, `example ${number + 1} prints what it did`).toBeGreaterThan(0);
    }
    // What the examples did, judged by the real tools.
    expect(run('gzip', ['-t', join(work, 'disk.img.gz')]).status).toBe(0);
    expect(run('xz', ['-t', join(work, 'disk.img.xz')]).status).toBe(0);
    const patched = run('gzip', ['-dc', join(work, 'disk.img.gz')]).stdout;
    expect(patched.subarray(MIB + 4096, MIB + 4096 + 14).toString()).toBe('seekz was here');
    expect(readFileSync(join(work, 'first-mib.bin')).equals(run('xz', ['-dc', join(work, 'disk.img.xz')]).stdout.subarray(MIB, 2 * MIB))).toBe(true);
    expect(existsSync(join(work, 'logs.gz.idx'))).toBe(true);
  });
});

describe('open(): one way in for every format and source', () => {
  const expectDisk = async (target: string | URL | Source, format: string) => {
    const data = await open(target);
    try {
      expect(data.format).toBe(format);
      expect(data.size).toBe(disk.length);
      const bytes = await data.read(3 * MIB - 100, 5000);
      expect(Buffer.isBuffer(bytes)).toBe(true);
      expect(sha256(bytes)).toBe(sha256(disk.subarray(3 * MIB - 100, 3 * MIB + 4900)));
    } finally {
      await data.close();
    }
  };

  it('reads .xz and .gz by their magic, whatever their name', async () => {
    await expectDisk(file('disk.img.xz'), 'xz');
    await expectDisk(file('disk.img.gz'), 'gzip');
    writeFileSync(file('misnamed.gz'), readFileSync(file('disk.img.xz')));
    await expectDisk(file('misnamed.gz'), 'xz');
    await expectDisk(bufferSource(readFileSync(file('disk.img.gz'))), 'gzip');
  });

  it('a read with a bad offset or length is a SeekzError (BAD_ARGUMENT), for every format', async () => {
    for (const name of ['disk.img.xz', 'disk.img.gz']) {
      await using data = await open(file(name));
      for (const [offset, length] of [[-1, 4], [0, -4], [0.5, 4], [Number.NaN, 1]] as const) {
        await expect(data.read(offset, length)).rejects.toMatchObject({ name: 'SeekzError', code: 'BAD_ARGUMENT', message: expect.stringMatching(/^read\(.*\): offset and length must be whole numbers/) });
      }
    }
  });

  it('takes a file: URL as the path it names', async () => {
    await expectDisk(pathToFileURL(file('disk.img.xz')), 'xz');
    await expectDisk(pathToFileURL(file('disk.img.gz')), 'gzip');
  });

  it('refuses a file of no format it knows with one line naming every magic', async () => {
    await expect(open(file('disk.img'))).rejects.toThrow(/not a gzip, xz or zstd file: it starts with .*expected 1f 8b \(gzip\) or fd 37 7a 58 5a 00 \(xz\) or 28 b5 2f fd \(zstd\) or 5x 2a 4d 18 \(zstd skippable frame\)/);
  });

  it("a missing file is Node's own system error, as from node:fs, naming the path", async () => {
    const missing = file('no-such.img.xz');
    await expect(open(missing)).rejects.toMatchObject({ code: 'ENOENT', path: missing });
  });

  it('await using closes the file: the decoder threads end, and reads after it fail', async () => {
    let kept: Awaited<ReturnType<typeof open>> | undefined;
    {
      await using data = await open(file('disk.img.xz'));
      kept = data;
      expect((await data.read(0, 10)).length).toBe(10);
    }
    // The cache holds nothing of block 5: a read must decode, with the pool closed and the file shut.
    await expect(kept!.read(5 * MIB, 10)).rejects.toThrow();
  });

  it('createReadStream gives start..end inclusive, in order, as fs.createReadStream counts', async () => {
    await using data = await open(file('disk.img.gz'));
    const chunks: Buffer[] = [];
    for await (const chunk of data.createReadStream({ start: 12345, end: 5 * MIB, highWaterMark: 256 * 1024 })) chunks.push(chunk as Buffer);
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(disk.subarray(12345, 5 * MIB + 1)));
    const whole: Buffer[] = [];
    for await (const chunk of data.createReadStream()) whole.push(chunk as Buffer);
    expect(sha256(Buffer.concat(whole))).toBe(sha256(disk));
  });

  it('createReadStream fails the stream, not the process, on a damaged file', async () => {
    const bytes = Buffer.from(readFileSync(file('disk.img.xz')));
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await using data = await open(bufferSource(bytes));
    await expect(async () => {
      for await (const _ of data.createReadStream()) void _;
    }).rejects.toBeInstanceOf(SeekzError);
  });

  it('read with an aborted signal rejects with its reason, before any work', async () => {
    await using data = await open(file('disk.img.xz'));
    const controller = new AbortController();
    controller.abort();
    await expect(data.read(0, 10, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('info() is the data seekz info prints', async () => {
    await using xz = await open(file('disk.img.xz'));
    const xzInfo = await xz.info();
    if (xzInfo.format !== 'xz') throw new Error('expected xz info');
    const listing = run('xz', ['--robot', '--list', '-v', file('disk.img.xz')]).stdout.toString();
    expect(xzInfo.blocks.length).toBe(Number(/^totals\t\d+\t(\d+)/m.exec(listing)![1]));
    expect(xzInfo.compressedSize).toBe(readFileSync(file('disk.img.xz')).length);
    expect(runCli('seekz', ['info', file('disk.img.xz')]).stdout.toString()).toContain(`Blocks:            ${xzInfo.blocks.length}`);

    await using gz = await open(file('disk.img.gz'));
    const gzInfo = await gz.info();
    if (gzInfo.format !== 'gzip') throw new Error('expected gzip info');
    expect(gzInfo.members).toHaveLength(1);
    expect(gzInfo.uncompressedSize).toBe(disk.length);
    // gzip -l --verbose prints the CRC-32 from the trailer.
    const crc = /^\S+\s+([0-9a-f]{8})/m.exec(run('gzip', ['-lv', file('disk.img.gz')]).stdout.toString().split('\n')[1]!)![1]!;
    expect(gzInfo.crc!.toString(16).padStart(8, '0')).toBe(crc);
    expect(runCli('seekz', ['info', file('disk.img.gz')]).stdout.toString()).toContain(`crc32: 0x${crc}`);
  });
});

describe('open() costs what the CLI costs', () => {
  it('a .gz with an index beside it: the index is used, the file is not read through', async () => {
    const copy = file('sidecar.gz');
    writeFileSync(copy, readFileSync(file('disk.img.gz')));
    expect(runCli('seekz', ['index', '-q', '--spacing', '1MiB', copy]).status).toBe(0);
    const opened: string[] = [];
    await using data = await open(copy, { onSidecar: (path) => opened.push(path), onBuildIndex: () => opened.push('built in memory') });
    expect(opened).toEqual([`${copy}.idx`]);
    // The same through a counting Source: open reads the header only, one read reads one span.
    const counted = countingSource(bufferSource(readFileSync(copy)));
    await using viaSource = await open(counted.source, { index: `${copy}.idx` });
    expect(counted.bytesRead()).toBeLessThan(128 * 1024); // the header, up to its 64 KiB FEXTRA
    expect(sha256(await viaSource.read(4 * MIB + 10, 1000))).toBe(sha256(disk.subarray(4 * MIB + 10, 4 * MIB + 1010)));
    expect(counted.bytesRead()).toBeLessThan(2 * MIB);
    expect(sha256(await data.read(0, 100))).toBe(sha256(disk.subarray(0, 100)));
  });

  it('an index for another file is an error, never wrong data', async () => {
    const other = file('other.gz');
    writeFileSync(other, readFileSync(file('disk.img.gz')).subarray(0, 1000));
    writeFileSync(`${other}.idx`, readFileSync(`${file('sidecar.gz')}.idx`));
    await expect(open(other)).rejects.toMatchObject({ code: 'INDEX_MISMATCH' });
  });

  describe('over HTTP (nginx)', () => {
    let nginx: { url: string; stop: () => Promise<void> };
    beforeAll(async () => (nginx = await startNginx(dir.path, dir.path)));
    afterAll(async () => nginx?.stop());

    it('an .xz URL (string or URL) opens in 2 requests, as seekz serve and seekz read do', async () => {
      for (const target of [`${nginx.url}/disk.img.xz`, new URL(`${nginx.url}/disk.img.xz`)]) {
        const stats = { requests: 0, bytesFetched: 0, retries: 0 };
        await using data = await open(target, { http: { stats } });
        expect(stats.requests).toBe(2);
        expect(sha256(await data.read(2 * MIB + 7, 100))).toBe(sha256(disk.subarray(2 * MIB + 7, 2 * MIB + 107)));
        expect(stats.requests).toBeLessThanOrEqual(3);
      }
      // The same URL through a Source the caller made: the same plan.
      const source = await httpSource(`${nginx.url}/disk.img.xz`);
      await using data = await open(source);
      expect(source.stats.requests).toBe(2);
      expect(data.size).toBe(disk.length);
    });
  });
});

describe('serve()', () => {
  it('takes a file: URL as its path (stored ranges writable), and await using closes it', async () => {
    requireTool('qemu-io', 'qemu-utils');
    await compressGzip(file('disk.img'), file('served.gz'), { store: [{ start: 0, end: MIB }], threads: 2, force: true });
    {
      await using server = await serve(pathToFileURL(file('served.gz')), { unix: file('served.sock') });
      expect(server.writable).toBe(true);
      const result = await runAsync('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 4096 4096', server.uri!]);
      expect(result.status, result.stderr).toBe(0);
    }
    expect(existsSync(file('served.sock'))).toBe(false); // closed at the end of the block
    const after = run('gzip', ['-dc', file('served.gz')]).stdout; // gzip -d checks the CRC-32 the flush fixed
    expect(after.subarray(4096, 8192).every((byte) => byte === 0x5a)).toBe(true);
    expect(sha256(Buffer.concat([after.subarray(0, 4096), after.subarray(8192)]))).toBe(sha256(Buffer.concat([disk.subarray(0, 4096), disk.subarray(8192)])));
  });
});

describe('compressGzip and compressXz', () => {
  it('stream to stream: stdin-like input, a Writable output, bytes the real tools read back', async () => {
    const gzOut: Buffer[] = [];
    const sink = new Writable({ write: (chunk, _encoding, done) => (gzOut.push(chunk as Buffer), done()) });
    const result = await compressGzip(Readable.from([disk.subarray(0, MIB), disk.subarray(MIB, 3 * MIB)]), sink, { store: [{ start: 0, end: 65536 }], threads: 2 });
    expect(result.map).toBeUndefined(); // a stream cannot be revisited to fill the map in
    expect(sha256(run('gzip', ['-dc'], { input: Buffer.concat(gzOut) }).stdout)).toBe(sha256(disk.subarray(0, 3 * MIB)));

    await compressXz(file('disk.img'), file('lib.xz'), { blockSize: MIB, threads: 2 });
    expect(sha256(run('xz', ['-dc', file('lib.xz')]).stdout)).toBe(sha256(disk));
  });

  it('refuses a store range whose start is past its end', async () => {
    await expect(compressGzip(file('disk.img'), file('never.gz'), { store: [{ start: 2 * MIB, end: MIB }] })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    expect(existsSync(file('never.gz'))).toBe(false);
  });

  for (const [name, compress] of [
    ['compressXz', (signal: AbortSignal, onProgress: () => void) => compressXz(file('big.img'), file('aborted.out'), { blockSize: MIB, level: 9, threads: 2, signal, onProgress })],
    ['compressGzip', (signal: AbortSignal, onProgress: () => void) => compressGzip(file('big.img'), file('aborted.out'), { level: 9, threads: 2, signal, onProgress })],
  ] as const) {
    it(`${name}: an aborted signal stops the workers within a second and leaves no output`, async () => {
      if (!existsSync(file('big.img'))) writeFileSync(file('big.img'), diskLikeData(96 * MIB, 11));
      const controller = new AbortController();
      let abortedAt = 0;
      const work = compress(controller.signal, () => {
        if (abortedAt) return;
        abortedAt = Date.now();
        controller.abort();
      });
      await expect(work).rejects.toMatchObject({ name: 'AbortError' });
      expect(Date.now() - abortedAt).toBeLessThan(1000);
      expect(readdirSync(dir.path).filter((entry) => entry.includes('aborted.out'))).toEqual([]);
    });
  }

  it('extract leaves all-zero blocks as holes, in no more blocks than xz -d takes', async () => {
    const image = new Uint8Array(8 * MIB);
    image.set(disk.subarray(0, MIB), 3 * MIB);
    writeFileSync(file('mostly-zero.img'), image);
    await compressXz(file('mostly-zero.img'), file('mostly-zero.img.xz'), { blockSize: MIB, threads: 2, force: true });
    await extract(file('mostly-zero.img.xz'), { start: 0, end: image.length }, file('mostly-zero.out'), { force: true });
    expect(sha256(readFileSync(file('mostly-zero.out')))).toBe(sha256(image));
    run('xz', ['-dkf', file('mostly-zero.img.xz')]); // xz -d writes mostly-zero.img again, with holes
    expect(statSync(file('mostly-zero.out')).blocks).toBeLessThanOrEqual(statSync(file('mostly-zero.img')).blocks);
    expect(statSync(file('mostly-zero.out')).blocks * 512).toBeLessThan(2 * MIB);
  });

  it('extract with an aborted signal leaves no output either', async () => {
    const controller = new AbortController();
    const work = extract(file('disk.img.xz'), { start: 0, end: disk.length }, file('extracted.bin'), { signal: controller.signal, onCopied: () => controller.abort() });
    await expect(work).rejects.toMatchObject({ name: 'AbortError' });
    expect(readdirSync(dir.path).filter((entry) => entry.includes('extracted.bin'))).toEqual([]);
  });
});

