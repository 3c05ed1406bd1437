{
  "targets": [
    {
      "target_name": "seekz_xz",
      "sources": ["native/xz/seekz_xz.c"],
      "libraries": ["-llzma"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "seekz_zlib",
      "sources": ["native/zlib/seekz_zlib.c"],
      "libraries": ["-lz", "-ldeflate"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "seekz_zstd",
      "sources": ["native/zstd/zstd.c", "native/zstd/xxh64.c"],
      "libraries": ["-lzstd"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "seekz_io",
      "sources": ["native/io/seekz_io.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
