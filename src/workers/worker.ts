import { parentPort } from 'node:worker_threads';
import { SeekzError } from '../errors.js';
import { runDeflate, type Done, type Job } from './jobs.js';
import type { WorkerMessage } from './pool.js';

// The xz codec loads liblzma; only workers that get xz jobs pay for it.
let xzJobs: typeof import('../xz/block-codec.js') | undefined;

async function runJob(job: Job): Promise<Done<unknown>> {
  if (job.kind === 'deflate') return runDeflate(job);
  xzJobs ??= await import('../xz/block-codec.js');
  return job.kind === 'xz-encode' ? xzJobs.runXzEncode(job) : xzJobs.runXzDecode(job);
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
