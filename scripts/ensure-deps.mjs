// Lets `npm run demo` and `npm test` work as the first command on a fresh clone: installs the
// locked dependencies when node_modules is missing, then builds the native addon (binding.gyp)
// when it is missing or older than its sources. `--native` (the npm install hook) does only the
// second part. An addon that does not build is not an error: seekz says so in one line and runs
// on its pure-Node fallback (node-liblzma), as `seekz info --engines` then shows.
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync, execSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!process.argv.includes('--native') && !existsSync(join(root, 'node_modules/.bin/tsc'))) {
  console.error('seekz: node_modules missing; running npm ci');
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', cwd: root });
}
buildNative();

function buildNative() {
  const addons = [join(root, 'build/Release/seekz_xz.node')];
  const sources = ['binding.gyp', 'native/xz/seekz_xz.c'].map((file) => join(root, file));
  const newest = Math.max(...sources.map((path) => statSync(path).mtimeMs));
  if (addons.every((path) => existsSync(path) && statSync(path).mtimeMs >= newest)) return;
  // npm's own node-gyp (npm sets npm_config_node_gyp in scripts), found next to node otherwise.
  const prefix = dirname(dirname(process.execPath));
  const nodeGyp = [process.env.npm_config_node_gyp, join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')].find(
    (path) => path && existsSync(path),
  );
  const log = join(root, 'build-native.log');
  if (!nodeGyp) return fallback('node-gyp not found (it comes with npm)');
  // Node's headers as installed with node itself, so that the build needs no download.
  const nodedir = existsSync(join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
  try {
    const output = execFileSync(process.execPath, [nodeGyp, 'rebuild', ...nodedir], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    writeFileSync(log, output);
  } catch (error) {
    writeFileSync(log, `${error.stdout ?? ''}${error.stderr ?? ''}`);
    return fallback(`node-gyp failed; see ${log}`);
  }
}

function fallback(why) {
  console.error(`seekz: the native xz addon was not built (${why}); xz blocks decode through node-liblzma instead`);
}
