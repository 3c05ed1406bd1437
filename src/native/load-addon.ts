/**
 * Loads one of binding.gyp's addons from the repository's build/ (built by scripts/ensure-deps.mjs),
 * or undefined when it is not built, was built for another Node, or SEEKZ_NATIVE=0 hides it (so
 * tests run the pure-Node paths too). Only resolves a file name for require(): no other I/O.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

export function loadAddon<T>(name: string): T | undefined {
  if (process.env.SEEKZ_NATIVE === '0') return undefined;
  const require = createRequire(import.meta.url);
  // From src/native (tests) or dist/src/native (the build): the repository root's build/.
  for (const up of [`../../build/Release/${name}.node`, `../../../build/Release/${name}.node`]) {
    const path = new URL(up, import.meta.url);
    if (!existsSync(path)) continue;
    try {
      return require(path.pathname) as T;
    } catch {
      // built for another Node version: fall back as if absent
    }
  }
  return undefined;
}
