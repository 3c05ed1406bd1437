/**
 * What the bench sections share: the run's state (options, image, targets, report), the disk
 * image they all measure, and one way to run a set of tools on one input and compare them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatSize } from '../src/size.js';
import { formatTable, measure, median } from './bench-measure.js';
import { makeDiskImage, planDiskImage, type DiskImagePlan } from './disk-image.js';

export const MIB = 2 ** 20;

/**
 * The no-zeros image: data everywhere but the partition table, so that decoding speed is measured
 * without zero blocks to skip. Smaller than the main image, because xz -6 takes about 0.6 s per
 * MiB of such data on one core: 128 MiB (8 blocks of 16 MiB) with --quick, else 512 MiB.
 */
export const noZerosImageSize = (bench: Bench) => (bench.quick ? 128 : 512) * MIB;

export interface Image {
  path: string;
  plan: DiskImagePlan;
  dataFraction: number;
  zeroShare: number;
}

export interface Tool {
  name: string;
  command: string;
  args: (input: string, output: string) => string[];
  /** The tool writes the result to stdout (gzip -c), not to a path of its own. */
  toStdout: boolean;
}

export interface ToolResult {
  name: string;
  walls: number[];
  /** Median wall seconds. */
  wall: number;
  /** Peak RSS in bytes, the highest over the repeats. */
  rss: number;
  /** Median CPU seconds (user + system); NaN without GNU time. */
  cpu: number;
  bytes: number;
  /** The last output, when the caller asked to keep it. */
  kept?: string;
}

export interface Target {
  what: string;
  goal: string;
  measured: string;
  pass: boolean;
}

export interface Bench {
  dir: string;
  size: number;
  seed: number;
  dataFraction: number;
  repeat: number;
  quick: boolean;
  image?: Image;
  /** The gzip section's runs, which the zeros and patch sections reuse. */
  compression?: ToolResult[];
  targets: Target[];
  report: Record<string, unknown>;
  /** Files the run made that are not worth keeping for the next run. */
  scratch: string[];
}

/** A command as it ships: the bundle that package.json `bin` runs. */
export const cli = (name: string) => fileURLToPath(new URL(`../bin/${name}.js`, import.meta.url));

/**
 * Makes the image, or reuses one a previous run made with the same size, seed and data fraction.
 * `size` defaults to the run's --size; data fraction 1 gives the no-zeros image.
 */
export async function diskImage(bench: Bench, dataFraction: number, size = bench.size): Promise<Image> {
  size = planDiskImage({ size }).size;
  const path = join(bench.dir, `disk-${size}-seed${bench.seed}-data${dataFraction}.img`);
  const planPath = `${path}.plan.json`;
  let plan: DiskImagePlan | undefined;
  if (existsSync(planPath) && existsSync(path) && statSync(path).size === size) {
    plan = JSON.parse(readFileSync(planPath, 'utf8')) as DiskImagePlan;
    console.log(`reusing ${path}`);
  } else {
    rmSync(planPath, { force: true });
    const started = Date.now();
    plan = await makeDiskImage(path, { size, seed: bench.seed, dataFraction });
    // Written last, so an interrupted generation is never reused.
    writeFileSync(planPath, JSON.stringify(plan));
    console.log(`generated ${path} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  const image = { path, plan, dataFraction, zeroShare: 1 - plan.dataBytes / plan.size };
  console.log(
    `image: ${plan.size} bytes (${formatSize(plan.size)}), data ${plan.dataBytes} bytes (${formatSize(plan.dataBytes)}), ` +
      `zeros ${percent(image.zeroShare)}; boot partition [${plan.boot.start}, ${plan.boot.start + plan.boot.size}) ${formatSize(plan.boot.size)}`,
  );
  return image;
}

export function describeImage(image: Image) {
  return { path: image.path, dataFraction: image.dataFraction, zeroShare: image.zeroShare, ...image.plan };
}

export interface CompareOptions {
  /** Names the output files: LABEL-TOOL.SUFFIX in the work dir. */
  label: string;
  suffix: string;
  /** What the tools read; default the image itself. */
  input?: string;
  /** Checks an output once per tool; `name` is what the log says passed ("gzip -t"). */
  verify: { name: string; check: (output: string) => boolean };
  /** Tools whose last output is kept (and deleted at the end of the run). */
  keep?: Tool[];
}

/**
 * Runs each tool REPEAT times, round-robin so that machine noise spreads evenly, writing to files
 * in the work dir. Checks each tool's output once; deletes the outputs except the last one of
 * each tool in `keep`. Throughput is the image's size over the wall time, so compressors and
 * decompressors are both measured in uncompressed MiB/s.
 */
export async function compareTools(bench: Bench, image: Image, tools: Tool[], options: CompareOptions): Promise<ToolResult[]> {
  const input = options.input ?? image.path;
  const results: ToolResult[] = tools.map((tool) => ({ name: tool.name, walls: [], wall: 0, rss: 0, cpu: 0, bytes: 0 }));
  const cpus: number[][] = tools.map(() => []);
  for (let round = 0; round < bench.repeat; round++) {
    for (const [index, tool] of tools.entries()) {
      const result = results[index]!;
      const output = join(bench.dir, `${options.label}-${tool.name.replace(/[^a-z0-9]+/gi, '-')}.${options.suffix}`);
      rmSync(output, { force: true });
      const measured = await measure(tool.command, tool.args(input, output), tool.toStdout ? { stdout: output } : {});
      result.walls.push(measured.wall);
      cpus[index]!.push(measured.cpu);
      result.rss = Math.max(result.rss, measured.rss);
      if (round === 0) {
        result.bytes = statSync(output).size;
        if (!options.verify.check(output)) throw new Error(`bench: ${tool.name} wrote a bad file: ${options.verify.name} ${output} failed`);
      }
      console.log(`  ${tool.name}: ${measured.wall.toFixed(2)} s, ${measured.cpu.toFixed(2)} s CPU, ${mib(measured.rss)} MiB${round === 0 ? `, ${options.verify.name} ok` : ''}`);
      if (options.keep?.includes(tool) && round === bench.repeat - 1) {
        result.kept = output;
        bench.scratch.push(output);
      } else {
        rmSync(output);
      }
    }
  }
  for (const [index, result] of results.entries()) {
    result.wall = median(result.walls);
    result.cpu = median(cpus[index]!);
  }
  console.log(
    `\n${formatTable(
      ['tool', 'wall s', 'CPU s', 'MiB/s', 'output bytes', 'of image', 'peak RSS MiB'],
      results.map((result) => [
        result.name,
        result.wall.toFixed(2),
        result.cpu.toFixed(2),
        (image.plan.size / MIB / result.wall).toFixed(1),
        String(result.bytes),
        percent(result.bytes / image.plan.size),
        mib(result.rss),
      ]),
    )}`,
  );
  return results;
}

/** The paragraph of a CLI's --help that starts with MARKER, on one line. */
export function helpParagraph(cliName: string, marker: string): string {
  const help = execFileSync(process.execPath, [cli(cliName), '--help'], { encoding: 'utf8' });
  const start = help.indexOf(marker);
  if (start < 0) return `(no '${marker}' line in ${cliName} --help)`;
  const end = help.indexOf('\n\n', start);
  return help.slice(start, end < 0 ? undefined : end).replace(/\s*\n\s*/g, ' ');
}

/** True when COMMAND ARGS exits 0 (gzip -t, xz -t, cmp -s). */
export function succeeds(command: string, args: string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore' }).status === 0;
}

/** The value below which SHARE of VALUES lie (nearest rank). */
export function percentile(values: number[], share: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(share * sorted.length) - 1))]!;
}

/** A seeded generator of numbers in [0, 1), so that every run reads the same offsets. */
export function seededRandom(seed: number): () => number {
  let state = (seed ^ 0x5eed) >>> 0 || 0x9e3779b9;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

export const mib = (bytes: number) => (bytes / MIB).toFixed(1);
export const ms = (seconds: number) => (seconds * 1000).toFixed(1);
export const percent = (share: number) => `${(100 * share).toFixed(1)} %`;
