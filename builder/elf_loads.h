// What a dynamically linked ELF program asks the loader for: its
// interpreter, its DT_NEEDED libraries and their search path. The builder
// records, per program file, which files of the image those are
// (the LOADS section of the image, docs/format.md), so that the first read
// of a program fetches them before the loader asks, one round trip instead
// of one per library. Parsed with libelf.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "builder/tree.h"

namespace ferry::builder {

struct ElfLoads {
  std::string interp;                 // PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2
  std::vector<std::string> needed;    // DT_NEEDED, in order
  std::vector<std::string> runpath;   // DT_RUNPATH or DT_RPATH entries, $ORIGIN unexpanded
  // The file ranges (offset, length) the loader touches as soon as it maps
  // the file, before any of its code runs: the first PT_LOAD segment when
  // it is not executable (the headers and the dynamic linking tables: symbol
  // hash, symbols, strings, relocations), and every writable PT_LOAD
  // segment (relocated at once; the kernel and ld.so also zero the tail of
  // its last file page for .bss). In file order.
  std::vector<std::pair<uint64_t, uint64_t>> early;
  // Absolute paths spelled out in its read-only data (.rodata), in order,
  // each once: the files a program or library opens by a fixed name when it
  // runs (glibc: /etc/nsswitch.conf, /etc/localtime, its gconv module cache,
  // /usr/lib/locale). At most kMaxNamed.
  std::vector<std::string> named;
};

inline constexpr size_t kMaxNamed = 256;
// A named regular file is recorded if at most this large; a named directory
// if its subtree holds at most kMaxNamedDirFiles regular files of at most
// kMaxNamedDirBytes in all (a locale's files, not a time zone database).
inline constexpr uint64_t kMaxNamedFileBytes = 64u << 10;
inline constexpr uint64_t kMaxNamedDirBytes = 512u << 10;
inline constexpr size_t kMaxNamedDirFiles = 16;

// Files larger than this are not inspected.
inline constexpr uint64_t kMaxElfInspectBytes = 64u << 20;

// Reads the loader's view of an ELF file from its bytes. Anything that is
// not a dynamically linked ELF program or library, or that is malformed,
// gives nullptr: this is a hint, never an error.
std::unique_ptr<ElfLoads> ReadElfLoads(std::vector<uint8_t> bytes);

// Keeps a file's bytes as a source reads them (in order, from offset 0) for
// as long as they may be an ELF file of at most kMaxElfInspectBytes, so
// that each file is read once: directory and tar sources both feed it.
class ElfCollector {
 public:
  explicit ElfCollector(uint64_t size) : size_(size), keep_(size <= kMaxElfInspectBytes) {}
  void Add(uint64_t offset, std::span<const uint8_t> data);
  // What the file loads, if all of it came in and it is such a program.
  std::unique_ptr<ElfLoads> Finish();

 private:
  uint64_t size_;
  bool keep_;
  std::vector<uint8_t> bytes_;
};

// At most this many files are recorded for one program.
inline constexpr size_t kMaxLoads = 64;

// The regular files of the tree under `root` that the loader opens when the
// file at absolute path `path` (with `loads`) runs, in the order it opens
// them: the interpreter and /etc/ld.so.cache, then each library where the
// loader finds it (RUNPATH/RPATH with $ORIGIN, then the standard library
// directories), then the libraries those need, each once; then the files
// the program and those libraries name (ElfLoads::named, within the size
// bounds above), in the same order. Symbolic links are followed inside the
// tree; what cannot be found is left out.
std::vector<const TreeNode*> ResolveLoads(const TreeNode& root, const std::string& path,
                                          const ElfLoads& loads);

}  // namespace ferry::builder
