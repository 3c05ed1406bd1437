'use strict';
/**
 * Starts a bundled command or the bundled library, and returns its exports (scripts/bundle.mjs
 * copies this file to dist/bin/start.js; each command's bin script and the library's lib.js call
 * it). Compiling the ~450 KB bundle is a good part of a 4 KiB `seekz read`, so the compiled code
 * is kept between runs. Node 22 does that itself
 * (module.enableCompileCache, given the directory below). On Node 20 this keeps V8's code cache:
 * written at the exit of the first run (so it holds the functions that ran, compiled), read by
 * every later run, and rewritten only when V8 rejects it (another Node, other V8 flags).
 *
 * Invariants, pinned by test/cli-manners.test.ts (start-up):
 * - A cache serves only the exact bundle file it was made from: its name holds the file's size,
 *   mtime and inode, and V8 checks its own version and flags. A rebuilt bundle never runs stale
 *   code, and writing a cache removes those of the command's earlier builds, and any cache not
 *   rewritten for 30 days (of installs since removed), so the directory does not grow.
 * - Cached code runs as the user, so the directory must be the user's own and writable by no one
 *   else (it is made 0700); otherwise no cache is read or written.
 * - A cache is written to a temp name and renamed: no run reads half of one.
 * - Any failure of the cache only means compiling as usual.
 */
const { closeSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } = require('node:fs');
const { isAscii } = require('node:buffer');
const Module = require('node:module');
const { availableParallelism, homedir } = require('node:os');
const { join } = require('node:path');
const { Script } = require('node:vm');

/** $XDG_CACHE_HOME/seekz, else ~/.cache/seekz, if it is a directory only this user can write. */
function cacheDirectory() {
  try {
    const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
    const directory = join(base, 'seekz');
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const stat = lstatSync(directory);
    const mine = typeof process.getuid !== 'function' || stat.uid === process.getuid();
    return stat.isDirectory() && mine && (stat.mode & 0o022) === 0 ? directory : undefined;
  } catch {
    return undefined;
  }
}

/** A short name for the directory the bundles are in, so that two installs keep caches apart (djb2). */
function placeTag(directory) {
  let hash = 5381;
  for (let at = 0; at < directory.length; at++) hash = ((hash * 33) ^ directory.charCodeAt(at)) >>> 0;
  return hash.toString(36);
}

/**
 * libuv's thread pool serves both the codecs' async work (seekzstd's frames, `threads` jobs at a
 * time) and file I/O, and starts with its first job, sized by UV_THREADPOOL_SIZE (4 by default).
 * With all cores busy compressing, reads and writes still need threads of their own, or the
 * codecs wait for input: two more than the cores, unless the user chose a size.
 */
function sizeThreadPool() {
  if (process.env.UV_THREADPOOL_SIZE) return;
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, availableParallelism() + 2));
}

module.exports = function start(name) {
  // A command owns its process; the library leaves its host's environment as it found it.
  if (name !== 'lib') sizeThreadPool();
  const file = join(__dirname, `${name}.bundle.js`);
  const directory = cacheDirectory();
  if (typeof Module.enableCompileCache === 'function') {
    if (directory) Module.enableCompileCache(directory);
    return require(file);
  }
  // The shebang becomes a comment of the same length, so that line numbers stay those of the file.
  // An all-ASCII bundle (scripts/bundle.mjs checks that it is) is read as Latin-1: V8 takes the
  // bytes as they are, where UTF-8 decoding cost about a tenth of what start.js adds to Node's start.
  const bytes = readFileSync(file);
  const source = bytes.toString(isAscii(bytes) ? 'latin1' : 'utf8').replace(/^#!/, '//');
  let prefix;
  let cachePath;
  let cachedData;
  if (directory) {
    const stat = statSync(file);
    prefix = `${name}-${placeTag(__dirname)}-`;
    cachePath = join(directory, `${prefix}${process.version}-${process.arch}-${stat.size}-${Math.round(stat.mtimeMs)}-${stat.ino}.v8`);
    try {
      cachedData = readFileSync(cachePath);
    } catch {
      // no cache yet
    }
  }
  const script = new Script(Module.wrap(source), { filename: file, cachedData });
  if (cachePath && (cachedData === undefined || script.cachedDataRejected)) {
    process.once('exit', () => {
      const temp = `${cachePath}.${process.pid}.tmp`;
      try {
        const fd = openSync(temp, 'w', 0o600);
        try {
          writeSync(fd, script.createCachedData());
        } finally {
          closeSync(fd);
        }
        renameSync(temp, cachePath);
        // The caches of this command's earlier builds, here, will never be read again; nor, most
        // likely, any cache not rewritten for 30 days (an install since removed: a clone, a test
        // directory). Removing one that is still used costs its next run one compile.
        const stale = Date.now() - 30 * 24 * 3600 * 1000;
        for (const entry of readdirSync(directory)) {
          const path = join(directory, entry);
          if (!entry.endsWith('.v8') || path === cachePath) continue;
          if (entry.startsWith(prefix) || statSync(path, { throwIfNoEntry: false })?.mtimeMs < stale) rmSync(path, { force: true });
        }
      } catch {
        rmSync(temp, { force: true }); // a read-only or full disk: the next run compiles as usual
      }
    });
  }
  const bundle = new Module(file, module);
  bundle.filename = file;
  bundle.paths = Module._nodeModulePaths(__dirname);
  script.runInThisContext()(bundle.exports, Module.createRequire(file), bundle, file, __dirname);
  return bundle.exports;
};
