/**
 * The edit section, for .xz (the gzip patch row is bench.ts's patch section): seekxz with the
 * image's /boot stored against seekxz with nothing stored, in the same run (size and throughput),
 * then a 4 KiB patch inside /boot through the library's patchFile: wall time, bytes of the file
 * read, and xz -t afterwards.
 */
import { randomBytes } from 'node:crypto';
import { patchFile } from '../src/edit/patch.js';
import { compareTools, cli, mib, ms, percent, succeeds, type Bench, type Tool } from './bench-common.js';
import { median } from './bench-measure.js';

const PATCH_SIZE = 4096;
const PATCH_RUNS = 5;
const XZ_VERIFY = { name: 'xz -t', check: (path: string) => succeeds('xz', ['-t', path]) };

const seekxz = (name: string, extra: string[]): Tool => ({
  name,
  command: process.execPath,
  args: (input, output) => [cli('seekxz'), '-6', '-q', '-k', '-f', '-T2', ...extra, input, '-o', output],
  toStdout: false,
});
const STORED = seekxz('seekxz -6 --store-partition 1', ['--store-partition', '1']);
const WHOLE = seekxz('seekxz -6 (nothing stored)', []);

export async function editSection(bench: Bench): Promise<void> {
  const image = bench.image!;
  const bootSize = image.plan.boot.size;
  console.log(`seekxz with /boot (${mib(bootSize)} MiB) stored, against nothing stored:`);
  const [stored, whole] = await compareTools(bench, image, [STORED, WHOLE], { label: 'edit', suffix: 'xz', verify: XZ_VERIFY, keep: [STORED] });
  const file = stored!.kept!;
  // What storing may cost: the stored bytes themselves, and 0.1 % for block headers, chunk headers, checks, index records.
  const sizeBound = (whole!.bytes + bootSize) * 1.001;
  // ≥ 1: storing is no slower. Judged on CPU seconds (median), as the library section judges: on
  // a shared machine one run's wall time swings with the load, its CPU time much less.
  const cpuRatio = Number.isNaN(stored!.cpu) ? whole!.wall / stored!.wall : whole!.cpu / stored!.cpu;
  const throughputRatio = whole!.wall / stored!.wall;

  const offset = image.plan.bootEntryOffset;
  let bytesRead = 0;
  const walls: number[] = [];
  for (let run = 0; run < PATCH_RUNS; run++) {
    const started = process.hrtime.bigint();
    const result = await patchFile(file, [{ offset, data: randomBytes(PATCH_SIZE) }]);
    walls.push(Number(process.hrtime.bigint() - started) / 1e9);
    if (result.bytesWritten !== PATCH_SIZE) throw new Error(`bench: patchFile wrote ${result.bytesWritten} bytes, expected ${PATCH_SIZE}`);
    bytesRead = Math.max(bytesRead, result.bytesRead);
  }
  const wall = median(walls);
  const xzOk = XZ_VERIFY.check(file);
  console.log(
    `\nsizes: stored ${stored!.bytes}, nothing stored ${whole!.bytes} + /boot ${bootSize} = ${whole!.bytes + bootSize} (bound with 0.1 %: ${Math.floor(sizeBound)})\n` +
      `throughput: stored ${mib(image.plan.size / stored!.wall)} MiB/s, nothing stored ${mib(image.plan.size / whole!.wall)} MiB/s (wall ratio ${throughputRatio.toFixed(2)}, CPU ratio ${cpuRatio.toFixed(2)})\n` +
      `patchFile of ${PATCH_SIZE} bytes in /boot of the .xz: ${ms(wall)} ms (median of ${PATCH_RUNS}), read ${bytesRead} bytes of the file; xz -t after ${xzOk ? 'ok' : 'FAILED'}`,
  );
  if (!xzOk) process.exitCode = 1;
  bench.targets.push(
    { what: 'xz --store-partition 1: size vs nothing stored + /boot', goal: '≤ +0.1 %', measured: percent(stored!.bytes / (whole!.bytes + bootSize) - 1), pass: stored!.bytes <= sizeBound },
    { what: 'xz --store-partition 1: throughput vs nothing stored (CPU s; wall)', goal: '≥ 1.0× (3 % noise)', measured: `${cpuRatio.toFixed(2)}× (wall ${throughputRatio.toFixed(2)}×)`, pass: cpuRatio >= 0.97 },
    { what: 'xz patch 4 KiB: patchFile in-process', goal: '≤ 50 ms', measured: `${ms(wall)} ms`, pass: wall <= 0.05 },
    { what: 'xz patch 4 KiB: bytes of the file read', goal: '≤ 2 MiB', measured: `${bytesRead} bytes`, pass: bytesRead <= 2 * 2 ** 20 },
    { what: 'xz patch: xz -t after patches', goal: 'ok', measured: xzOk ? 'ok' : 'FAILED', pass: xzOk },
  );
  bench.report.edit = { storedBytes: stored!.bytes, wholeBytes: whole!.bytes, bootSize, storedWall: stored!.wall, wholeWall: whole!.wall, storedCpu: stored!.cpu, wholeCpu: whole!.cpu, patchWall: wall, bytesRead, xzOk };
}
