import { parentPort, workerData } from 'node:worker_threads';
import { SeekzError } from '../errors.js';
import type { Done, Job } from './jobs.js';
import type { WorkerMessage, WorkerStart } from './pool.js';

// Set by the pool when a signal stops it: long jobs look at it between slices of native work.
const stopFlag = new Int32Array((workerData as WorkerStart).stop);

// The xz codec loads liblzma; only workers that get xz jobs pay for it.
let xzJobs: typeof import('../xz/block-codec.js') | undefined;
let zstdJobs: typeof import('../zstd/codec.js') | undefined;

async function runJob(job: Job): Promise<Done<unknown>> {
  // Deflate jobs always run in process (workers/in-process.ts).
  if (job.kind === 'deflate') throw new Error('seekz: a deflate job reached a worker thread');
  if (job.kind === 'zstd-encode-run' || job.kind === 'zstd-decode' || job.kind === 'zstd-decode-batch') {
    zstdJobs ??= await import('../zstd/codec.js');
    return zstdJobs.runZstdJob(job);
  }
  xzJobs ??= await import('../xz/block-codec.js');
  return xzJobs.runXzJob(job, stopFlag);
}

parentPort!.on('message', async ({ id, job }: { id: number; job: Job }) => {
  try {
    const { reply, transfer } = await runJob(job);
    parentPort!.postMessage({ id, reply } satisfies WorkerMessage, transfer);
  } catch (error) {
    const code = error instanceof SeekzError ? error.code : undefined;
    parentPort!.postMessage({ id, error: { message: (error as Error).message, code } } satisfies WorkerMessage);
  }
});
