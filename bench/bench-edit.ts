/**
 * The edit section, for .xz and .zst (the gzip patch row is bench.ts's patch section): for each
 * format, the writer with the image's /boot stored against the same writer with nothing stored,
 * in the same run (size and throughput), then a 4 KiB patch inside /boot through the library's
 * patchFile: wall time, bytes of the file read and written, and the real tool's test afterwards
 * (xz -t, zstd -t).
 */
import { randomBytes } from 'node:crypto';
import { patchFile } from '../src/edit/patch.js';
import { compareTools, cli, mib, ms, percent, succeeds, type Bench, type Tool } from './bench-common.js';
import { median } from './bench-measure.js';

const PATCH_SIZE = 4096;
const PATCH_RUNS = 5;

interface EditFormat {
  /** Short name in the rows: xz, zst. */
  name: 'xz' | 'zst';
  command: 'seekxz' | 'seekzstd';
  /** Level and thread flags, as the other sections run each writer. */
  flags: string[];
  verify: { name: string; check: (path: string) => boolean };
}

const FORMATS: EditFormat[] = [
  { name: 'xz', command: 'seekxz', flags: ['-6', '-k', '-T2'], verify: { name: 'xz -t', check: (path) => succeeds('xz', ['-t', path]) } },
  { name: 'zst', command: 'seekzstd', flags: ['-3', '-T2'], verify: { name: 'zstd -t', check: (path) => succeeds('zstd', ['-q', '-t', path]) } },
];

const writer = (format: EditFormat, name: string, extra: string[]): Tool => ({
  name,
  command: process.execPath,
  args: (input, output) => [cli(format.command), ...format.flags, '-q', '-f', ...extra, input, '-o', output],
  toStdout: false,
});

export async function editSection(bench: Bench): Promise<void> {
  bench.report.edit = {};
  for (const format of FORMATS) await editRows(bench, format);
}

async function editRows(bench: Bench, format: EditFormat): Promise<void> {
  const image = bench.image!;
  const bootSize = image.plan.boot.size;
  const STORED = writer(format, `${format.command} ${format.flags[0]} --store-partition 1`, ['--store-partition', '1']);
  const WHOLE = writer(format, `${format.command} ${format.flags[0]} (nothing stored)`, []);
  console.log(`\n${format.command} with /boot (${mib(bootSize)} MiB) stored, against nothing stored:`);
  const [stored, whole] = await compareTools(bench, image, [STORED, WHOLE], { label: `edit-${format.name}`, suffix: format.name, verify: format.verify, keep: [STORED] });
  const file = stored!.kept!;
  // What storing may cost: the stored bytes themselves, and 0.1 % for headers, checks, index or seek table entries.
  const sizeBound = (whole!.bytes + bootSize) * 1.001;
  // ≥ 1: storing is no slower. Judged on CPU seconds (median), as the library section judges: on
  // a shared machine one run's wall time swings with the load, its CPU time much less.
  const cpuRatio = Number.isNaN(stored!.cpu) ? whole!.wall / stored!.wall : whole!.cpu / stored!.cpu;
  const throughputRatio = whole!.wall / stored!.wall;

  const offset = image.plan.bootEntryOffset;
  let bytesRead = 0;
  let bytesWritten = 0;
  const walls: number[] = [];
  for (let run = 0; run < PATCH_RUNS; run++) {
    const started = process.hrtime.bigint();
    const result = await patchFile(file, [{ offset, data: randomBytes(PATCH_SIZE) }]);
    walls.push(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.bytesWritten !== PATCH_SIZE) throw new Error(`bench: patchFile wrote ${result.bytesWritten} bytes, expected ${PATCH_SIZE}`);
    bytesRead = Math.max(bytesRead, result.bytesRead);
    // The data, and the check fields: 8 bytes of CRC64 (xz), or 4 + 4 of XXH64 (zstd: frame and seek table).
    bytesWritten = Math.max(bytesWritten, result.bytesWritten + 8);
  }
  const wall = median(walls);
  const verified = format.verify.check(file);
  console.log(
    `sizes: stored ${stored!.bytes}, nothing stored ${whole!.bytes} + /boot ${bootSize} = ${whole!.bytes + bootSize} (bound with 0.1 %: ${Math.floor(sizeBound)})\n` +
      `throughput: stored ${mib(image.plan.size / stored!.wall)} MiB/s, nothing stored ${mib(image.plan.size / whole!.wall)} MiB/s (wall ratio ${throughputRatio.toFixed(2)}, CPU ratio ${cpuRatio.toFixed(2)})\n` +
      `patchFile of ${PATCH_SIZE} bytes in /boot of the .${format.name}: ${ms(wall)} ms (median of ${PATCH_RUNS}), read ${bytesRead} bytes of the file, wrote ${bytesWritten}; ${format.verify.name} after ${verified ? 'ok' : 'FAILED'}`,
  );
  if (!verified) process.exitCode = 1;
  const name = format.name;
  bench.targets.push(
    { what: `${name} --store-partition 1: size vs nothing stored + /boot`, goal: '≤ +0.1 %', measured: percent(stored!.bytes / (whole!.bytes + bootSize) - 1), pass: stored!.bytes <= sizeBound },
    { what: `${name} --store-partition 1: throughput vs nothing stored (CPU s; wall)`, goal: '≥ 1.0× (3 % noise)', measured: `${cpuRatio.toFixed(2)}× (wall ${throughputRatio.toFixed(2)}×)`, pass: cpuRatio >= 0.97 },
    { what: `${name} patch 4 KiB: patchFile in-process`, goal: '≤ 50 ms', measured: `${ms(wall)} ms`, pass: wall <= 0.05 },
    { what: `${name} patch 4 KiB: bytes of the file read / written`, goal: '≤ 2 MiB', measured: `${bytesRead} / ${bytesWritten} bytes`, pass: bytesRead <= 2 * 2 ** 20 && bytesWritten <= 2 * 2 ** 20 },
    { what: `${name} patch: ${format.verify.name} after patches`, goal: 'ok', measured: verified ? 'ok' : 'FAILED', pass: verified },
  );
  (bench.report.edit as Record<string, unknown>)[name] = {
    storedBytes: stored!.bytes,
    wholeBytes: whole!.bytes,
    bootSize,
    storedWall: stored!.wall,
    wholeWall: whole!.wall,
    storedCpu: stored!.cpu,
    wholeCpu: whole!.cpu,
    patchWall: wall,
    bytesRead,
    bytesWritten,
    verified,
  };
}
