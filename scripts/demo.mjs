// `npm run demo`: the main job on a built-in example. Makes a 256 MiB GPT disk image, compresses
// it with its /boot partition editable, changes the kernel command line inside the .gz in place,
// and checks the result with gzip (when installed) and with Node's own gunzip.
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import { BOOT_ENTRY_TEXT, makeDiskImage } from '../dist/bench/disk-image.js';

const dir = new URL('../demo-output/', import.meta.url).pathname;
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const cli = (name, args) => {
  console.log(`$ ${name} ${args.join(' ')}`);
  execFileSync(process.execPath, [new URL(`../dist/bin/${name}.js`, import.meta.url).pathname, ...args], { cwd: dir, stdio: 'inherit' });
};

console.log('making a 256 MiB GPT disk image (boot + root partitions, mostly sparse)…');
const plan = await makeDiskImage(`${dir}disk.img`, { size: 256 * 2 ** 20, seed: 1 });

cli('partial-deflate', ['-v', '--store-partition', '1', 'disk.img', 'disk.img.gz']);
cli('seekz', ['info', 'disk.img.gz']);
cli('seekz', ['extract', 'disk.img.gz', '--partition', '1', '-o', 'boot.img']);

console.log('editing the kernel command line in boot.img (console=ttyS0 -> console=ttyAMA0)…');
const boot = readFileSync(`${dir}boot.img`);
const at = boot.indexOf('console=ttyS0');
const edited = BOOT_ENTRY_TEXT.replace('console=ttyS0', 'console=ttyAMA0');
boot.write(edited, plan.bootEntryOffset - plan.boot.start, 'latin1');
if (at !== plan.bootEntryOffset - plan.boot.start + BOOT_ENTRY_TEXT.indexOf('console=ttyS0')) throw new Error('demo: boot entry not where expected');
writeFileSync(`${dir}boot.img`, boot);

cli('seekz', ['patch', '-v', 'disk.img.gz', '--from', 'boot.img', '--partition', '1']);

// Check: the decompressed image is the original with exactly the edited bytes changed.
const expected = readFileSync(`${dir}disk.img`);
expected.write(edited, plan.bootEntryOffset, 'latin1');
const actual = createHash('sha256');
let length = 0;
for await (const chunk of createReadStream(`${dir}disk.img.gz`).pipe(createGunzip())) {
  actual.update(chunk);
  length += chunk.length;
}
const same = actual.digest('hex') === createHash('sha256').update(expected).digest('hex') && length === expected.length;
const gzip = spawnSync('gzip', ['-t', `${dir}disk.img.gz`]);
console.log(`gzip -t: ${gzip.error ? 'gzip not installed' : gzip.status === 0 ? 'ok' : 'FAILED'}`);
console.log(`gunzip content equals the original with only the edit applied: ${same ? 'yes' : 'NO'}`);
console.log(`${statSync(`${dir}disk.img`).size} bytes -> ${statSync(`${dir}disk.img.gz`).size} bytes; output in demo-output/`);
if (!same || (gzip.status !== 0 && !gzip.error)) process.exit(1);
