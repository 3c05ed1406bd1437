/**
 * The package as npm ships it: `npm pack` of the built tree, installed into a fresh project with
 * npm (its dependencies from the registry or npm's cache), imported from TypeScript under
 * `strict`, run, and its three commands run through npx. What the tarball holds is judged from
 * npm's own file list.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diskLikeData, requireTool, run, tempDir, type RunResult } from './helpers/tools.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string; bin: Record<string, string> };

let dir: { path: string; remove: () => void };
let project: string;
let packed: string[];

function ok(result: RunResult, what: string): RunResult {
  if (result.status !== 0) throw new Error(`${what} exited ${result.status}:\n${result.stdout.toString()}${result.stderr}`);
  return result;
}

/** npm in `cwd`, quiet, never asking the network for what its cache has. */
const npm = (args: string[], cwd: string) => ok(run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline'], { cwd }), `npm ${args.join(' ')}`);

beforeAll(() => {
  requireTool('npm', 'npm');
  requireTool('xz', 'xz-utils');
  dir = tempDir('seekz-package-');
  // --ignore-scripts: the tree is already built (tests run against a fresh build), and a rebuild
  // here would rewrite dist/ under the other test files running beside this one.
  const listing = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', dir.path, ROOT], dir.path).stdout.toString()) as {
    filename: string;
    files: { path: string }[];
  }[];
  packed = listing[0]!.files.map((entry) => entry.path);
  project = join(dir.path, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-seekz', type: 'module', private: true }));
  npm(['install', join(dir.path, listing[0]!.filename), '@types/node@20'], project);
}, 120_000);
afterAll(() => dir?.remove());

describe('npm pack: what the tarball holds', () => {
  it('ships dist/src with its types, the bundled commands with their worker, README and LICENSE', () => {
    for (const path of ['package.json', 'README.md', 'LICENSE', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/open.d.ts', 'dist/src/workers/worker.js', 'dist/bin/worker.js', 'dist/bin/package.json', ...Object.values(pkg.bin)]) {
      expect(packed, path).toContain(path.replace(/^\.\//, ''));
    }
  });

  it('ships no bench, fuzz, tests, TypeScript sources or source maps', () => {
    const stray = packed.filter((path) => /^(dist\/(bench|fuzz|test)\/|src\/|cli\/|test\/|bench\/|fuzz\/)/.test(path) || path.endsWith('.map') || (path.endsWith('.ts') && !path.endsWith('.d.ts')));
    expect(stray).toEqual([]);
    expect(readFileSync(join(project, 'node_modules', 'seekz', 'dist', 'src', 'index.js'), 'utf8')).not.toContain('sourceMappingURL');
  });

  it('the bin scripts are node scripts themselves, so a client that starts one talks to the pid it started', () => {
    for (const [name, path] of Object.entries(pkg.bin)) {
      expect(readFileSync(join(project, 'node_modules', 'seekz', path), 'utf8').split('\n')[0], name).toBe('#!/usr/bin/env node');
    }
  });
});

describe('installed into a fresh project', () => {
  it('imports from TypeScript under strict, with await using, and reads the bytes xz wrote', { timeout: 60_000 }, () => {
    const data = diskLikeData(3 << 20, 9);
    writeFileSync(join(project, 'data.bin'), data);
    ok(run('xz', ['-k', '-T2', '--block-size=1MiB', join(project, 'data.bin')]), 'xz');
    writeFileSync(
      join(project, 'main.ts'),
      `import { open, SeekzError, type CompressedFile } from 'seekz';

const offset = Number(process.argv[2]);
await using file: CompressedFile = await open('data.bin.xz');
const bytes: Buffer = await file.read(offset, 16);
process.stdout.write(JSON.stringify({ format: file.format, size: file.size, hex: bytes.toString('hex') }));
const other = await open('data.bin.xz');
await other.close();
try {
  await open('data.bin');
} catch (error) {
  if (!(error instanceof SeekzError)) throw error;
}
`,
    );
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'], outDir: 'out' }, include: ['main.ts'] }),
    );
    ok(run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project]), 'tsc --strict against the installed package');
    const result = JSON.parse(ok(run(process.execPath, ['out/main.js', String(2_000_000)], { cwd: project }), 'node out/main.js').stdout.toString());
    expect(result).toEqual({ format: 'xz', size: data.length, hex: Buffer.from(data.subarray(2_000_000, 2_000_016)).toString('hex') });
  });

  it('deep imports stay closed', () => {
    const result = run(process.execPath, ['--input-type=module', '-e', "await import('seekz/dist/src/open.js')"], { cwd: project });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('ERR_PACKAGE_PATH_NOT_EXPORTED');
  });

  it('npx runs the three commands', { timeout: 60_000 }, () => {
    for (const name of Object.keys(pkg.bin)) {
      expect(ok(run('npx', ['--no-install', name, '--help'], { cwd: project }), `npx ${name} --help`).stdout.toString(), name).toContain(`Usage: ${name}`);
    }
    // A tiny real job through each: seekxz compresses, seekz reads it back, partial-deflate stores a range.
    ok(run('npx', ['--no-install', 'seekxz', '-k', '-q', '--block-size=1MiB', '-T2', 'data.bin', '-o', 'ours.xz'], { cwd: project }), 'npx seekxz');
    ok(run('xz', ['-t', join(project, 'ours.xz')]), 'xz -t of what npx seekxz wrote');
    const read = ok(run('npx', ['--no-install', 'seekz', 'read', 'ours.xz', '--offset', '1000', '--length', '8'], { cwd: project }), 'npx seekz read');
    expect(read.stdout.equals(readFileSync(join(project, 'data.bin')).subarray(1000, 1008))).toBe(true);
    ok(run('npx', ['--no-install', 'partial-deflate', '-q', 'data.bin', 'data.bin.gz', '0', '64K'], { cwd: project }), 'npx partial-deflate');
    expect(ok(run('gzip', ['-dc', join(project, 'data.bin.gz')]), 'gzip -dc').stdout.equals(readFileSync(join(project, 'data.bin')))).toBe(true);
  });
});
