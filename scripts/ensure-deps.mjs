// Lets `npm run demo` and `npm test` work as the first command on a fresh clone:
// installs the locked dependencies when node_modules is missing.
import { existsSync } from 'node:fs';
import { execSync } from 'node:child_process';
if (!existsSync(new URL('../node_modules/.bin/tsc', import.meta.url))) {
  console.error('seekz: node_modules missing; running npm ci');
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', cwd: new URL('..', import.meta.url) });
}

// The optional seekz_zstd addon (native/zstd/, over Debian's libzstd): built when it is missing
// or older than its source. Without it seekz still decodes zstd (fzstd) but cannot write it.
{
  const { statSync } = await import('node:fs');
  const { dirname, join } = await import('node:path');
  const root = new URL('..', import.meta.url);
  const built = new URL('../build/Release/seekz_zstd.node', import.meta.url);
  const source = new URL('../native/zstd/zstd.c', import.meta.url);
  const stale = !existsSync(built) || statSync(built).mtimeMs < statSync(source).mtimeMs;
  if (stale) {
    const gyp = join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
    const nodedir = existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
    try {
      execSync([process.execPath, gyp, 'rebuild', ...nodedir].map((word) => JSON.stringify(word)).join(' '), { cwd: root, stdio: 'pipe' });
    } catch (error) {
      const why = String(error.stderr ?? error.message).split('\n').find((line) => /error/i.test(line)) ?? 'node-gyp failed';
      console.error(`seekz: the zstd addon did not build (${why.trim()}); zstd files will decode with fzstd and cannot be written (apt-get install libzstd-dev)`);
    }
  }
}
