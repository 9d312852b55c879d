// Deep comparison of two directory trees for round-trip tests.
//
// The walk uses directory fds only (works past PATH_MAX), never follows
// symlinks, and visits names in bytewise order, so its output is
// deterministic. Run as root to read everything (0000 modes, trusted.*).
#pragma once

#include <string>
#include <vector>

namespace ferry::testing {

struct CompareOptions {
  bool compare_atime = false;
  bool compare_ctime = false;
  bool compare_dir_size = false;   // st_size of directories
  bool compare_dir_nlink = true;   // st_nlink of directories
  bool compare_sockets = true;     // false: ignore sockets entirely
  bool compare_ownership = true;   // uid and gid
};

// Maximum number of differences CompareTrees lists before summarising.
inline constexpr size_t kMaxReportedDifferences = 100;

// Compares the tree at `actual` against the one at `expected`. Returns one
// line per difference, empty when the trees are equal. Each line starts with
// the quoted, escaped path relative to the roots ("." is the root itself),
// e.g.  "files/a\nb": mtime: expected 1.000000001, actual 1.000000002
// Checked: missing/extra entries, file type, mode (07777), uid/gid, size
// (directories only if asked), mtime (ns), nlink, hard-link partition (names
// sharing an inode), rdev, symlink target, every xattr name and value, and
// file contents (XXH3-128). Unreadable entries are reported, not thrown.
// After kMaxReportedDifferences lines a final "... N more differences" line
// is added.
std::vector<std::string> CompareTrees(const std::string& expected,
                                      const std::string& actual,
                                      const CompareOptions& opt = {});

// XXH3-128 of the file contents at `path` as 32 lowercase hex digits
// (canonical big-endian form). Holes are hashed as zeros without reading
// them. Throws std::runtime_error if the file cannot be read.
std::string HashFileContents(const std::string& path);

// The quoting used in CompareTrees lines: '"' + EscapeBytes(rel) + '"'.
std::string QuotePath(const std::string& rel);

}  // namespace ferry::testing
