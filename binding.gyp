{
  "targets": [
    {
      "target_name": "seekz_zstd",
      "sources": ["native/zstd/zstd.c"],
      "libraries": ["-lzstd"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
