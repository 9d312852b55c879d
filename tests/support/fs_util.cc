#include "tests/support/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace ferry::testing {

ScopedFd::~ScopedFd() { Reset(); }

ScopedFd& ScopedFd::operator=(ScopedFd&& other) noexcept {
  if (this != &other) Reset(other.Release());
  return *this;
}

int ScopedFd::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void ScopedFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void ThrowErrno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

long CheckSys(long rc, const std::string& what) {
  if (rc < 0) ThrowErrno(what);
  return rc;
}

ScopedFd OpenDirAt(int dirfd, const std::string& name) {
  int fd = ::openat(dirfd, name.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) ThrowErrno("open directory " + EscapeBytes(name));
  return ScopedFd(fd);
}

bool ListDirectoryEntries(int dirfd, std::vector<DirEntry>* entries) {
  entries->clear();
  // Open "." afresh so the caller's descriptor offset is untouched.
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return false;
  }
  for (;;) {
    errno = 0;
    struct dirent* ent = ::readdir(dir);
    if (ent == nullptr) break;
    if (std::strcmp(ent->d_name, ".") == 0 ||
        std::strcmp(ent->d_name, "..") == 0) {
      continue;
    }
    entries->push_back({ent->d_name, ent->d_type});
  }
  int saved = errno;
  ::closedir(dir);
  if (saved != 0) {
    errno = saved;
    return false;
  }
  std::sort(entries->begin(), entries->end(),
            [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return true;
}

bool ListDirectory(int dirfd, std::vector<std::string>* names) {
  std::vector<DirEntry> entries;
  if (!ListDirectoryEntries(dirfd, &entries)) return false;
  names->clear();
  names->reserve(entries.size());
  for (DirEntry& e : entries) names->push_back(std::move(e.name));
  return true;
}

std::string ProcFdPath(int dirfd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
}

std::string EscapeBytes(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\\' || c == '"') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  return out;
}

namespace {

// Empties the directory open as `dirfd`; `where` is used in error messages.
void RemoveContents(int dirfd, const std::string& where) {
  std::vector<std::string> names;
  if (!ListDirectory(dirfd, &names)) ThrowErrno("list " + where);
  bool dir_made_writable = false;
  for (const std::string& name : names) {
    if (::unlinkat(dirfd, name.c_str(), 0) == 0) continue;
    if (errno == EACCES && !dir_made_writable) {
      // Non-root and a read-only directory: make it writable and retry.
      dir_made_writable = true;
      ::fchmod(dirfd, 0700);
      if (::unlinkat(dirfd, name.c_str(), 0) == 0) continue;
    }
    if (errno != EISDIR && errno != EPERM) {
      ThrowErrno("unlink " + where + "/" + EscapeBytes(name));
    }
    int fd = ::openat(dirfd, name.c_str(),
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
      ::fchmodat(dirfd, name.c_str(), 0700, 0);
      fd = ::openat(dirfd, name.c_str(),
                    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) ThrowErrno("open " + where + "/" + EscapeBytes(name));
    ScopedFd child(fd);
    RemoveContents(child.get(), where + "/" + EscapeBytes(name));
    child.Reset();
    CheckSys(::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR),
             "rmdir " + where + "/" + EscapeBytes(name));
  }
}

}  // namespace

void RemoveTree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    ThrowErrno("lstat " + path);
  }
  if (!S_ISDIR(st.st_mode)) {
    CheckSys(::unlink(path.c_str()), "unlink " + path);
    return;
  }
  {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
      ::chmod(path.c_str(), 0700);
      fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) ThrowErrno("open " + path);
    ScopedFd dir(fd);
    RemoveContents(dir.get(), path);
  }
  CheckSys(::rmdir(path.c_str()), "rmdir " + path);
}

ScopedTempDir::ScopedTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  std::string templ = base + "/" + prefix + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) ThrowErrno("mkdtemp " + templ);
  path_ = buf.data();
}

ScopedTempDir::~ScopedTempDir() {
  try {
    RemoveTree(path_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: cleanup of %s failed: %s\n", path_.c_str(),
                 e.what());
  }
}

}  // namespace ferry::testing
