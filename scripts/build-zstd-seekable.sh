#!/usr/bin/env bash
# Builds zstd's own seekable-format examples (contrib/seekable_format in Debian's zstd source
# package) once, and prints the folder holding `seekable_compression` and
# `seekable_decompression`: the reference implementation that judges seekzstd's files in
# test/zstd-interop.test.ts. Cached under ${XDG_CACHE_HOME:-~/.cache}/seekz, keyed by the
# version of libzstd it links against.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
version=$(dpkg-query -W -f='${Version}' libzstd-dev)  # the cache follows the library it links
cache="${XDG_CACHE_HOME:-$HOME/.cache}/seekz/zstd-seekable-$version"
if [ -x "$cache/seekable_compression" ] && [ -x "$cache/seekable_decompression" ]; then
  echo "$cache"
  exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! ls "$cache"/*zstd_*.dsc >/dev/null 2>&1; then
  # deb-src entries made from the deb ones already configured (same mirror, same suites).
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    [ "$(id -u)" = 0 ] || { echo "seekz: add a deb-src entry for bookworm main and run: apt-get source --download-only zstd" >&2; exit 1; }
    # bookworm main only: the security suite's source of libzstd is not always on the mirror.
    awk -v RS= 'NR == 1' /etc/apt/sources.list.d/debian.sources |
      sed -e 's/^Types: deb$/Types: deb-src/' -e 's/^Suites: .*/Suites: bookworm/' -e 's/^Components: .*/Components: main/' \
      >/etc/apt/sources.list.d/seekz-deb-src.sources
    apt-get update -qq >&2
  fi
  (cd "$cache" && apt-get source --download-only zstd >&2)
fi
command -v dpkg-source >/dev/null || apt-get install -y -qq dpkg-dev >&2
(cd "$work" && dpkg-source --no-check -x "$(ls "$cache"/*zstd_*.dsc | head -1)" src >&2)
s="$work/src"
seek="$s/contrib/seekable_format"
for tool in compression decompression; do
  [ "$tool" = compression ] && lib=zstdseek_compress.c || lib=zstdseek_decompress.c
  cc -O2 -o "$work/seekable_$tool" -I "$s/lib" -I "$s/lib/common" -I "$seek" \
    "$seek/examples/seekable_$tool.c" "$seek/$lib" "$s/lib/common/xxhash.c" -lzstd >&2
done
mv "$work/seekable_compression" "$work/seekable_decompression" "$cache/"
echo "$cache"
