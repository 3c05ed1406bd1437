import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ChunkOptions } from './chunk.js';
import type { CompressJob, CompressResult } from './compress-worker.js';

export interface CompressPool {
  readonly threads: number;
  /**
   * Compresses `data` into a sync-flushed chunk, with its CRC-32. Its buffer moves to a worker
   * (the caller must own all of it) and comes back as `data`, for reuse.
   */
  compress(data: Uint8Array): Promise<CompressOutput>;
  close(): Promise<void>;
}

export function defaultThreads(): number {
  return availableParallelism();
}

/**
 * Starts a worker thread from a module next to this one. Worker threads load plain JavaScript,
 * so when this module itself runs from TypeScript source (under the test runner) the worker comes
 * from the build in dist/, which `npm test` makes first.
 */
export function startWorker(moduleBaseName: string, importMetaUrl: string): Worker {
  if (!importMetaUrl.endsWith('.ts')) return new Worker(new URL(`./${moduleBaseName}.js`, importMetaUrl));
  const built = new URL(`./${moduleBaseName}.js`, importMetaUrl.replace(/\/src\/(?!.*\/src\/)/, '/dist/src/'));
  if (!existsSync(built)) throw new Error(`seekz: ${built.pathname} is missing; run npm run build first`);
  return new Worker(built);
}

export interface CompressOutput {
  compressed: Uint8Array;
  crc: number;
  data: Uint8Array;
}

interface Pending {
  job: CompressJob;
  resolve: (value: CompressOutput) => void;
  reject: (error: Error) => void;
}

export function createCompressPool(options: ChunkOptions & { threads?: number }): CompressPool {
  const threads = Math.max(1, options.threads ?? defaultThreads());
  const chunkOptions: ChunkOptions = { level: options.level, memLevel: options.memLevel };
  const idle: Worker[] = [];
  const busy = new Map<Worker, Pending>();
  const queue: Pending[] = [];
  let nextId = 0;
  let failure: Error | undefined;

  const dispatch = () => {
    while (idle.length > 0 && queue.length > 0) {
      const worker = idle.pop()!;
      const pending = queue.shift()!;
      busy.set(worker, pending);
      worker.postMessage(pending.job, [pending.job.data.buffer as ArrayBuffer]);
    }
  };

  const workers = Array.from({ length: threads }, () => {
    const worker = startWorker('compress-worker', import.meta.url);
    worker.on('message', (result: CompressResult) => {
      const pending = busy.get(worker)!;
      busy.delete(worker);
      idle.push(worker);
      if (result.error !== undefined) pending.reject(new Error(`deflate: worker failed: ${result.error}`));
      else pending.resolve({ compressed: result.compressed!, crc: result.crc!, data: result.data });
      dispatch();
    });
    worker.on('error', (error) => {
      failure = error;
      busy.get(worker)?.reject(error);
      for (const pending of queue.splice(0)) pending.reject(error);
    });
    idle.push(worker);
    return worker;
  });

  return {
    threads,
    compress(data) {
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        queue.push({ job: { id: nextId++, data, options: chunkOptions }, resolve, reject });
        dispatch();
      });
    },
    async close() {
      await Promise.all(workers.map((worker) => worker.terminate()));
    },
  };
}
