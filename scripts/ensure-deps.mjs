// Lets `npm run demo` and `npm test` work as the first command on a fresh clone: installs the
// locked dependencies when node_modules is missing, then builds the native addons of binding.gyp
// (seekz_xz over Debian's liblzma, seekz_zlib over zlib and libdeflate, seekz_zstd over libzstd,
// seekz_io for lseek and fcntl) when one is missing or
// older than its sources. `--native` (the npm install hook) does only the second part.
// An addon that does not build is not an error: seekz says so in one line and runs on its
// pure-Node path (node-liblzma for xz blocks, node:zlib and the deflate walker for gzip indexes,
// fzstd to decode zstd),
// as `seekz --version -v` then shows. SEEKZ_NATIVE=0 forces that path; CI tests both.
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
  const addons = {
    seekz_xz: { sources: ['native/xz/seekz_xz.c'], fallback: 'xz blocks decode through node-liblzma', needs: 'liblzma-dev' },
    seekz_zlib: { sources: ['native/zlib/seekz_zlib.c'], fallback: 'gzip indexes are built by the slower pure-Node walker', needs: 'zlib1g-dev, libdeflate-dev' },
    seekz_zstd: { sources: ['native/zstd/zstd.c', 'native/zstd/xxh64.c'], fallback: 'zstd files decode through fzstd and cannot be written', needs: 'libzstd-dev' },
    seekz_io: { sources: ['native/io/seekz_io.c'], fallback: 'a decompressed stdout gets no holes', needs: "Node's headers" },
  };
  const mtime = (path) => (existsSync(path) ? statSync(path).mtimeMs : 0);
  const stale = Object.entries(addons).filter(([name, addon]) => {
    const newest = Math.max(...['binding.gyp', ...addon.sources].map((file) => mtime(join(root, file))));
    return mtime(join(root, `build/Release/${name}.node`)) < newest;
  });
  if (stale.length === 0) return;
  // npm's own node-gyp (npm sets npm_config_node_gyp in scripts), found next to node otherwise.
  const prefix = dirname(dirname(process.execPath));
  const nodeGyp = [process.env.npm_config_node_gyp, join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')].find(
    (path) => path && existsSync(path),
  );
  const log = join(root, 'build-native.log');
  const fallback = (why) => {
    for (const [name, addon] of Object.entries(addons)) {
      if (!existsSync(join(root, `build/Release/${name}.node`))) console.error(`seekz: the ${name} addon was not built (${why}; it needs gcc, make, ${addon.needs}); ${addon.fallback} instead`);
    }
  };
  if (!nodeGyp) return fallback('node-gyp not found (it comes with npm)');
  // Node's headers as installed with node itself, so that the build needs no download.
  const nodedir = [prefix, '/usr'].find((dir) => existsSync(join(dir, 'include/node/node_api.h')));
  try {
    const output = execFileSync(process.execPath, [nodeGyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    writeFileSync(log, output);
  } catch (error) {
    writeFileSync(log, `${error.stdout ?? ''}${error.stderr ?? ''}`);
    fallback(`node-gyp failed; see ${log}`);
  }
}

