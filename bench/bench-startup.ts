/**
 * Start-up: a 4 KiB `seekz read` of the partial-deflate file and a 4 KiB `seekz patch` of its
 * stored boot partition are mostly Node starting and seekz loading, so each is measured against
 * `node -e ''` itself. The three (and `seekz --help`) run interleaved, round after round, so that a
 * busy machine slows all of them alike; the rows give median wall times, mean CPU times (user +
 * system) and each command's +ms over node.
 * The commands are the shipped bundles (bench-common `cli`).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatSize } from '../src/size.js';
import { cli, ms, succeeds, type Bench } from './bench-common.js';
import { formatTable, measure, median, type Measurement } from './bench-measure.js';

const SIZE = 4096;
/** The target: each command within node's own start-up plus this. */
const BUDGET_SECONDS = 0.04;

export async function startupSection(bench: Bench): Promise<void> {
  const file = bench.compression![0]!.kept!;
  const { bootEntryOffset: offset } = bench.image!.plan;
  const rounds = bench.quick ? 30 : 50;
  const dataPath = join(bench.dir, 'startup-patch.bin');
  const readPath = join(bench.dir, 'startup-read.bin');
  bench.scratch.push(dataPath, readPath);
  console.log(`${rounds} interleaved rounds: node -e '', then seekz read, patch and --help of ${file} (${SIZE} bytes at offset ${offset})`);

  let lastPatch = new Uint8Array();
  const commands: { name: string; run: () => Promise<Measurement> }[] = [
    { name: "node -e ''", run: () => measure(process.execPath, ['-e', '']) },
    { name: `seekz read ${formatSize(SIZE)}`, run: () => measure(process.execPath, [cli('seekz'), 'read', file, '--offset', String(offset), '--length', String(SIZE), '-o', readPath, '-f']) },
    {
      name: `seekz patch ${formatSize(SIZE)}`,
      run: () => {
        lastPatch = randomBytes(SIZE);
        writeFileSync(dataPath, lastPatch);
        return measure(process.execPath, [cli('seekz'), 'patch', '-q', file, '--offset', String(offset), '--data', dataPath]);
      },
    },
    { name: 'seekz --help', run: () => measure(process.execPath, [cli('seekz'), '--help']) },
  ];
  const runs = commands.map(() => [] as Measurement[]);
  for (let round = 0; round < rounds + 2; round++) {
    for (const [at, command] of commands.entries()) {
      const run = await command.run();
      if (round >= 2) runs[at]!.push(run); // two rounds to warm the page cache
    }
  }
  const rows = commands.map((command, at) => ({
    name: command.name,
    wall: median(runs[at]!.map((run) => run.wall)),
    // GNU time counts CPU in 10 ms ticks: a mean over the rounds resolves finer than a median could.
    cpu: runs[at]!.reduce((sum, run) => sum + run.cpu, 0) / runs[at]!.length,
  }));
  const node = rows[0]!;
  console.log(
    formatTable(
      ['command', 'median wall', 'over node', 'mean CPU', 'over node'],
      rows.map((row) => [row.name, `${ms(row.wall)} ms`, `+${ms(row.wall - node.wall)} ms`, `${ms(row.cpu)} ms`, `+${ms(row.cpu - node.cpu)} ms`]),
    ),
  );

  // The last patch is there, and the file is still a gzip file: the runs did real work.
  await commands[1]!.run();
  const patchedOk = Buffer.from(lastPatch).equals(readFileSync(readPath));
  const gzipOk = succeeds('gzip', ['-t', file]);
  console.log(`after ${rounds + 2} patches: gzip -t ${gzipOk ? 'ok' : 'FAILED'}, the last patch reads back ${patchedOk ? 'ok' : 'FAILED'}`);
  if (!gzipOk || !patchedOk) process.exitCode = 1;

  for (const row of rows.slice(1, 3)) {
    const over = row.wall - node.wall;
    bench.targets.push({ what: `start-up: ${row.name} over node -e '' (median of ${rounds})`, goal: `≤ +${ms(BUDGET_SECONDS)} ms`, measured: `+${ms(over)} ms`, pass: over <= BUDGET_SECONDS });
  }
  bench.targets.push({ what: 'start-up: patches read back, gzip -t', goal: 'ok', measured: gzipOk && patchedOk ? 'ok' : 'FAILED', pass: gzipOk && patchedOk });
  bench.report.startup = { file, offset, size: SIZE, rounds, rows, gzipOk, patchedOk };
}
