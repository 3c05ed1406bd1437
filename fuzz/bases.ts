/**
 * The good files every case starts from, made at the start of a run with the real tools: our
 * writers (partial-deflate with and without a stored range, seekxz with small blocks), gzip,
 * pigz, a two-member file, bgzip, xz -T2 with several blocks, seekzstd and a two-frame zstd file, and sidecar indexes in every
 * format (seekz's three and gztool's own). Small (tens to hundreds of KiB) so a case is cheap;
 * the sizes come from the seed, so the same seed gives the same files.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { distCli } from './run.js';
import { createRandom, diskLikeContent } from './random.js';

const exec = promisify(execFile);

export type IndexKind = 'seekz' | 'gzidx' | 'gztool' | 'gztool-native';

export interface Base {
  name: string;
  format: 'gz' | 'xz' | 'zst';
  path: string;
  bytes: Uint8Array;
  /** The uncompressed bytes: the truth for every read of the good file. */
  original: Uint8Array;
  /** End offset of each gzip member, where known (trailer forgeries aim at them). */
  members: number[];
}

export interface Sidecar {
  kind: IndexKind;
  /** The gzip base it indexes. */
  host: string;
  bytes: Uint8Array;
}

export interface Bases {
  files: Base[];
  sidecars: Sidecar[];
}

/** Where a sidecar of each kind must sit beside FILE.gz for seekz to find it. */
export function sidecarName(kind: IndexKind, gzName: string): string {
  if (kind === 'seekz') return `${gzName}.idx`;
  if (kind === 'gzidx') return `${gzName}.gzidx`;
  return `${gzName.replace(/\.gz$/, '')}.gzi`;
}

const KIB = 1024;
export const INDEX_HOSTS = ['gzip-6', 'multi'];

async function sh(command: string, cwd: string): Promise<void> {
  await exec('sh', ['-c', command], { cwd, maxBuffer: 1 << 26 });
}

export async function buildBases(dir: string, seed: number): Promise<Bases> {
  const random = createRandom(seed, -1);
  const a = diskLikeContent(random.between(64, 256) * KIB, random);
  const b = diskLikeContent(random.between(16, 64) * KIB, random);
  writeFileSync(join(dir, 'a.img'), a);
  writeFileSync(join(dir, 'b.img'), b);
  const storeStart = random.between(1, 8) * 4 * KIB;
  const storeEnd = Math.min(a.length, storeStart + random.between(8, 48) * 4 * KIB);
  const node = process.execPath;
  const pd = `${node} ${distCli('partial-deflate')} -q -T 1 --chunk-size 16KiB`;
  const commands: Record<string, string> = {
    'ours.gz': `${pd} a.img ours.gz`,
    'ours-stored.gz': `${pd} a.img ours-stored.gz ${storeStart} ${storeEnd}`,
    'gzip-6.gz': 'gzip -6 -c a.img > gzip-6.gz',
    'pigz.gz': 'pigz -6 -p 2 -b 32 -c a.img > pigz.gz',
    'multi.gz': 'gzip -6 -c a.img > multi-a.gz && gzip -1 -c b.img > multi-b.gz && cat multi-a.gz multi-b.gz > multi.gz',
    'bgzip.gz': 'bgzip -c a.img > bgzip.gz',
    'seekxz.xz': `${node} ${distCli('seekxz')} -q -T 1 --block-size 32KiB -c a.img > seekxz.xz`,
    'xz-T2.xz': 'xz -T2 -6 --block-size=48KiB -c a.img > xz-T2.xz',
    'seekzstd.zst': `${node} ${distCli('seekzstd')} -q -T 1 --frame-size 32KiB -c a.img > seekzstd.zst`,
    'zstd-frames.zst': 'zstd -q -3 -c a.img > zstd-frames.zst && zstd -q -19 -c b.img >> zstd-frames.zst',
  };
  await Promise.all(Object.values(commands).map((command) => sh(command, dir)));
  const files: Base[] = Object.keys(commands).map((file) => {
    const bytes = new Uint8Array(readFileSync(join(dir, file)));
    const name = file.replace(/\.(gz|xz|zst)$/, '');
    const members = name === 'multi' ? [readFileSync(join(dir, 'multi-a.gz')).length, bytes.length] : [bytes.length];
    const original = name === 'multi' || name === 'zstd-frames' ? new Uint8Array(Buffer.concat([a, b])) : a;
    return { name, format: file.endsWith('.xz') ? 'xz' : file.endsWith('.zst') ? 'zst' : 'gz', path: join(dir, file), bytes, original, members };
  });

  const seekz = `${node} ${distCli('seekz')}`;
  const sidecarJobs: Promise<Sidecar>[] = [];
  for (const host of INDEX_HOSTS) {
    for (const kind of ['seekz', 'gzidx', 'gztool', 'gztool-native'] as IndexKind[]) {
      const out = `${host}.${kind}.index`;
      const command =
        kind === 'gztool-native' ? `gztool -v 0 -f -i -I ${out} ${host}.gz` : `${seekz} index -q -f --spacing 32KiB --format ${kind} -o ${out} ${host}.gz`;
      sidecarJobs.push(sh(command, dir).then(() => ({ kind, host, bytes: new Uint8Array(readFileSync(join(dir, out))) })));
    }
  }
  return { files, sidecars: await Promise.all(sidecarJobs) };
}
