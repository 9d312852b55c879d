#include "tests/support/tree_compare.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "tests/support/fs_util.h"

namespace ferry::testing {
namespace {

constexpr size_t kReadSize = 1 << 20;

struct StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

// Hashes the contents of `fd` into `hex` (canonical hex). Returns false with `err` set on a
// read error. Uses SEEK_DATA/SEEK_HOLE where supported to skip reading holes.
// `size` is the file size as stat'ed by the caller (reading goes to EOF).
bool HashFd(int fd, off_t size, std::string* hex, std::string* err) {
  std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  if (!state || XXH3_128bits_reset(state.get()) != XXH_OK) {
    *err = "XXH3 state allocation failed";
    return false;
  }
  std::vector<char> buf(kReadSize);
  std::vector<char> zeros;
  bool use_seek = true;
  off_t pos = 0;
  off_t data_end = 0;  // end of the data region containing pos, if known
  for (;;) {
    if (use_seek && pos < size && pos >= data_end) {
      off_t data = ::lseek(fd, pos, SEEK_DATA);
      if (data < 0 && errno == ENXIO) data = size;
      if (data < 0) {
        use_seek = false;
      } else {
        data = std::min(data, size);
        if (data > pos && zeros.empty()) zeros.assign(kReadSize, '\0');
        while (pos < data) {
          size_t n = static_cast<size_t>(
              std::min<off_t>(data - pos, static_cast<off_t>(kReadSize)));
          XXH3_128bits_update(state.get(), zeros.data(), n);
          pos += static_cast<off_t>(n);
        }
        if (pos < size) {
          data_end = ::lseek(fd, pos, SEEK_HOLE);
          if (data_end < 0) use_seek = false;
        }
      }
    }
    size_t want = kReadSize;
    if (use_seek && pos < data_end) {
      want = static_cast<size_t>(
          std::min<off_t>(data_end - pos, static_cast<off_t>(kReadSize)));
    }
    ssize_t n = ::pread(fd, buf.data(), want, pos);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *err = std::string("read: ") + std::strerror(errno);
      return false;
    }
    if (n == 0) break;
    XXH3_128bits_update(state.get(), buf.data(), static_cast<size_t>(n));
    pos += n;
  }
  XXH128_canonical_t canon;
  XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(state.get()));
  static constexpr char kHex[] = "0123456789abcdef";
  hex->clear();
  for (unsigned char b : canon.digest) {
    *hex += kHex[b >> 4];
    *hex += kHex[b & 0xf];
  }
  return true;
}

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "regular file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "char device";
    case S_IFBLK: return "block device";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    default: return "unknown type";
  }
}

std::string Octal(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0%o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string Time(const struct timespec& ts) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%lld.%09ld",
                static_cast<long long>(ts.tv_sec), ts.tv_nsec);
  return buf;
}

std::string Dev(dev_t dev) {
  return std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
}

using XattrMap = std::map<std::string, std::string>;

// Reads all xattrs of `name` in `dirfd` (symlinks not followed).
bool ReadXattrs(int dirfd, const std::string& name, XattrMap* out,
                std::string* err) {
  out->clear();
  const std::string path = ProcFdPath(dirfd, name);
  std::vector<char> list;
  for (;;) {
    ssize_t n = ::llistxattr(path.c_str(), nullptr, 0);
    if (n < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) return true;
    if (n >= 0) {
      list.resize(static_cast<size_t>(n));
      n = n == 0 ? 0 : ::llistxattr(path.c_str(), list.data(), list.size());
    }
    if (n >= 0) {
      list.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE) {
      *err = std::string("llistxattr: ") + std::strerror(errno);
      return false;
    }
  }
  for (size_t i = 0; i < list.size();) {
    std::string key(list.data() + i);
    i += key.size() + 1;
    std::string value;
    for (;;) {
      ssize_t n = ::lgetxattr(path.c_str(), key.c_str(), nullptr, 0);
      if (n >= 0) {
        value.resize(static_cast<size_t>(n));
        n = n == 0 ? 0
                   : ::lgetxattr(path.c_str(), key.c_str(), value.data(),
                                 value.size());
      }
      if (n >= 0) {
        value.resize(static_cast<size_t>(n));
        break;
      }
      if (errno != ERANGE) {
        *err = "lgetxattr " + key + ": " + std::strerror(errno);
        return false;
      }
    }
    (*out)[key] = std::move(value);
  }
  return true;
}

bool ReadLink(int dirfd, const std::string& name, std::string* target) {
  std::vector<char> buf(256);
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
    if (n < 0) return false;
    if (static_cast<size_t>(n) < buf.size()) {
      target->assign(buf.data(), static_cast<size_t>(n));
      return true;
    }
    buf.resize(buf.size() * 2);
  }
}

class Comparer {
 public:
  explicit Comparer(const CompareOptions& opt) : opt_(opt) {}

  std::vector<std::string> Run(const std::string& expected,
                               const std::string& actual) {
    ScopedFd e(::open(expected.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ScopedFd a(::open(actual.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!e.valid()) Add(".", "cannot open expected root " + expected);
    if (!a.valid()) Add(".", "cannot open actual root " + actual);
    if (e.valid() && a.valid()) CompareEntry(e.get(), a.get(), ".", ".");
    if (dropped_ > 0) {
      diffs_.push_back("... " + std::to_string(dropped_) + " more differences");
    }
    return std::move(diffs_);
  }

 private:
  void Add(const std::string& rel, const std::string& what) {
    if (diffs_.size() >= kMaxReportedDifferences) {
      ++dropped_;
      return;
    }
    diffs_.push_back(QuotePath(rel) + ": " + what);
  }
  template <typename T>
  void Field(const std::string& rel, const char* field, const T& e,
             const T& a) {
    if (e != a) Add(rel, std::string(field) + ": expected " + e + ", actual " + a);
  }
  static std::string Errno(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
  }

  void CompareDir(int e_dir, int a_dir, const std::string& rel) {
    std::vector<std::string> e_names, a_names;
    if (!ListDirectory(e_dir, &e_names)) return Add(rel, Errno("list expected"));
    if (!ListDirectory(a_dir, &a_names)) return Add(rel, Errno("list actual"));
    size_t i = 0, j = 0;
    while (i < e_names.size() || j < a_names.size()) {
      int cmp = i == e_names.size()   ? 1
                : j == a_names.size() ? -1
                                      : e_names[i].compare(a_names[j]);
      const std::string& name = cmp <= 0 ? e_names[i] : a_names[j];
      std::string child = rel == "." ? name : rel + "/" + name;
      if (cmp < 0) {
        if (!IsIgnoredSocket(e_dir, name)) Add(child, "missing in actual");
        ++i;
      } else if (cmp > 0) {
        if (!IsIgnoredSocket(a_dir, name)) Add(child, "extra in actual");
        ++j;
      } else {
        CompareEntry(e_dir, a_dir, name, child);
        ++i;
        ++j;
      }
    }
  }

  bool IsIgnoredSocket(int dirfd, const std::string& name) const {
    struct stat st;
    return !opt_.compare_sockets &&
           ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISSOCK(st.st_mode);
  }

  void CompareEntry(int e_dir, int a_dir, const std::string& name,
                    const std::string& rel) {
    struct stat es, as;
    const char* n = name.c_str();
    if (::fstatat(e_dir, n, &es, AT_SYMLINK_NOFOLLOW) != 0) {
      return Add(rel, Errno("stat expected"));
    }
    if (::fstatat(a_dir, n, &as, AT_SYMLINK_NOFOLLOW) != 0) {
      return Add(rel, Errno("stat actual"));
    }
    if ((es.st_mode & S_IFMT) != (as.st_mode & S_IFMT)) {
      return Field(rel, "type", TypeName(es.st_mode), TypeName(as.st_mode));
    }
    if (S_ISSOCK(es.st_mode) && !opt_.compare_sockets) return;
    const bool is_dir = S_ISDIR(es.st_mode);
    Field(rel, "mode", Octal(es.st_mode), Octal(as.st_mode));
    if (opt_.compare_ownership) {
      Field(rel, "uid", std::to_string(es.st_uid), std::to_string(as.st_uid));
      Field(rel, "gid", std::to_string(es.st_gid), std::to_string(as.st_gid));
    }
    if (!is_dir || opt_.compare_dir_size) {
      Field(rel, "size", std::to_string(es.st_size), std::to_string(as.st_size));
    }
    Field(rel, "mtime", Time(es.st_mtim), Time(as.st_mtim));
    if (opt_.compare_atime) Field(rel, "atime", Time(es.st_atim), Time(as.st_atim));
    if (opt_.compare_ctime) Field(rel, "ctime", Time(es.st_ctim), Time(as.st_ctim));
    if (!is_dir || opt_.compare_dir_nlink) {
      Field(rel, "nlink", std::to_string(es.st_nlink),
            std::to_string(as.st_nlink));
    }
    if (!is_dir) {
      const std::string& e_first = e_inodes_.try_emplace(InodeKey(es), rel)
                                       .first->second;
      const std::string& a_first = a_inodes_.try_emplace(InodeKey(as), rel)
                                       .first->second;
      Field(rel, "hard link group (first name of inode)", QuotePath(e_first),
            QuotePath(a_first));
    }
    if (S_ISCHR(es.st_mode) || S_ISBLK(es.st_mode)) {
      Field(rel, "rdev", Dev(es.st_rdev), Dev(as.st_rdev));
    }
    if (S_ISLNK(es.st_mode)) {
      std::string et, at;
      if (!ReadLink(e_dir, name, &et)) return Add(rel, Errno("readlink expected"));
      if (!ReadLink(a_dir, name, &at)) return Add(rel, Errno("readlink actual"));
      Field(rel, "symlink target", QuotePath(et), QuotePath(at));
    }
    CompareXattrs(e_dir, a_dir, name, rel);
    if (S_ISREG(es.st_mode) && es.st_size == as.st_size && es.st_size > 0) {
      CompareContents(e_dir, a_dir, name, rel, es.st_size);
    }
    if (is_dir) {
      ScopedFd ed(::openat(e_dir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!ed.valid()) return Add(rel, Errno("open expected dir"));
      ScopedFd ad(::openat(a_dir, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!ad.valid()) return Add(rel, Errno("open actual dir"));
      CompareDir(ed.get(), ad.get(), rel);
    }
  }

  void CompareXattrs(int e_dir, int a_dir, const std::string& name,
                     const std::string& rel) {
    XattrMap ex, ax;
    std::string err;
    if (!ReadXattrs(e_dir, name, &ex, &err)) return Add(rel, "expected " + err);
    if (!ReadXattrs(a_dir, name, &ax, &err)) return Add(rel, "actual " + err);
    for (const auto& [key, value] : ex) {
      auto it = ax.find(key);
      if (it == ax.end()) {
        Add(rel, "xattr " + QuotePath(key) + ": missing in actual");
      } else if (it->second != value) {
        Add(rel, "xattr " + QuotePath(key) + ": value differs (expected " +
                     std::to_string(value.size()) + " bytes " +
                     QuotePath(value.substr(0, 32)) + ", actual " +
                     std::to_string(it->second.size()) + " bytes " +
                     QuotePath(it->second.substr(0, 32)) + ")");
      }
    }
    for (const auto& [key, value] : ax) {
      if (!ex.count(key)) Add(rel, "xattr " + QuotePath(key) + ": extra in actual");
    }
  }

  void CompareContents(int e_dir, int a_dir, const std::string& name,
                       const std::string& rel, off_t size) {
    const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY;
    ScopedFd ef(::openat(e_dir, name.c_str(), flags));
    if (!ef.valid()) return Add(rel, Errno("open expected"));
    ScopedFd af(::openat(a_dir, name.c_str(), flags));
    if (!af.valid()) return Add(rel, Errno("open actual"));
    std::string eh, ah, err;
    if (!HashFd(ef.get(), size, &eh, &err)) return Add(rel, "expected " + err);
    if (!HashFd(af.get(), size, &ah, &err)) return Add(rel, "actual " + err);
    Field(rel, "content (xxh3-128)", eh, ah);
  }

  static std::string InodeKey(const struct stat& st) {
    return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  }

  const CompareOptions& opt_;
  std::vector<std::string> diffs_;
  size_t dropped_ = 0;
  // Inode -> first relative path seen with it, per tree (non-directories).
  std::unordered_map<std::string, std::string> e_inodes_, a_inodes_;
};

}  // namespace

std::string QuotePath(const std::string& rel) {
  return "\"" + EscapeBytes(rel) + "\"";
}

std::vector<std::string> CompareTrees(const std::string& expected,
                                      const std::string& actual,
                                      const CompareOptions& opt) {
  return Comparer(opt).Run(expected, actual);
}

std::string HashFileContents(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) ThrowErrno("open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) ThrowErrno("fstat " + path);
  std::string hex, err;
  if (!HashFd(fd.get(), st.st_size, &hex, &err)) {
    throw std::runtime_error("hash " + path + ": " + err);
  }
  return hex;
}

}  // namespace ferry::testing
