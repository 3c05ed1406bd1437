#!/usr/bin/env bash
# Makes sure the real tools that the interoperability tests drive are installed. When any is
# missing it installs the Debian packages (as root, which these machines are), or else prints the
# apt-get line and fails: the tests never skip a real tool silently.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

# command -> Debian package
declare -A tools=(
  [gzip]=gzip [pigz]=pigz [xz]=xz-utils [pixz]=pixz [gztool]=gztool [zstd]=zstd [bgzip]=tabix
  [nbdkit]=nbdkit [nbdinfo]=libnbd-bin [nbdcopy]=libnbd-bin [qemu-img]=qemu-utils [qemu-io]=qemu-utils
  [sfdisk]=fdisk [sgdisk]=gdisk [mkfs.ext4]=e2fsprogs [debugfs]=e2fsprogs [e2fsck]=e2fsprogs
  [mkfs.vfat]=dosfstools [mcopy]=mtools [nginx]=nginx [hyperfine]=hyperfine [python3]=python3
  [nbdsh]=python3-libnbd [fusermount3]=fuse3 [nbdfuse]=nbdfuse
  [gcc]=gcc [make]=make
  [pzstd]=zstd [xxhsum]=xxhash [dpkg-source]=dpkg-dev [cc]=gcc
)
missing=()
for command in "${!tools[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${tools[$command]}")
done
# Debian's Python modules load in /usr/bin/python3, not in a pyenv python3 earlier on PATH.
/usr/bin/python3 -c 'import indexed_gzip' 2>/dev/null || missing+=(python3-indexed-gzip)
/usr/bin/python3 -c 'import nbd' 2>/dev/null || missing+=(python3-libnbd)
# The seekz_zlib addon (scripts/ensure-deps.mjs builds it) compiles against Debian's zlib and libdeflate.
[ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
[ -f /usr/include/libdeflate.h ] || missing+=(libdeflate-dev)
# The seekz_xz addon (scripts/ensure-deps.mjs builds it) compiles against Debian's liblzma.
[ -f /usr/include/lzma.h ] || missing+=(liblzma-dev)
# The seekz_zstd addon compiles against Debian's libzstd.
[ -f /usr/include/zstd.h ] || missing+=(libzstd-dev)
# zstd's reference seekable tools, the judge of seekzstd's files: built once from Debian's source.
build_zstd_seekable() { bash "$(dirname "$0")/build-zstd-seekable.sh" >/dev/null; }
[ ${#missing[@]} -eq 0 ] && { build_zstd_seekable; exit 0; }

packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ]; then
  echo "seekz tests need these Debian packages: sudo apt-get install -y $packages" >&2
  exit 1
fi
echo "installing Debian packages the tests use: $packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# nbdfuse is a package of its own from Debian 13 on; Debian 12 ships it in libnbd-bin.
if [[ " $packages " == *" nbdfuse "* ]] && ! apt-cache policy nbdfuse | grep -q 'Candidate: [0-9]'; then
  packages="${packages/nbdfuse/libnbd-bin}"
fi
# shellcheck disable=SC2086
apt-get install -y -qq $packages >/dev/null
build_zstd_seekable
