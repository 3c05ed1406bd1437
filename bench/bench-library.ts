/**
 * The library section: `open()` against the CLI on the same reads, each as its own process (node
 * start-up included on both sides), alternated in one run. One random 4 KiB read of a local .xz,
 * of a gzip file with an index beside it, and of an .xz over HTTP (nginx, requests counted from
 * its access log). The library side is dist/fuzz/lib-read.js: the public `open()`, a read, close.
 */
import { linkSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatSize } from '../src/size.js';
import { MIB, cli, ms, type Bench } from './bench-common.js';
import { formatTable, measure, median } from './bench-measure.js';
import { startNginx } from './bench-serve.js';

const LIB_READ = fileURLToPath(new URL('../fuzz/lib-read.js', import.meta.url));
const READ_SIZE = 4096;

interface Case {
  name: string;
  target: string;
  /** Lines nginx logged so far, for the HTTP case. */
  requests?: () => number;
}

export async function librarySection(bench: Bench): Promise<void> {
  const image = bench.image!;
  const xz = join(bench.dir, 'library.xz');
  const gz = join(bench.dir, 'library.gz');
  const bare = join(bench.dir, 'library-no-index.gz');
  const accessLog = join(bench.dir, 'library-access.log');
  bench.scratch.push(xz, gz, `${gz}.idx`, bare, accessLog);
  // Level 1 keeps the section short; what is measured is the cost of opening and one block.
  await measure(process.execPath, [cli('seekxz'), '-1', '-q', '-f', '-k', '-T2', image.path, '-o', xz]);
  await measure('gzip', ['-1', '-c', image.path], { stdout: gz });
  await measure(process.execPath, [cli('seekz'), 'index', '-q', '-f', gz]);
  rmSync(bare, { force: true });
  linkSync(gz, bare); // the same bytes with no index beside them
  rmSync(accessLog, { force: true });
  const nginx = await startNginx(xz, accessLog);
  const logged = () => {
    try {
      return readFileSync(accessLog, 'utf8').split('\n').filter(Boolean).length;
    } catch {
      return 0;
    }
  };
  const cases: Case[] = [
    { name: '.xz file', target: xz },
    { name: '.gz with an index beside it', target: gz },
    { name: '.xz over http (nginx)', target: nginx.url, requests: logged },
  ];
  const offset = Math.floor(image.plan.size * 0.61);
  const runs = bench.quick ? 7 : 11;
  const rows: string[][] = [];
  const report: Record<string, unknown>[] = [];
  try {
    for (const entry of cases) {
      const cliWalls: number[] = [];
      const libWalls: number[] = [];
      const cpu = { cli: [] as number[], lib: [] as number[] };
      const requests = { cli: 0, lib: 0 };
      const cliArgs = [cli('seekz'), 'read', entry.target, '--offset', String(offset), '--length', String(READ_SIZE)];
      const libArgs = [LIB_READ, entry.target, String(offset), String(READ_SIZE)];
      const out = join(bench.dir, 'library-read.out');
      bench.scratch.push(out);
      for (let run = 0; run < runs; run++) {
        // Alternated, so that a load spike on the shared machine hits both sides alike.
        for (const side of ['cli', 'lib'] as const) {
          const before = entry.requests?.() ?? 0;
          const measured = await measure(process.execPath, side === 'cli' ? cliArgs : libArgs, { stdout: out });
          if (statSync(out).size !== READ_SIZE) throw new Error(`bench: ${side} read of ${entry.target} gave ${statSync(out).size} bytes`);
          (side === 'cli' ? cliWalls : libWalls).push(measured.wall);
          cpu[side].push(measured.cpu);
          requests[side] = (entry.requests?.() ?? 0) - before;
        }
      }
      // The machine is shared: the fastest of the runs is the one least disturbed by others.
      const ratio = Math.min(...libWalls) / Math.min(...cliWalls);
      const cpuRatio = median(cpu.lib) / median(cpu.cli);
      rows.push([
        entry.name,
        `${ms(Math.min(...cliWalls))} (${ms(median(cliWalls))})`,
        `${ms(Math.min(...libWalls))} (${ms(median(libWalls))})`,
        ratio.toFixed(3),
        cpuRatio.toFixed(3),
        entry.requests ? `${requests.cli} / ${requests.lib}` : '-',
      ]);
      report.push({ name: entry.name, cliWalls, libWalls, cpu, ratio, cpuRatio, requests: entry.requests ? requests : undefined });
      bench.targets.push({ what: `library: open()+read / seekz read, ${entry.name}`, goal: '≤ 1.10', measured: ratio.toFixed(3), pass: ratio <= 1.1 });
      if (entry.requests) {
        bench.targets.push({ what: `library: HTTP requests open()+read vs seekz read`, goal: 'equal', measured: `${requests.lib} vs ${requests.cli}`, pass: requests.lib === requests.cli });
      }
    }
    // For scale: what a read costs when the index beside the file is not used (a pass to build one in memory).
    const noIndex = (await measure(process.execPath, [cli('seekz'), 'read', '-o', '/dev/null', bare, '--offset', String(offset), '--length', String(READ_SIZE)])).wall;
    rows.push(['.gz, no index (one pass builds it)', ms(noIndex), '', '', '', '']);
    report.push({ name: 'gz without an index, seekz read', wall: noIndex });
  } finally {
    await nginx.stop();
  }
  console.log(
    `one ${READ_SIZE}-byte read at offset ${offset} of the ${formatSize(image.plan.size)} image, ${runs} runs each side alternated;\n` +
      `ms: fastest run (median); the ratios: fastest wall, and median CPU seconds (user + system);\n` +
      `xz: seekxz -1 --block-size 16M (${formatSize(statSync(xz).size)}); gz: gzip -1 (${formatSize(statSync(gz).size)}) with seekz index's 4 MiB spacing\n` +
      formatTable(['read', 'seekz read ms', 'open() ms', 'wall open / cli', 'cpu open / cli', 'requests cli / open'], rows),
  );
  bench.report.library = { offset, readSize: READ_SIZE, runs, cases: report, imageMiB: image.plan.size / MIB };
}
