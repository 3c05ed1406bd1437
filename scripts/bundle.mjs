// Bundles the four commands and the worker thread into dist/bin/, one CommonJS file each: what
// package.json's `bin` runs and what `npm pack` ships. Start-up is most of a 4 KiB `seekz read`, and
// one file costs less to start than the ~45 ES modules tsc's build loads (fewer file lookups, one
// compile, no ESM linking); see the start-up rows of `npm run bench`.
//
// Why CommonJS: an ES module bundle hoists every `import` of a Node built-in to the top, so
// `seekz read` would load http, tls and child_process that the sources import only when needed;
// in CommonJS they stay `require` calls inside esbuild's lazy module wrappers.
//
// Each command is two files: NAME.bundle.js, the bundle, and NAME.js, the bin script, which starts
// the bundle through start.js (scripts/start-bundle.cjs) so that V8's compiled code is cached
// between runs.
//
// The library (package.json `exports`, what `import … from 'seekz'` loads) is bundled the same way,
// as lib.bundle.js behind lib.js, for the same reason: a program that opens one file and reads
// 4 KiB should not pay for loading ~45 modules. lib.js ends with the list of the export names in the
// form Node's CommonJS lexer reads (`0 && (module.exports = { … })`, as esbuild writes it), so that
// ES modules can import them by name; the list is taken from the built bundle itself.
//
// The worker is an entry point of its own and lands beside the commands as worker.js, where
// src/workers/pool.ts finds it: `./worker.js` next to the file that runs, as in tsc's build.
// dist/bin/package.json says "commonjs", so those .js files are CommonJS in a "module" package.
//
// import.meta.url keeps its meaning in the bundle: the bundle's own file URL. Runtime dependencies
// (package.json `dependencies`) stay outside the bundle; what is bundled is a devDependency.
//
// Files are written to a temp name and renamed, and only when they changed, so that a test run
// that rebuilds (vitest's global setup) never shows a half-written command to another one.
//
// Usage: node scripts/bundle.mjs [OUTDIR]   (default dist/bin)
import { build } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const outdir = resolve(root, process.argv[2] ?? 'dist/bin');

const COMMANDS = ['seekz', 'partial-deflate', 'seekxz', 'seekzstd'];

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

// commander loads node:child_process when it loads (for executable subcommands, which seekz has
// none of): 4.4 M instructions under callgrind, with net, dgram and the streams behind it, at
// every start. Bundled, its require becomes one made on the first spawn (src/lazy-builtins.ts
// does the same for seekz's own rarely used built-ins). If commander changes that line, the
// build says so rather than quietly loading it again.
const lazyCommanderSpawn = {
  name: 'lazy-commander-spawn',
  setup(build) {
    build.onLoad({ filter: /[\\/]commander[\\/]lib[\\/]command\.js$/ }, (args) => {
      const eager = "const childProcess = require('node:child_process');";
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes(eager)) throw new Error(`bundle: ${args.path} no longer has ${eager} (see lazyCommanderSpawn)`);
      const lazy = "const childProcess = { spawn: (...args) => require('node:child_process').spawn(...args) };";
      return { contents: source.replace(eager, lazy), loader: 'js' };
    });
  },
};
const result = await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries([...COMMANDS.map((name) => [`${name}.bundle`, `cli/${name}.ts`]), ['lib.bundle', 'src/index.ts'], ['worker', 'src/workers/worker.ts']]),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: `node${process.versions.node.split('.')[0]}`,
  outdir,
  write: false,
  external: Object.keys(pkg.dependencies ?? {}),
  define: { 'import.meta.url': 'seekzBundleUrl' },
  banner: { js: "const seekzBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
  plugins: [lazyCommanderSpawn],
});

// start.js reads an all-ASCII bundle as Latin-1, with no UTF-8 decoding. esbuild escapes
// non-ASCII in code (charset 'ascii'), but keeps some comments as written.
for (const file of result.outputFiles) {
  const at = file.text.search(/[^\x00-\x7f]/);
  if (at >= 0) {
    const line = file.text.slice(0, at).split('\n').length;
    console.warn(`bundle: ${file.path}:${line} holds a non-ASCII character, so the command starts slower (UTF-8 decoding); write it as ASCII in the source`);
  }
}

mkdirSync(outdir, { recursive: true });
const write = (path, text) => {
  if (existsSync(path) && readFileSync(path, 'utf8') === text) return;
  const temp = join(dirname(path), `.${process.pid}.tmp`);
  writeFileSync(temp, text, { mode: text.startsWith('#!') && !path.endsWith('.bundle.js') ? 0o755 : 0o644 });
  renameSync(temp, path);
};
for (const { path, text } of [
  ...result.outputFiles.map((file) => ({ path: file.path, text: file.text })),
  ...COMMANDS.map((name) => ({ path: join(outdir, `${name}.js`), text: `#!/usr/bin/env node\nrequire('./start.js')('${name}');\n` })),
  { path: join(outdir, 'start.js'), text: readFileSync(join(root, 'scripts/start-bundle.cjs'), 'utf8') },
  { path: join(outdir, 'package.json'), text: '{ "type": "commonjs" }\n' },
]) {
  write(path, text);
}
const names = Object.keys(createRequire(import.meta.url)(join(outdir, 'lib.bundle.js'))).filter((name) => name !== '__esModule');
write(
  join(outdir, 'lib.js'),
  "'use strict';\n// seekz's library: the bundle, started with its compiled code cached (start.js).\n" +
    "const seekz = require('./start.js')('lib');\nmodule.exports = seekz;\n" +
    `// The export names, for Node's import of a CommonJS module by name:\n0 && (module.exports = { ${names.join(', ')} });\n`,
);
