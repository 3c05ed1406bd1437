/**
 * One file case: take a good base file (or a sidecar index), damage it, ask the real tool what the
 * damaged file holds, then run a few seekz commands on it and judge each against that truth.
 *
 * The oracle, decided once for every command:
 * - the real tool (`gzip -dc`, `xz -dc`, `zstd -dc`) accepts (exit 0, or 2 for gzip's "trailing garbage"
 *   warning) and prints B: B is the truth. Every byte seekz prints with exit 0 must be B's.
 * - the real tool refuses (exit 1): `cat` and `index` must fail. A random read may still
 *   succeed, but only with the original bytes at that range: damage elsewhere does not make
 *   undamaged bytes wrong, and no other bytes can be right.
 * - a damaged or foreign sidecar index beside an intact file: the truth is the original bytes.
 * A clean error is never a bad verdict: refusing a file the tool accepts is counted apart
 * ("refused-valid") as a completeness figure, not a safety failure.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { INDEX_HOSTS, sidecarName, type Bases, type IndexKind } from './bases.js';
import { mutateCompressed, mutateIndex, type Mutation } from './mutate.js';
import type { Random } from './random.js';
import { distCli, distFile, judge, type Outcome, type Verdict, runMeasured, warnedComplete } from './run.js';

export type Group = 'gz' | 'xz' | 'zst' | 'index';
export type Command = 'cat' | 'read' | 'info' | 'index' | 'extract' | 'lib' | 'decompress';

export interface CommandResult {
  command: Command;
  verdict: Verdict;
  why: string;
  /** The command line, relative to the case folder. */
  line: string;
}

export interface FileCaseResult {
  group: Group;
  base: string;
  mutation: string;
  /** gzip -dc / xz -dc exit status on the damaged file (0 when only a sidecar was damaged). */
  oracleStatus: number;
  results: CommandResult[];
  /** The damaged files, by name, for --save. */
  files: Record<string, Uint8Array>;
}

export interface CaseContext {
  bases: Bases;
  timeoutMs: number;
}

const KIB = 1024;

/** The real tool's view of a compressed file: its exit status and what it printed. */
function oracle(tool: 'gzip' | 'xz' | 'zstd', path: string): Promise<{ status: number; stdout: Buffer }> {
  return new Promise((resolve, reject) => {
    const child = spawn(tool, ['-dc', path], { stdio: ['ignore', 'pipe', 'ignore'] });
    const parts: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => parts.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ status: code ?? 1, stdout: Buffer.concat(parts) }));
  });
}

export async function runFileCase(group: Group, random: Random, dir: string, context: CaseContext): Promise<FileCaseResult> {
  mkdirSync(dir, { recursive: true });
  const files: Record<string, Uint8Array> = {};
  let dataName: string;
  let base: string;
  let mutation: Mutation;
  let original: Uint8Array;

  if (group === 'index') {
    // An intact gzip file with a damaged, forged or foreign sidecar beside it.
    const host = random.pick(INDEX_HOSTS);
    const kind = random.pick<IndexKind>(['seekz', 'gzidx', 'gztool', 'gztool-native']);
    const hostFile = context.bases.files.find((file) => file.name === host)!;
    const own = context.bases.sidecars.find((sidecar) => sidecar.host === host && sidecar.kind === kind)!;
    if (random.chance(0.2)) {
      const other = context.bases.sidecars.find((sidecar) => sidecar.host !== host && sidecar.kind === kind)!;
      mutation = { name: `foreign-index(${other.host})`, bytes: other.bytes };
    } else {
      mutation = mutateIndex(own.bytes, random);
    }
    base = `${host}+${kind}`;
    dataName = 'f.gz';
    files[dataName] = hostFile.bytes;
    files[sidecarName(kind, dataName)] = mutation.bytes;
    original = hostFile.original;
  } else {
    const candidates = context.bases.files.filter((file) => file.format === group);
    const file = random.pick(candidates);
    base = file.name;
    mutation = mutateCompressed(file.bytes, file.format, random, file.members);
    dataName = `f.${file.format}`;
    files[dataName] = mutation.bytes;
    original = file.original;
    // Sometimes an intact index of the good file sits beside the damaged one: the result must
    // be the same with or without it.
    if (group === 'gz' && INDEX_HOSTS.includes(file.name) && random.chance(0.25)) {
      const sidecar = random.pick(context.bases.sidecars.filter((candidate) => candidate.host === file.name));
      files[sidecarName(sidecar.kind, dataName)] = sidecar.bytes;
      mutation = { ...mutation, name: `${mutation.name}+${sidecar.kind}-index` };
    }
  }
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);

  let oracleStatus = 0;
  let truth: Uint8Array = original;
  if (group !== 'index') {
    const real = await oracle(group === 'gz' ? 'gzip' : group === 'xz' ? 'xz' : 'zstd', join(dir, dataName));
    oracleStatus = real.status;
    if (real.status === 0 || real.status === 2) truth = real.stdout;
  }
  const accepted = oracleStatus === 0 || oracleStatus === 2;

  const chosen = new Set<Command>();
  for (let count = random.chance(0.2) ? 2 : 1; chosen.size < count; ) {
    chosen.add(random.weighted<Command>({ cat: 4, read: 3, extract: 2, lib: 2, info: 1, index: group === 'gz' ? 1 : 0, decompress: group === 'zst' ? 2 : 0 }));
  }
  // The look-alike of the zero frame is aimed at the zero proof, which seekzstd -d uses most.
  if (mutation.name === 'zst-zero-lookalike') chosen.add('decompress');
  const results: CommandResult[] = [];
  for (const command of chosen) results.push(await runCommand(command, { dir, dataName, truth, accepted, random, context }));
  return { group, base, mutation: mutation.name, oracleStatus, results, files };
}

interface CommandContext {
  dir: string;
  dataName: string;
  truth: Uint8Array;
  accepted: boolean;
  random: Random;
  context: CaseContext;
}

/** A range to read: mostly inside the data, sometimes across or past its end. */
function pickRange(random: Random, size: number): [start: number, length: number] {
  const start = random.chance(0.1) ? size + random.int(16) - 8 : random.int(size + 1);
  const length = random.pick([1, random.between(1, 64 * KIB), random.between(1, 512), size]);
  return [Math.max(0, start), length];
}

async function runCommand(command: Command, { dir, dataName, truth, accepted, random, context }: CommandContext): Promise<CommandResult> {
  const node = process.execPath;
  const seekz = distCli('seekz');
  const slice = (start: number, length: number) => (start <= truth.length ? truth.subarray(start, start + length) : undefined);
  const run = (args: string[]) => runMeasured(node, args, { timeoutMs: context.timeoutMs, cwd: dir, rssFile: join(dir, `${command}.rss`) });
  const line = (args: string[]) => args.map((arg) => arg.replace(seekz, 'seekz').replace(distFile('fuzz/lib-read.js'), 'lib-read')).join(' ');
  const done = (args: string[], judged: { verdict: Verdict; why: string }): CommandResult => ({ command, ...judged, line: line(args) });

  if (command === 'cat') {
    const args = [seekz, 'cat', dataName];
    return done(args, judge(await run(args), { bytes: accepted ? truth : undefined }));
  }
  if (command === 'read' || command === 'lib') {
    const [start, length] = pickRange(random, truth.length);
    const args = command === 'read' ? [seekz, 'read', dataName, '--offset', String(start), '--length', String(length)] : [distFile('fuzz/lib-read.js'), dataName, String(start), String(length)];
    return done(args, judge(await run(args), { bytes: slice(start, length) }));
  }
  // Both write a file (with holes); a failure must leave none.
  // Each its own output name: a case may run both.
  const toFile = async (args: string[], name: string, bytes: Uint8Array | undefined) => {
    const outcome = await run(args);
    const out = join(dir, name);
    if (outcome.status !== 0 && !warnedComplete(outcome) && existsSync(out)) return done(args, { verdict: 'wrong', why: `failed but left a partial ${name} (${readFileSync(out).length} bytes)` });
    const result: Outcome = { ...outcome, stdout: existsSync(out) ? readFileSync(out) : Buffer.alloc(0) };
    return done(args, judge(result, { bytes }));
  };
  if (command === 'extract') {
    const [start, length] = pickRange(random, truth.length);
    const end = start + Math.max(1, length);
    return toFile([seekz, 'extract', dataName, '--range', `${start}:${end}`, '-o', 'out.bin', '-q'], 'out.bin', end <= truth.length ? truth.subarray(start, end) : undefined);
  }
  // seekzstd -d: the whole-pass path (zero frames proven by their bytes, written as holes).
  if (command === 'decompress') return toFile([distCli('seekzstd'), '-d', '-q', random.pick(['-T1', '-T2']), dataName, '-o', 'out.dec'], 'out.dec', accepted ? truth : undefined);
  if (command === 'info') {
    const args = [seekz, 'info', dataName];
    // info reads headers and maps, not every byte: exit 0 may stand for a damaged file, but the
    // size it states must be the true one.
    const check = (outcome: Outcome) => {
      const text = outcome.stdout.toString();
      const stated = /uncompressed: (\d+) bytes/.exec(text)?.[1] ?? /Uncompressed size: .*\((\d+) B\)/.exec(text)?.[1];
      return stated === undefined || Number(stated) === truth.length;
    };
    return done(args, judge(await run(args), { check }));
  }
  // index inflates the whole file: it must refuse what the real tool refuses.
  const format = random.pick(['seekz', 'gzidx', 'gztool']);
  const args = [seekz, 'index', dataName, '-q', '-f', '--spacing', '32KiB', '--format', format, '-o', 'out.index'];
  return done(args, judge(await run(args), { check: () => accepted && existsSync(join(dir, 'out.index')) }));
}
