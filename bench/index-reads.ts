/**
 * Child process of the bench's index section: seekz's cold random reads (libraryReads) in a
 * process of their own, so that the peak RSS reported is theirs. Prints the times, the sha256
 * of the bytes and the peak RSS as JSON. Usage: node index-reads.js FILE.gz FILE.gz.idx, with
 * the offsets in SEEKZ_BENCH_OFFSETS.
 */
import { readFileSync } from 'node:fs';
import { parseIndex } from '../src/gzip/index/formats.js';
import { libraryReads } from './bench-index.js';

const [gz, indexFile] = process.argv.slice(2) as [string, string];
const offsets = JSON.parse(process.env.SEEKZ_BENCH_OFFSETS!) as number[];
const reads = await libraryReads(gz, parseIndex(readFileSync(indexFile)), offsets);
process.stdout.write(JSON.stringify({ ...reads, maxRss: process.resourceUsage().maxRSS * 1024 }));
