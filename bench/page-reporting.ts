/**
 * Free page reporting: some virtual machines (this sandbox among them: virtio_balloon with the
 * kernel's page_reporting) hand memory that stays free for a moment back to the host. The next
 * write into such a page faults it in again on the host, and that costs here about 3 s per GiB,
 * ten times the copy itself: `dd` of 1 GiB into a fresh file takes 0.28 s when it starts at once
 * after the previous file was removed and 3.2 s when it starts 6 s later. A tool that writes its
 * output into the page cache is then timed on how long the machine sat idle before it ran, which
 * is what made `seekzstd -d` against `zstd -d` at 1 GiB bimodal (0.43 s or 0.75 s, the slow runs
 * with half their samples in the kernel's copy into the page cache).
 *
 * The bench measures tools, not the hypervisor, so while it runs it asks the kernel to keep freed
 * memory: this kernel's `min_free_ms` (how long a page stays free before it is reported; 300 000,
 * five minutes, is the most it takes) and `max_waiting_mib` (how much free memory may wait
 * unreported; at its 1 024 a 2 GiB write was still half cold). Then it touches once the memory the
 * run will write into. It puts both settings back when it ends, Ctrl-C included, and says what it
 * did. Where the settings are missing or read-only it only warns.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import type { Bench } from './bench-common.js';

const PARAMETERS = '/sys/module/page_reporting/parameters';
const HOLD_MS = 300_000;
const GIB = 1024 ** 3;

/** Holds freed memory for the run, if the kernel reports free pages; returns how to undo it. */
export function holdFreedMemory(bench: Bench, warmBytes: number): () => void {
  if (!existsSync(`${PARAMETERS}/page_reporting_order`)) return () => {};
  const wanted: [string, string][] = [
    ['min_free_ms', String(HOLD_MS)],
    ['max_waiting_mib', String(Math.ceil(totalBytes() / 2 ** 20))],
  ];
  const before = new Map<string, string>();
  const undo = () => {
    for (const [name, value] of before) {
      try {
        writeFileSync(`${PARAMETERS}/${name}`, value);
      } catch {
        // Nothing more to do at exit; the next bench run reads the value it finds.
      }
    }
    before.clear(); // once: the run's end and the process's exit both call it
  };
  try {
    for (const [name, value] of wanted) {
      const old = readFileSync(`${PARAMETERS}/${name}`, 'utf8').trim();
      writeFileSync(`${PARAMETERS}/${name}`, value);
      before.set(name, old);
    }
  } catch (error) {
    undo();
    console.log(
      `warning: this kernel hands free memory back to the host (${PARAMETERS}), and it could not be asked to hold it ` +
        `(${(error as Error).message}): rows that write large outputs pay up to ~3 s/GiB at random. Run as root to hold it.`,
    );
    bench.report.pageReporting = { held: false };
    return () => {};
  }
  process.once('exit', undo);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      undo();
      process.exit(128 + constants.signals[signal]);
    });
  }
  const warm = Math.max(0, Math.min(warmBytes, availableBytes() - 4 * GIB));
  const began = performance.now();
  if (warm > 0) touchAndFree(warm);
  console.log(
    `this kernel hands free memory back to the host (free page reporting), and writing into such memory again costs ` +
      `~3 s/GiB: for the run ${wanted.map(([name, value]) => `${name} ${before.get(name)} -> ${value}`).join(', ')} ` +
      `(restored at exit); ${(warm / GIB).toFixed(1)} GiB touched once first (${((performance.now() - began) / 1000).toFixed(1)} s)`,
  );
  bench.report.pageReporting = { held: true, before: Object.fromEntries(before), warmBytes: warm };
  return undo;
}

const meminfo = (field: string) => Number(readFileSync('/proc/meminfo', 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))?.[1] ?? 0) * 1024;
const availableBytes = () => meminfo('MemAvailable');
const totalBytes = () => meminfo('MemTotal');

/** A child fills `bytes` of anonymous memory and exits; the pages go back on the free lists, host-backed. */
function touchAndFree(bytes: number): void {
  const chunks = Math.ceil(bytes / (64 * 1024 * 1024));
  execFileSync(process.execPath, ['-e', `const keep = []; for (let i = 0; i < ${chunks}; i++) keep.push(Buffer.alloc(64 << 20, 1));`], {
    stdio: 'ignore',
  });
}
