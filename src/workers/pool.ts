import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { fail, SeekzError, type ErrorCode } from '../errors.js';
import { nodeWorkerThreads } from '../lazy-builtins.js';
import { inProcessRunner } from './in-process.js';
import type { Job, ReplyOf } from './jobs.js';

export function defaultThreads(): number {
  return availableParallelism();
}

/**
 * The worker script: worker.js beside the JavaScript that runs this module. That is
 * dist/src/workers/worker.js in tsc's build (the library) and dist/bin/worker.js beside the bundled
 * commands (scripts/bundle.mjs makes the worker an entry point of its own). Under vitest this module
 * is TypeScript, which a worker thread cannot load: vitest.config.ts then names the bundled worker
 * in SEEKZ_TEST_WORKER, and its global setup bundles it from these sources before any test runs,
 * so that no test can start a stale worker.
 */
declare const SEEKZ_TEST_WORKER: string | undefined;
const workerScript = (): URL => (typeof SEEKZ_TEST_WORKER === 'string' ? pathToFileURL(SEEKZ_TEST_WORKER) : new URL('./worker.js', import.meta.url));

/** What each worker gets at start: a shared flag that, once set, makes it drop its job between slices. */
export interface WorkerStart {
  stop: SharedArrayBuffer;
}

/** Every pool not yet closed, so that a signal can stop them all (stopAllWorkers). */
const livePools = new Set<WorkerPool>();

/**
 * Stops every worker of every pool for a signal: queued and running jobs reject with INTERRUPTED
 * at once (their results are never used), each running job gives up at its next slice boundary,
 * and then the threads are terminated. Resolves when all threads are gone, so `process.exit`
 * has nothing to join. Never terminates a thread inside liblzma: that aborts the process
 * (node-liblzma's napi_throw in a dying isolate), and process.exit alone would wait for the
 * whole block first.
 */
export async function stopAllWorkers(): Promise<void> {
  await Promise.all([...livePools].map((pool) => pool.stop()));
}

/** What a worker sends back: the reply, or the error it threw (a SeekzError keeps its code). */
export interface WorkerMessage {
  id: number;
  reply?: unknown;
  error?: { message: string; code?: ErrorCode };
}

export interface WorkerPool {
  readonly threads: number;
  /** Runs `job` in process or on a worker. Buffers in `transfer` move to it (the caller must own all of them, and gives them up either way). */
  run<J extends Job>(job: J, transfer: ArrayBuffer[]): Promise<ReplyOf[J['kind']]>;
  close(): Promise<void>;
  /** See stopAllWorkers. */
  stop(): Promise<void>;
}

export interface WorkerPoolOptions {
  /** False: every job on a worker thread, also the kinds with an in-process runner (tests compare both paths). Default true. */
  inProcess?: boolean;
}

interface Pending {
  message: { id: number; job: Job };
  transfer: ArrayBuffer[];
  resolve: (reply: never) => void;
  reject: (error: Error) => void;
}

/**
 * At most `threads` jobs at a time, each either in process (workers/in-process.ts: the kinds with
 * an async native path, when the addon is built) or on a worker thread. Worker threads start only
 * when a job needs one, so a pool whose jobs all run in process never starts a thread of its own.
 * Jobs start in the order they were given. An aborted `signal` stops the pool as a process signal
 * would (see stopAllWorkers): the library's way to cancel a compression within one slice of a
 * job, not after the block in hand. Pinned by test/zstd-async.test.ts and test/xz-native.test.ts
 * (no worker starts where a runner exists; the forced worker path gives the same results) and
 * test/cli-manners.test.ts (partial-deflate starts none).
 */
export function createWorkerPool(threads = defaultThreads(), signal?: AbortSignal, options: WorkerPoolOptions = {}): WorkerPool {
  const count = Math.max(1, threads);
  const stopFlag = new Int32Array(new SharedArrayBuffer(4));
  const workers: Worker[] = [];
  const idle: Worker[] = [];
  /** Running jobs: a worker's, or an in-process one's (keyed by its message); undefined once stop() rejected it. */
  const busy = new Map<Worker | Pending['message'], Pending | undefined>();
  const queue: Pending[] = [];
  let nextId = 0;
  let failure: Error | undefined;
  const idleWaiters: (() => void)[] = [];
  const onIdle = () => {
    for (const resolve of idleWaiters.splice(0)) resolve();
  };
  let stopping: Promise<void> | undefined;
  /** Set while the first job of a kind waits for its runner to load: later jobs wait behind it. */
  let loading = false;

  /** In-process jobs that stop() need not wait for (InProcessRunner.detached). */
  const detached = new Set<Pending['message']>();

  const settle = (key: Worker | Pending['message'], outcome: { reply: unknown } | { error: Error }) => {
    // After stop() the job was already rejected: the outcome is dropped.
    const pending = busy.get(key);
    busy.delete(key);
    detached.delete(key as Pending['message']);
    if (pending) {
      if ('error' in outcome) pending.reject(outcome.error);
      else pending.resolve(outcome.reply as never);
    }
    dispatch();
    if (busy.size === 0) onIdle();
  };

  const startWorker = (): Worker => {
    const worker = new (nodeWorkerThreads().Worker)(workerScript(), { workerData: { stop: stopFlag.buffer } satisfies WorkerStart });
    worker.on('message', (message: WorkerMessage) => {
      idle.push(worker);
      if (message.error) {
        const { code, message: text } = message.error;
        settle(worker, { error: code ? new SeekzError(code, text) : new Error(`seekz: worker failed: ${text}`) });
      } else {
        settle(worker, { reply: message.reply });
      }
    });
    worker.on('error', (error) => {
      failure = error;
      busy.get(worker)?.reject(error);
      busy.delete(worker);
      if (busy.size === 0) onIdle();
      for (const pending of queue.splice(0)) pending.reject(error);
    });
    workers.push(worker);
    return worker;
  };

  const dispatch = () => {
    while (!loading && !stopping && busy.size < count && queue.length > 0) {
      const runner = options.inProcess === false ? undefined : inProcessRunner(queue[0]!.message.job.kind);
      if (runner instanceof Promise) {
        loading = true;
        void runner.then(
          () => {
            loading = false;
            dispatch();
          },
          (error: Error) => {
            loading = false;
            for (const pending of queue.splice(0)) pending.reject(error);
          },
        );
        return;
      }
      const pending = queue.shift()!;
      if (runner) {
        busy.set(pending.message, pending);
        if (runner.detached?.(pending.message.job)) detached.add(pending.message);
        runner(pending.message.job, stopFlag).then(
          ({ reply }) => settle(pending.message, { reply }),
          (error: Error) => settle(pending.message, { error }),
        );
      } else {
        const worker = idle.pop() ?? startWorker();
        busy.set(worker, pending);
        worker.postMessage(pending.message, pending.transfer);
      }
    }
  };

  const untilIdle = async () => {
    while (busy.size > 0) await new Promise<void>((resolve) => idleWaiters.push(resolve));
  };

  const pool: WorkerPool = {
    threads: count,
    run(job, transfer) {
      if (stopping) return Promise.reject(fail('INTERRUPTED', 'a signal'));
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        queue.push({ message: { id: nextId++, job }, transfer, resolve: resolve as (reply: never) => void, reject });
        dispatch();
      });
    },
    async close() {
      if (stopping) return stopping;
      // Queued jobs are dropped; running ones are let finish: terminating a thread that is inside
      // a native call (liblzma) aborts the whole process. Until then the pool stays live, so that
      // a signal meanwhile can still stop it.
      const closed = new Error('seekz: worker pool closed');
      for (const pending of queue.splice(0)) pending.reject(closed);
      await untilIdle();
      await Promise.all(workers.map((worker) => worker.terminate()));
      livePools.delete(pool);
      signal?.removeEventListener('abort', onAbort);
    },
    stop() {
      stopping ??= (async () => {
        Atomics.store(stopFlag, 0, 1);
        const interrupted = fail('INTERRUPTED', 'a signal');
        for (const pending of queue.splice(0)) pending.reject(interrupted);
        for (const [key, pending] of busy) {
          pending?.reject(interrupted);
          if (detached.has(key as Pending['message'])) busy.delete(key);
          else busy.set(key, undefined);
        }
        await untilIdle();
        await Promise.all(workers.map((worker) => worker.terminate()));
        livePools.delete(pool);
      })();
      return stopping;
    },
  };
  livePools.add(pool);
  const onAbort = () => void pool.stop();
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return pool;
}
