// Deterministic generator of a directory tree full of filesystem edge cases,
// used to round-trip trees through ferry and compare them (tree_compare.h).
//
// Layout (all relative to root):
//   files/     empty files, sizes 1/4095/4096/4097, min/avg/max chunk and
//              +-1, several MiB random, compressible, all-zero, two identical
//              files (dedup), small sparse file, sparse_huge (5 GiB + 123)
//   names/     255-byte names, '\n', '\t', spaces, invalid UTF-8, ...
//   deep/      nested dirs; the leaf's path relative to root is exactly
//              PATH_MAX - 1 - strlen(abs root) - 1 - deep_path_slack bytes
//              long (or deep_path_len), i.e. "root/leaf" stays below
//              PATH_MAX by the slack
//   big/       huge_dir_entries empty files f000000, f000001, ...
//   special/   char/block devices, fifo, unix socket
//   links/     dangling, absolute, to-dir, self-loop, 4000-byte target
//   hardlinks/ + hardlink_top: one file with 3 names in 3 dirs, etc.
//   modes/     setuid, setgid, sticky, 0600, 0444, 0000, ...
//   own/       assorted uid:gid (files, dir, symlink)
//   xattrs/    user.* (binary, empty, many), trusted.*, security.capability
//   times/     pre-1970, epoch, post-2038, whole-second mtimes
// Every entry (symlinks included) gets a seed-derived atime/mtime with
// nanoseconds; directories are stamped last, deepest first. The same options
// always produce the same tree (inode numbers and ctimes aside).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ferry::testing {

struct GenOptions {
  bool huge_dir = true;             // create big/ at all
  size_t huge_dir_entries = 100000;
  bool sparse_huge = true;          // files/sparse_huge, 5 GiB + 123 bytes
  bool devices = true;              // mknod char/block devices; needs root
  bool ownership = true;            // chown to assorted uid/gid; needs root
  bool trusted_xattrs = true;       // trusted.* and security.capability;
                                    // needs root (CAP_SYS_ADMIN, CAP_SETFCAP)
  uint64_t seed = 1;                // drives all contents and timestamps
  size_t min_chunk = 32 * 1024;
  size_t avg_chunk = 128 * 1024;
  size_t max_chunk = 512 * 1024;
  // Bytes kept free under PATH_MAX for the deep path, so the tree can be
  // copied/mounted to a root path up to this many bytes longer and still
  // have absolute paths below PATH_MAX.
  size_t deep_path_slack = 64;
  // If non-zero, the exact length of the deep leaf's path relative to root,
  // instead of the root-dependent value above (trees generated at roots of
  // different lengths then compare equal). At most PATH_MAX - 1.
  size_t deep_path_len = 0;
};

// Creates `root` (which must not exist, or be an empty directory) and fills
// it as described above. Throws std::runtime_error on any failure. Needs
// root: besides the options marked above, the tree has mode-0000 dirs and
// files that only root can walk and read back (generation and comparison).
// Takes ~3-4 s with default options (mostly the 100,000-entry dir) and uses
// ~20 MB of disk (sparse_huge allocates ~80 KiB).
void GenerateEdgeCaseTree(const std::string& root, const GenOptions& opt);

}  // namespace ferry::testing
