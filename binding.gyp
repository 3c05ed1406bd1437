{
  "targets": [
    {
      "target_name": "seekz_zlib",
      "sources": ["native/zlib/seekz_zlib.c"],
      "libraries": ["-lz", "-ldeflate"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
