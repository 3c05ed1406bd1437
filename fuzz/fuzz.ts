#!/usr/bin/env node
/**
 * The fuzz and fault campaign of issue 8: `npm run fuzz -- --cases N --seed S`.
 *
 *   --cases N      file and NBD cases to run (default 200)
 *   --seed S       the run's seed (default: random, printed); same seed, same cases
 *   --case K       run only case K (a repro line names it); with --only patch, kill K
 *   --only LIST    groups: gz,xz,zst,index,nbd,enospc (the default), and patch (kill -9 campaign)
 *   --jobs J       cases at once (default 2)
 *   --kills N      SIGKILLs that land mid-patch in the patch campaign, per format (.gz, .xz, .zst; default 100)
 *   --formats LIST the patch campaign's formats (default gz,xz,zst)
 *   --timeout MS   per command, before the verdict is "hang" (default 15000)
 *   --save DIR     keep the files of every case with a bad verdict (and of --case K) in DIR
 *   --json FILE    also write the counts and bad verdicts as JSON (for test/fuzz.test.ts)
 *
 * Each command gets one verdict: exact, clean-error, crash, hang, wrong (silent wrong data),
 * or over-rss (peak RSS over 1 GiB). The exit status is 1 when any is crash, hang, wrong or
 * over-rss. Case K always draws from createRandom(seed, K), so a case replays alone.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildBases, type Bases } from './bases.js';
import { runFileCase, type Group } from './cases.js';
import { PATCH_FORMAT_NAMES, preparePatch, runEnospc, runKill, type PatchFormat, type PatchSetup } from './faults.js';
import { runNbdCase, startServer, type NbdServer } from './nbd.js';
import { createRandom } from './random.js';
import { BAD_VERDICTS, largest, VERDICTS, type Verdict } from './run.js';

const ALL_GROUPS = ['gz', 'xz', 'zst', 'index', 'nbd', 'enospc', 'patch'] as const;
type AnyGroup = (typeof ALL_GROUPS)[number];
const DEFAULT_GROUPS: AnyGroup[] = ['gz', 'xz', 'zst', 'index', 'nbd', 'enospc'];
/** How often each kind of case comes up: NBD cases are few, as the issue asks. */
const GROUP_WEIGHTS: Partial<Record<AnyGroup, number>> = { gz: 40, xz: 25, zst: 20, index: 25, nbd: 4 };

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '200' },
    seed: { type: 'string' },
    case: { type: 'string' },
    only: { type: 'string' },
    jobs: { type: 'string', default: '2' },
    kills: { type: 'string', default: '100' },
    formats: { type: 'string', default: PATCH_FORMAT_NAMES.join(',') },
    timeout: { type: 'string', default: '15000' },
    save: { type: 'string' },
    json: { type: 'string' },
  },
});

const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
const cases = Number(values.cases);
const jobs = Math.max(1, Number(values.jobs));
const timeoutMs = Number(values.timeout);
const only = values.only ? (values.only.split(',') as AnyGroup[]) : DEFAULT_GROUPS;
for (const group of only) if (!ALL_GROUPS.includes(group)) throw new Error(`--only: unknown group '${group}' (groups: ${ALL_GROUPS.join(', ')})`);
const onlyCase = values.case !== undefined ? Number(values.case) : undefined;
const onlyFlag = values.only ? ` --only ${values.only}` : '';
const repro = (number: number) => `npm run fuzz -- --seed ${seed} --case ${number}${onlyFlag}`;

interface Bad {
  number: number | undefined;
  row: string;
  verdict: Verdict;
  detail: string;
}

const counts = new Map<string, Record<Verdict, number> & { 'refused-valid': number }>();
const bad: Bad[] = [];
const target = { toolRejects: 0, catRejects: 0 };
const notes: string[] = [];
let commandsRun = 0;

function count(row: string, verdict: Verdict, refusedValid = false): void {
  const entry = counts.get(row) ?? { ...(Object.fromEntries(VERDICTS.map((name) => [name, 0])) as Record<Verdict, number>), 'refused-valid': 0 };
  entry[verdict]++;
  if (refusedValid) entry['refused-valid']++;
  counts.set(row, entry);
  commandsRun++;
}

async function pool(numbers: number[], work: (number: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(jobs, numbers.length) }, async () => {
      while (next < numbers.length) await work(numbers[next++]!);
    }),
  );
}

const root = mkdtempSync(join(tmpdir(), 'seekz-fuzz-'));
const servers = new Map<string, Promise<NbdServer>>();
const started = Date.now();
let casesRun = 0;

function save(number: number | string, files: Record<string, Uint8Array>, lines: string[]): void {
  if (!values.save) return;
  const dir = join(values.save, `case-${number}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  writeFileSync(join(dir, 'README.txt'), lines.join('\n') + '\n');
}

async function runCase(number: number, bases: Bases): Promise<void> {
  const random = createRandom(seed, number);
  const groups = Object.fromEntries(only.filter((group) => GROUP_WEIGHTS[group]).map((group) => [group, GROUP_WEIGHTS[group]!]));
  if (Object.keys(groups).length === 0) return;
  const group = random.weighted(groups) as AnyGroup;
  casesRun++;
  if (group === 'nbd') {
    const base = random.pick(bases.files.filter((file) => file.name === 'ours-stored' || file.name === 'xz-T2'));
    if (!servers.has(base.name)) servers.set(base.name, startServer(base.path, base.name, root, timeoutMs));
    const server = await servers.get(base.name)!.catch((error: Error) => error);
    if (server instanceof Error) {
      servers.delete(base.name);
      count(`nbd:serve ${base.name}`, 'crash');
      bad.push({ number, row: `nbd:serve ${base.name}`, verdict: 'crash', detail: `the server did not start: ${server.message}` });
      return;
    }
    const result = await runNbdCase(server, base.original, random, timeoutMs);
    count(`nbd:serve ${base.name}`, result.verdict);
    if (BAD_VERDICTS.has(result.verdict)) bad.push({ number, row: `nbd:serve ${base.name}`, verdict: result.verdict, detail: `${result.why} [requests ${result.plan}]` });
    if (server.exited) servers.delete(base.name); // later cases get a fresh server
    return;
  }
  const dir = join(root, 'cases', String(number));
  const result = await runFileCase(group as Group, random, dir, { bases, timeoutMs });
  let anyBad = false;
  for (const command of result.results) {
    const refusedValid = command.verdict === 'clean-error' && (result.oracleStatus === 0 || result.oracleStatus === 2);
    count(`${group}:${command.command}`, command.verdict, refusedValid);
    if (BAD_VERDICTS.has(command.verdict)) {
      anyBad = true;
      bad.push({ number, row: `${group}:${command.command}`, verdict: command.verdict, detail: `${result.base} ${result.mutation}: ${command.why} [${command.line}]` });
    }
    if (command.command === 'cat' && result.oracleStatus === 1) {
      target.toolRejects++;
      if (command.verdict !== 'exact' && command.verdict !== 'wrong') target.catRejects++;
    }
  }
  if (anyBad || onlyCase !== undefined) {
    save(number, result.files, [
      `repro: ${repro(number)}`,
      `base: ${result.base}, mutation: ${result.mutation}, oracle exit: ${result.oracleStatus}`,
      ...result.results.map((command) => `${command.verdict}: ${command.line}  ${command.why}`),
    ]);
  }
  rmSync(dir, { recursive: true, force: true });
}

async function main(): Promise<number> {
  const what = onlyCase !== undefined ? `case ${onlyCase}` : `${only.some((group) => GROUP_WEIGHTS[group]) ? `${cases} cases` : ''}${only.includes('patch') ? ` ${values.kills} kills` : ''}`;
  process.stdout.write(`seekz fuzz: seed ${seed}, ${what.trim()}, groups ${only.join(',')}, ${jobs} jobs\n`);
  const wantsBases = only.some((group) => group !== 'patch');
  mkdirSync(join(root, 'bases'));
  const bases = wantsBases ? await buildBases(join(root, 'bases'), seed) : undefined;
  const basesMs = Date.now() - started;
  const caseStart = Date.now();
  if (bases) {
    const numbers = onlyCase !== undefined ? [onlyCase] : Array.from({ length: cases }, (_, index) => index + 1);
    await pool(numbers, (number) => runCase(number, bases));
  }
  const caseSeconds = (Date.now() - caseStart) / 1000;
  for (const server of servers.values()) (await server.catch(() => undefined))?.child.kill('SIGTERM');

  if (bases && only.includes('enospc') && onlyCase === undefined) {
    const { results, note } = await runEnospc(bases.files, root, seed, timeoutMs);
    notes.push(note);
    for (const result of results) {
      count(result.command, result.verdict);
      if (BAD_VERDICTS.has(result.verdict)) bad.push({ number: undefined, row: result.command, verdict: result.verdict, detail: `${result.why} [npm run fuzz -- --seed ${seed} --only enospc --cases 0]` });
    }
  }

  if (only.includes('patch')) {
    // Every format seekz edits in place, --kills each.
    const formats = String(values.formats).split(',');
    const unknown = formats.filter((format) => !PATCH_FORMAT_NAMES.includes(format as PatchFormat));
    if (unknown.length > 0) throw new Error(`--formats: unknown ${unknown.join(', ')}; expected some of ${PATCH_FORMAT_NAMES.join(',')}`);
    for (const format of formats as PatchFormat[]) {
      const setup: PatchSetup = await preparePatch(join(root, 'patch'), format, seed, timeoutMs);
      // --kills counts kills that landed before the patch finished; a kill that came too late is
      // retried as the next attempt (attempt K always draws the same moment), up to 3x as many.
      const wanted = onlyCase !== undefined ? 1 : Number(values.kills);
      let landed = 0;
      let midEdit = 0;
      let attempts = 0;
      const states = { old: 0, new: 0 };
      const triggers: Record<string, number> = {};
      while (landed < wanted && attempts < 3 * wanted) {
        const batch = onlyCase !== undefined ? [onlyCase] : Array.from({ length: Math.min(wanted - landed, 3 * wanted - attempts) }, (_, index) => attempts + index + 1);
        attempts += batch.length;
        await pool(batch, async (kill) => {
          const result = await runKill(setup, seed, kill, timeoutMs);
          if (result.landed) landed++;
          if (result.midEdit) midEdit++;
          triggers[result.trigger] = (triggers[result.trigger] ?? 0) + 1;
          if (result.why === 'old' || result.why === 'new') states[result.why]++;
          count(result.command.split(':')[0]!, result.verdict);
          if (BAD_VERDICTS.has(result.verdict)) bad.push({ number: kill, row: result.command, verdict: result.verdict, detail: result.why });
        });
        if (onlyCase !== undefined) break;
      }
      notes.push(`kill -9 (.${format}): ${attempts} runs of seekz patch (${setup.runMs} ms uninterrupted), ${landed} killed before they finished, ${midEdit} of them with an undo journal left behind (kill timed from: ${Object.entries(triggers).map(([name, count]) => `${name} ${count}`).join(', ')}); afterwards ${states.old} all-old, ${states.new} all-new`);
    }
  }

  printReport({ basesMs, caseSeconds });
  rmSync(root, { recursive: true, force: true });
  return bad.length > 0 ? 1 : 0;
}

function printReport({ basesMs, caseSeconds }: { basesMs: number; caseSeconds: number }): void {
  const columns = [...VERDICTS, 'refused-valid'] as const;
  const rows = [...counts.keys()].sort();
  const width = Math.max(24, ...rows.map((row) => row.length + 2));
  const lines = [`${'format:command'.padEnd(width)}${columns.map((column) => column.padStart(14)).join('')}`];
  const total = Object.fromEntries(columns.map((column) => [column, 0])) as Record<(typeof columns)[number], number>;
  for (const row of rows) {
    const entry = counts.get(row)!;
    lines.push(`${row.padEnd(width)}${columns.map((column) => String(entry[column]).padStart(14)).join('')}`);
    for (const column of columns) total[column] += entry[column];
  }
  lines.push(`${'total'.padEnd(width)}${columns.map((column) => String(total[column]).padStart(14)).join('')}`);
  process.stdout.write(`\n${lines.join('\n')}\n\n`);
  process.stdout.write('refused-valid: clean errors where the real tool accepts the file (counted in clean-error too; not a safety failure)\n');
  if (target.toolRejects > 0) {
    process.stdout.write(`target: of ${target.toolRejects} damaged files that gzip -t / xz -t reject, seekz cat rejected ${target.catRejects} (${((100 * target.catRejects) / target.toolRejects).toFixed(1)} %)\n`);
  }
  for (const note of notes) process.stdout.write(`${note}\n`);
  if (largest.peakRss > 0) process.stdout.write(`largest peak RSS: ${(largest.peakRss / 2 ** 20).toFixed(0)} MiB (${largest.command.replace(/\S*\/(dist\/)/g, '$1')})\n`);
  process.stdout.write(`time: bases ${(basesMs / 1000).toFixed(1)} s, ${casesRun} cases in ${caseSeconds.toFixed(1)} s (${(casesRun / Math.max(caseSeconds, 0.001)).toFixed(1)} cases/s, ${commandsRun} commands)\n`);
  if (bad.length > 0) {
    process.stdout.write(`\n${bad.length} bad verdicts:\n`);
    for (const entry of bad.sort((a, b) => (a.number ?? 0) - (b.number ?? 0))) {
      process.stdout.write(`  ${entry.verdict.padEnd(6)} ${entry.row}${entry.number !== undefined ? ` case ${entry.number}` : ''}: ${entry.detail}\n`);
      if (entry.number !== undefined && !entry.row.startsWith('patch')) process.stdout.write(`         repro: ${repro(entry.number)}\n`);
      if (entry.row.startsWith('patch')) process.stdout.write(`         repro: npm run fuzz -- --seed ${seed} --only patch --case ${entry.number}\n`);
    }
  }
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ seed, counts: Object.fromEntries(counts), bad, target, casesRun, caseSeconds }, null, 2));
  }
}

main().then(
  (status) => process.exit(status),
  (error: unknown) => {
    process.stderr.write(`seekz fuzz: ${(error as Error).stack ?? String(error)}\n`);
    rmSync(root, { recursive: true, force: true });
    process.exit(2);
  },
);
