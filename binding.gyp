{
  "targets": [
    {
      "target_name": "seekz_xz",
      "sources": ["native/xz/seekz_xz.c"],
      "libraries": ["-llzma"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
