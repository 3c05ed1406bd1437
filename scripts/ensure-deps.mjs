// Lets `npm run demo` and `npm test` work as the first command on a fresh clone:
// installs the locked dependencies when node_modules is missing.
import { existsSync } from 'node:fs';
import { execSync } from 'node:child_process';
if (!existsSync(new URL('../node_modules/.bin/tsc', import.meta.url))) {
  console.error('seekz: node_modules missing; running npm ci');
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', cwd: new URL('..', import.meta.url) });
}

// The seekz_zlib addon (binding.gyp, native/zlib): built here when missing or older than its
// sources. It is optional: when it cannot build, seekz takes its pure-Node path (SEEKZ_NATIVE=0
// forces that path; both are tested).
import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
const root = fileURLToPath(new URL('..', import.meta.url));
const addon = join(root, 'build/Release/seekz_zlib.node');
const sources = ['binding.gyp', 'native/zlib/seekz_zlib.c'].map((file) => join(root, file));
const mtime = (file) => (existsSync(file) ? statSync(file).mtimeMs : 0);
if (mtime(addon) < Math.max(...sources.map(mtime))) {
  // npm puts its own node-gyp on PATH for scripts; outside npm, use the one npm ships with.
  const bundled = join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  const gyp = existsSync(bundled) ? `"${process.execPath}" "${bundled}"` : 'node-gyp';
  // Debian's nodejs ships its headers: no download needed (the network may be loopback only).
  const nodedir = existsSync('/usr/include/node/node_api.h') ? ' --nodedir=/usr' : '';
  try {
    execSync(`${gyp} rebuild --loglevel=error${nodedir}`, { stdio: ['ignore', 'ignore', 'inherit'], cwd: root });
  } catch {
    console.error('seekz: the seekz_zlib addon did not build (it needs gcc, make, zlib1g-dev, libdeflate-dev); the pure-Node path will be used (slower index builds)');
  }
}
