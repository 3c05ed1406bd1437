import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SeekzError, type ErrorCode } from '../errors.js';
import type { Job, ReplyOf } from './jobs.js';

export function defaultThreads(): number {
  return availableParallelism();
}

/**
 * Starts a worker thread from a module next to this one. Worker threads load plain JavaScript,
 * so when this module itself runs from TypeScript source (under the test runner) the worker comes
 * from the build in dist/, which `npm test` makes first.
 */
function startWorker(moduleBaseName: string): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL(`./${moduleBaseName}.js`, here));
  const built = new URL(`./${moduleBaseName}.js`, here.replace(/\/src\/(?!.*\/src\/)/, '/dist/src/'));
  if (!existsSync(built)) throw new Error(`seekz: ${built.pathname} is missing; run npm run build first`);
  return new Worker(built);
}

/** What a worker sends back: the reply, or the error it threw (a SeekzError keeps its code). */
export interface WorkerMessage {
  id: number;
  reply?: unknown;
  error?: { message: string; code?: ErrorCode };
}

export interface WorkerPool {
  readonly threads: number;
  /** Runs `job` on a worker. Buffers in `transfer` move to it (the caller must own all of them). */
  run<J extends Job>(job: J, transfer: ArrayBuffer[]): Promise<ReplyOf[J['kind']]>;
  close(): Promise<void>;
}

interface Pending {
  message: { id: number; job: Job };
  transfer: ArrayBuffer[];
  resolve: (reply: never) => void;
  reject: (error: Error) => void;
}

/** A fixed set of worker threads with a queue: at most one job per worker at a time. */
export function createWorkerPool(threads = defaultThreads()): WorkerPool {
  const count = Math.max(1, threads);
  const idle: Worker[] = [];
  const busy = new Map<Worker, Pending>();
  const queue: Pending[] = [];
  let nextId = 0;
  let failure: Error | undefined;
  let onIdle: (() => void) | undefined;

  const dispatch = () => {
    while (idle.length > 0 && queue.length > 0) {
      const worker = idle.pop()!;
      const pending = queue.shift()!;
      busy.set(worker, pending);
      worker.postMessage(pending.message, pending.transfer);
    }
  };

  const workers = Array.from({ length: count }, () => {
    const worker = startWorker('worker');
    worker.on('message', (message: WorkerMessage) => {
      const pending = busy.get(worker)!;
      busy.delete(worker);
      idle.push(worker);
      if (message.error) {
        const { code, message: text } = message.error;
        pending.reject(code ? new SeekzError(code, text) : new Error(`seekz: worker failed: ${text}`));
      } else {
        pending.resolve(message.reply as never);
      }
      dispatch();
      if (busy.size === 0) onIdle?.();
    });
    worker.on('error', (error) => {
      failure = error;
      busy.get(worker)?.reject(error);
      busy.delete(worker);
      if (busy.size === 0) onIdle?.();
      for (const pending of queue.splice(0)) pending.reject(error);
    });
    idle.push(worker);
    return worker;
  });

  return {
    threads: count,
    run(job, transfer) {
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        queue.push({ message: { id: nextId++, job }, transfer, resolve: resolve as (reply: never) => void, reject });
        dispatch();
      });
    },
    async close() {
      // Queued jobs are dropped; running ones are let finish: terminating a thread that is inside
      // a native call (liblzma) aborts the whole process.
      const closed = new Error('seekz: worker pool closed');
      for (const pending of queue.splice(0)) pending.reject(closed);
      while (busy.size > 0) await new Promise<void>((resolve) => (onIdle = resolve));
      await Promise.all(workers.map((worker) => worker.terminate()));
    },
  };
}
