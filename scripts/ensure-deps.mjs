// Lets `npm run demo` and `npm test` work as the first command on a fresh clone:
// installs the locked dependencies when node_modules is missing.
import { existsSync } from 'node:fs';
import { execSync } from 'node:child_process';
if (!existsSync(new URL('../node_modules/.bin/tsc', import.meta.url))) {
  console.error('seekz: node_modules missing; running npm ci');
  execSync('npm ci --no-audit --no-fund', { stdio: 'inherit', cwd: new URL('..', import.meta.url) });
}
