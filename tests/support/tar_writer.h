// Writes small tar archives for tests, including hostile ones that `tar`
// itself would refuse to create (../ paths, absolute paths, odd sizes).
#pragma once

#include <string>
#include <vector>

namespace ferry::testing {

struct TarEntry {
  enum Kind { kFile, kDir, kSymlink, kHardlink } kind = kFile;
  std::string path;
  std::string data;         // file contents
  std::string target;       // symlink or hard link target
  unsigned mode = 0644;
};

// A raw ustar header block for `name` claiming `size` bytes (base-256 size
// field when it does not fit in octal), with a valid checksum: for archives
// whose header lies about what follows.
std::string RawTarHeader(const std::string& name, unsigned long long size, char type = '0');

// Writes `entries` to `path` as a pax tar, compressed with `filter`
// ("none", "gzip" or "zstd"). Throws std::runtime_error on failure.
void WriteTar(const std::string& path, const std::vector<TarEntry>& entries,
              const std::string& filter = "none");

}  // namespace ferry::testing
