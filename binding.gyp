{
  "targets": [
    {
      "target_name": "seekz_zlib",
      "sources": ["native/zlib/seekz_zlib.c"],
      "libraries": ["-lz"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
