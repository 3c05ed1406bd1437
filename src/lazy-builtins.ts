/**
 * Node built-ins that most runs never use, loaded on first use. An `import` of them runs at every
 * start of a bundled command, and under callgrind `node:crypto` costs 7.1 M instructions and
 * `node:worker_threads` 4.7 M, together a fifth of what a 4 KiB `seekz read` adds to Node's own
 * start (83 M). (commander's `node:child_process`, 4.4 M more, is made lazy in scripts/bundle.mjs.)
 * test/cli-manners.test.ts ("start-up: each command loads what it uses") pins which run loads them.
 */
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);
let crypto: typeof import('node:crypto') | undefined;
let workerThreads: typeof import('node:worker_threads') | undefined;

export const nodeCrypto = () => (crypto ??= load('node:crypto') as typeof import('node:crypto'));
export const nodeWorkerThreads = () => (workerThreads ??= load('node:worker_threads') as typeof import('node:worker_threads'));
