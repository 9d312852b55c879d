// Small POSIX helpers shared by the test-support tree generator and comparer.
//
// Everything here works relative to directory file descriptors, so it copes
// with paths longer than PATH_MAX. Functions throw std::runtime_error (with
// strerror text) on failure unless documented otherwise.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ferry::testing {

// Owns a file descriptor and closes it on destruction. Move-only.
class ScopedFd {
 public:
  ScopedFd() = default;
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd();
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.Release()) {}
  ScopedFd& operator=(ScopedFd&& other) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership and returns the descriptor.
  int Release();
  // Closes the owned descriptor (if any) and takes ownership of `fd`.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Throws std::runtime_error("<what>: <strerror(errno)>").
[[noreturn]] void ThrowErrno(const std::string& what);

// Returns `rc` when it is >= 0, otherwise calls ThrowErrno(what).
long CheckSys(long rc, const std::string& what);

// Opens directory `name` relative to `dirfd` without following a final
// symlink. Throws on failure.
ScopedFd OpenDirAt(int dirfd, const std::string& name);

struct DirEntry {
  std::string name;
  unsigned char type;  // DT_* from readdir; may be DT_UNKNOWN
};

// Reads the entries of the directory open as `dirfd` (excluding "." and
// ".."), sorted bytewise by name. The caller's descriptor offset is not
// touched. Returns false and leaves errno set on failure.
bool ListDirectoryEntries(int dirfd, std::vector<DirEntry>* entries);

// As ListDirectoryEntries, names only.
bool ListDirectory(int dirfd, std::vector<std::string>* names);

// "/proc/self/fd/<dirfd>/<name>": a short path naming `name` inside the
// directory `dirfd`, usable with path-only syscalls (l*xattr, bind) even when
// the real path is longer than PATH_MAX. The final component is not followed
// by l* calls.
std::string ProcFdPath(int dirfd, const std::string& name);

// Human-readable, single-line form of arbitrary bytes: printable ASCII stays
// as is; '\\' and '"' get a backslash; \n, \t and other bytes become \n, \t,
// \xHH.
std::string EscapeBytes(std::string_view bytes);

// Deletes `path` recursively; a missing path is not an error. Copes with
// trees deeper than PATH_MAX and entries whose mode denies access.
void RemoveTree(const std::string& path);

// A fresh directory under $TMPDIR (or /tmp), deleted with RemoveTree on
// destruction (errors during cleanup are swallowed).
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix = "ferry-test");
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace ferry::testing
