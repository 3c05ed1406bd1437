/**
 * The zstd section: seekzstd against zstd 1.5 (-3 -T2, and plain -3 for size) and against zstd's
 * own seekable compressor (contrib/seekable_format, built by scripts/build-zstd-seekable.sh);
 * seekzstd -d -T2 against zstd -d; cold random 4 KiB reads through open() of the .zst, of a
 * 16 MiB-block .xz and of a partial-deflate .gz of the same image; nbdcopy through seekz serve
 * x.zst against nbdkit --filter=xz on the .xz; and the frame-size sweep behind the default.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { open } from '../src/open.js';
import { formatSize } from '../src/size.js';
import { DEFAULT_FRAME_SIZE } from '../src/zstd/writer.js';
import { DEFAULT_ZSTD_CACHE } from '../src/zstd/reader.js';
import { MIB, cli, compareTools, ms, percentile, seededRandom, succeeds, type Bench, type Image, type Tool, type ToolResult } from './bench-common.js';
import { formatTable, measure, median } from './bench-measure.js';

const THREADS = 2;
const LEVEL = 3;
const READ_SIZE = 4096;
/**
 * `seekz serve --help`: about 180 MiB + the cache (zstd: 64 MiB) + decoder threads × 3 × frame size
 * + 2 × frame size, at least 8 MiB (pinned by replies) + the --max-in-flight budget (64 MiB), at 2
 * threads and the default frame size.
 */
const ZST_SERVE_MEMORY_BOUND = 180 * MIB + DEFAULT_ZSTD_CACHE + THREADS * 3 * DEFAULT_FRAME_SIZE + Math.max(2 * DEFAULT_FRAME_SIZE, 8 * MIB) + 64 * MIB;
const ZSTD_OUTPUT = { suffix: 'zst', verify: { name: 'zstd -t', check: (path: string) => succeeds('zstd', ['-q', '-t', path]) } };

const seekzstd = (frameSize = DEFAULT_FRAME_SIZE): Tool => ({
  name: `seekzstd -${LEVEL} -T${THREADS}${frameSize === DEFAULT_FRAME_SIZE ? '' : ` --frame-size=${formatSize(frameSize).replace(' ', '')}`}`,
  command: process.execPath,
  args: (input) => [cli('seekzstd'), `-${LEVEL}`, `-T${THREADS}`, `--frame-size=${frameSize}`, '-q', '-c', input],
  toStdout: true,
});
const ZSTD_T2: Tool = { name: `zstd -${LEVEL} -T${THREADS}`, command: 'zstd', args: (input) => [`-${LEVEL}`, `-T${THREADS}`, '-q', '-c', input], toStdout: true };
const ZSTD_T1: Tool = { name: `zstd -${LEVEL}`, command: 'zstd', args: (input) => [`-${LEVEL}`, '-q', '-c', input], toStdout: true };
const reference = (tools: string): Tool => ({
  name: `reference seekable_compression (${formatSize(DEFAULT_FRAME_SIZE)} frames, one thread)`,
  command: 'sh',
  // It writes FILE.zst beside its input, at level 5 (the example's own), one thread.
  args: (input, output) => ['-c', `"$0/seekable_compression" "$1" ${DEFAULT_FRAME_SIZE} >/dev/null && mv "$1.zst" "$2"`, tools, input, output],
  toStdout: false,
});

/** CPU seconds and peak RSS of ours against the peer's, for a target row: wall ratios swing with the load. */
const alongside = (ours: ToolResult, peer: ToolResult) =>
  `(CPU s ${ours.cpu.toFixed(2)} vs ${peer.cpu.toFixed(2)}, peak RSS ${(ours.rss / MIB).toFixed(0)} vs ${(peer.rss / MIB).toFixed(0)} MiB)`;

export async function zstdSection(bench: Bench): Promise<void> {
  const image = bench.image!;
  const tools = execFileSync('bash', [new URL('../../scripts/build-zstd-seekable.sh', import.meta.url).pathname], { encoding: 'utf8' }).trim();

  console.log(`compressing at -${LEVEL}, ${THREADS} threads, ${formatSize(DEFAULT_FRAME_SIZE)} frames (seekzstd's default)`);
  const ours = seekzstd();
  const results = await compareTools(bench, image, [ours, ZSTD_T2, ZSTD_T1, reference(tools)], { ...ZSTD_OUTPUT, label: 'zstd', keep: [ours] });
  const [mine, zstdT2, zstdT1, ref] = results as [ToolResult, ToolResult, ToolResult, ToolResult];
  const speed = zstdT2.wall / mine.wall;
  const size = mine.bytes / zstdT1.bytes;
  console.log(
    `\nthroughput seekzstd / zstd -${LEVEL} -T${THREADS}: ${speed.toFixed(3)}; / reference seekable: ${(ref.wall / mine.wall).toFixed(3)}\n` +
      `size seekzstd / zstd -${LEVEL}: ${size.toFixed(4)} (${mine.bytes} vs ${zstdT1.bytes}); / reference (level 5): ${(mine.bytes / ref.bytes).toFixed(4)}`,
  );
  const zst = mine.kept!;

  console.log(`\ndecompressing seekzstd's file, output checked with cmp against the image`);
  const SEEKZSTD_D: Tool = { name: `seekzstd -d -T${THREADS}`, command: process.execPath, args: (input) => [cli('seekzstd'), '-d', '-c', `-T${THREADS}`, input], toStdout: true };
  const ZSTD_D: Tool = { name: 'zstd -d', command: 'zstd', args: (input) => ['-d', '-q', '-c', input], toStdout: true };
  const [ourD, zstdD] = (await compareTools(bench, image, [SEEKZSTD_D, ZSTD_D], {
    label: 'zstd-d',
    suffix: 'raw',
    input: zst,
    verify: { name: 'cmp', check: (output) => succeeds('cmp', ['-s', output, image.path]) },
  })) as [ToolResult, ToolResult];
  const decode = zstdD.wall / ourD.wall;
  console.log(`throughput seekzstd -d -T${THREADS} / zstd -d: ${decode.toFixed(3)}`);

  // The .xz (16 MiB blocks) and .gz (partial-deflate's map) of the same image, for reads and serving.
  const xz = join(bench.dir, 'zstd-section.img.xz');
  const gz = join(bench.dir, 'zstd-section.img.gz');
  execFileSync(process.execPath, [cli('seekxz'), '-6', `-T${THREADS}`, '--block-size=16MiB', '-q', '-f', '-c', image.path], { stdio: ['ignore', openWrite(xz), 'inherit'] });
  execFileSync(process.execPath, [cli('partial-deflate'), '-6', '-q', '-f', image.path, gz], { stdio: 'inherit' });
  bench.scratch.push(xz, gz);

  const coldCount = bench.quick ? 30 : 100;
  const offsets = randomOffsets(bench.seed, image.plan.size, coldCount + 1);
  console.log(`\nrandom ${READ_SIZE}-byte reads at ${coldCount} uniform 4 KiB-aligned offsets through open() (in-process, cacheSize 0: only the last block is kept), each in another 16 MiB than the read before`);
  // Most of the image is zeros, which seekz reads without decoding: the data offsets alone are the fair test.
  const data = [offsets[0]!, ...offsets.slice(1).filter((offset) => !isZeroAt(image.path, offset))];
  console.log(`  of them ${data.length - 1} hold data (not all zero); the targets use those`);
  const rows: string[][] = [];
  const cold: Record<string, number[]> = {};
  const coldData: Record<string, number[]> = {};
  for (const [name, path] of [['.zst (seekzstd)', zst], ['.xz (seekxz, 16 MiB blocks)', xz], ['.gz (partial-deflate, map)', gz]] as const) {
    cold[name] = await coldReads(path, offsets);
    coldData[name] = await coldReads(path, data);
    rows.push([name, ms(median(cold[name]!)), ms(percentile(cold[name]!, 0.9)), ms(median(coldData[name]!)), ms(percentile(coldData[name]!, 0.9)), formatSize(statSync(path).size)]);
  }
  console.log(`\n${formatTable(['file', 'cold p50 ms', 'cold p90 ms', 'data p50 ms', 'data p90 ms', 'file size'], rows)}`);
  const zstP50 = median(coldData['.zst (seekzstd)']!);
  const vsXz = zstP50 / median(coldData['.xz (seekxz, 16 MiB blocks)']!);

  console.log(`\nnbdcopy of the whole image: seekz serve x.zst against nbdkit --filter=xz on the .xz (16 MiB blocks)`);
  const out = join(bench.dir, 'zstd-nbdcopy.raw');
  const copies: Record<string, number[]> = { serve: [], nbdkit: [] };
  const copyCpu: Record<string, number[]> = { serve: [], nbdkit: [] };
  const copyRss: Record<string, number> = { serve: 0, nbdkit: 0 };
  for (let round = 0; round < bench.repeat; round++) {
    for (const [name, command, args] of [
      ['serve', process.execPath, [cli('seekz'), 'serve', zst, '--readonly', '--run', `nbdcopy "$uri" '${out}'`]],
      ['nbdkit', 'nbdkit', ['-U', '-', '--filter=xz', 'file', `file=${xz}`, '--run', `nbdcopy "$uri" '${out}'`]],
    ] as const) {
      rmSync(out, { force: true });
      const measured = await measure(command, [...args]);
      if (!succeeds('cmp', ['-s', out, image.path])) throw new Error(`bench: nbdcopy through ${name} did not give the image back`);
      copies[name]!.push(measured.wall);
      copyCpu[name]!.push(measured.cpu);
      copyRss[name] = Math.max(copyRss[name]!, measured.rss);
      console.log(`  ${name}: ${measured.wall.toFixed(2)} s (${(image.plan.size / MIB / measured.wall).toFixed(1)} MiB/s), ${measured.cpu.toFixed(2)} s CPU, peak RSS ${(measured.rss / MIB).toFixed(1)} MiB (with nbdcopy), cmp ok`);
    }
  }
  rmSync(out, { force: true });
  const copy = median(copies.nbdkit!) / median(copies.serve!);
  console.log(
    `nbdcopy throughput seekz serve x.zst / nbdkit --filter=xz: ${copy.toFixed(2)}; median CPU s ${median(copyCpu.serve!).toFixed(2)} / ${median(copyCpu.nbdkit!).toFixed(2)}; ` +
      `peak RSS ${(copyRss.serve! / MIB).toFixed(1)} / ${(copyRss.nbdkit! / MIB).toFixed(1)} MiB (GNU time, with nbdcopy)`,
  );

  const sweep = bench.quick ? [] : await frameSizeSweep(bench, image, zstdT1.bytes, data);

  bench.targets.push(
    { what: `zstd: throughput seekzstd / zstd -${LEVEL} -T${THREADS}`, goal: '≥ 1.00', measured: `${speed.toFixed(3)} ${alongside(mine, zstdT2)}`, pass: speed >= 1 },
    { what: `zstd: size seekzstd / zstd -${LEVEL}`, goal: '≤ 1.03', measured: `${size.toFixed(4)} ${alongside(mine, zstdT1)}`, pass: size <= 1.03 },
    { what: `zstd -d: throughput seekzstd -d -T${THREADS} / zstd -d`, goal: '≥ 1.50', measured: `${decode.toFixed(3)} ${alongside(ourD, zstdD)}`, pass: decode >= 1.5 },
    { what: 'zstd random 4 KiB: cold p50 (data offsets)', goal: '≤ 5 ms', measured: `${ms(zstP50)} ms`, pass: zstP50 <= 0.005 },
    { what: 'zstd random 4 KiB: cold p50 .zst / 16 MiB-block .xz (data)', goal: '≤ 0.10', measured: vsXz.toFixed(3), pass: vsXz <= 0.1 },
    { what: 'zstd nbdcopy: seekz serve x.zst / nbdkit --filter=xz', goal: '≥ 3.00', measured: copy.toFixed(2), pass: copy >= 3 },
    { what: "zstd nbdcopy: peak RSS of seekz serve x.zst (with nbdcopy), --help's formula", goal: `≤ ${(ZST_SERVE_MEMORY_BOUND / MIB).toFixed(0)} MiB`, measured: `${(copyRss.serve! / MIB).toFixed(1)} MiB`, pass: copyRss.serve! <= ZST_SERVE_MEMORY_BOUND },
  );
  bench.report.zstd = {
    compression: results.map(({ kept, ...result }) => result),
    decompression: [ourD, zstdD],
    ratios: { speed, size, decode, coldVsXz: vsXz, nbdcopy: copy },
    coldReads: cold,
    coldDataReads: coldData,
    nbdcopy: copies,
    nbdcopyCpu: copyCpu,
    nbdcopyRss: copyRss,
    frameSizeSweep: sweep,
  };
}

const openWrite = (path: string) => openSync(path, 'w');

function isZeroAt(path: string, offset: number): boolean {
  const fd = openSync(path, 'r');
  try {
    const bytes = Buffer.alloc(READ_SIZE);
    readSync(fd, bytes, 0, READ_SIZE, offset);
    return bytes.every((byte) => byte === 0);
  } finally {
    closeSync(fd);
  }
}

/** Offsets 4 KiB-aligned, uniform, each in another 16 MiB than the one before it. */
function randomOffsets(seed: number, size: number, count: number): number[] {
  const random = seededRandom(seed + 11);
  const offsets: number[] = [];
  while (offsets.length < count) {
    const offset = Math.floor(random() * Math.floor(size / READ_SIZE)) * READ_SIZE;
    const previous = offsets[offsets.length - 1];
    if (previous === undefined || Math.floor(previous / (16 * MIB)) !== Math.floor(offset / (16 * MIB))) offsets.push(offset);
  }
  return offsets;
}

/** Cold reads through open() with one block kept; the first read (which starts the workers) is not timed. */
async function coldReads(path: string, offsets: number[]): Promise<number[]> {
  await using file = await open(path, { cacheSize: 0 });
  await file.read(offsets[0]!, READ_SIZE);
  const times: number[] = [];
  for (const offset of offsets.slice(1)) {
    const started = process.hrtime.bigint();
    await file.read(offset, READ_SIZE);
    times.push(Number(process.hrtime.bigint() - started) / 1e9);
  }
  return times;
}

/** Size against plain zstd and cold read latency at each frame size: the evidence for the default. */
async function frameSizeSweep(bench: Bench, image: Image, plainBytes: number, offsets: number[]) {
  console.log(`\nframe size sweep (the default is ${formatSize(DEFAULT_FRAME_SIZE)}): size against zstd -${LEVEL} and cold 4 KiB reads at the data offsets`);
  const rows: string[][] = [];
  const sweep = [];
  for (const frameSize of [256 * 1024, 512 * 1024, MIB, 2 * MIB, 4 * MIB]) {
    const output = join(bench.dir, `zstd-sweep-${frameSize}.zst`);
    const measured = await measure(process.execPath, seekzstd(frameSize).args(image.path, output), { stdout: output });
    const bytes = statSync(output).size;
    const cold = await coldReads(output, offsets);
    rmSync(output);
    rows.push([formatSize(frameSize), (bytes / plainBytes).toFixed(4), ms(median(cold)), ms(percentile(cold, 0.9)), measured.wall.toFixed(2)]);
    sweep.push({ frameSize, bytes, sizeVsZstd: bytes / plainBytes, coldP50: median(cold), coldP90: percentile(cold, 0.9), wall: measured.wall });
  }
  console.log(`\n${formatTable(['frame size', `size / zstd -${LEVEL}`, 'cold p50 ms', 'cold p90 ms', 'compress s'], rows)}`);
  return sweep;
}

