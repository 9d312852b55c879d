#include "tests/support/tree_gen.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/support/fs_util.h"
#include "tests/support/rng.h"

namespace ferry::testing {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr size_t kWriteBuf = 1 << 20;
constexpr size_t kDeepComponentLen = 100;

class Generator {
 public:
  Generator(int root_fd, size_t root_len, const GenOptions& opt)
      : root_(root_fd), root_len_(root_len), opt_(opt), buf_(kWriteBuf) {}

  void Run() {
    MakeFiles();
    MakeNames();
    MakeDeep();
    if (opt_.huge_dir) MakeBig();
    MakeSpecial();
    MakeLinks();
    MakeHardlinks();
    MakeModes();
    MakeOwnership();
    MakeXattrs();
    MakeTimes();
    Chmod(".", 0755);
    SetXattr(root_, ".", "user.ferry.root", "root dir attr");
    StampTimes(root_, "");
    struct timespec ts[2] = {TimeFor(".", 1), TimeFor(".", 0)};
    CheckSys(::utimensat(root_, ".", ts, AT_SYMLINK_NOFOLLOW), "utimens root");
  }

 private:
  // ---- primitives (paths relative to the root fd unless noted) ----
  void Mkdir(const std::string& rel, mode_t mode = 0755) {
    CheckSys(::mkdirat(root_, rel.c_str(), 0700), "mkdir " + EscapeBytes(rel));
    Chmod(rel, mode);
  }
  void Chmod(const std::string& rel, mode_t mode) {
    CheckSys(::fchmodat(root_, rel.c_str(), mode, 0), "chmod " + rel);
  }
  void Chown(const std::string& rel, uid_t uid, gid_t gid) {
    if (!opt_.ownership) return;
    CheckSys(::fchownat(root_, rel.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW),
             "chown " + rel);
  }
  void Symlink(const std::string& target, const std::string& rel) {
    CheckSys(::symlinkat(target.c_str(), root_, rel.c_str()),
             "symlink " + EscapeBytes(rel));
  }
  void Link(const std::string& from, const std::string& to) {
    CheckSys(::linkat(root_, from.c_str(), root_, to.c_str(), 0),
             "link " + to);
  }
  void SetXattr(int dirfd, const std::string& name, const std::string& key,
                std::string_view value) {
    std::string path = ProcFdPath(dirfd, name);
    CheckSys(::lsetxattr(path.c_str(), key.c_str(), value.data(),
                         value.size(), 0),
             "setxattr " + key + " on " + EscapeBytes(name));
  }
  ScopedFd Create(int dirfd, const std::string& name, mode_t mode) {
    int fd = ::openat(dirfd, name.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) ThrowErrno("create " + EscapeBytes(name));
    ScopedFd owned(fd);
    CheckSys(::fchmod(fd, mode), "fchmod " + EscapeBytes(name));
    return owned;
  }
  void WriteAll(int fd, const char* data, size_t n, uint64_t off) {
    while (n > 0) {
      ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(off));
      if (w < 0 && errno == EINTR) continue;
      CheckSys(w, "pwrite");
      data += w;
      n -= static_cast<size_t>(w);
      off += static_cast<uint64_t>(w);
    }
  }
  void WriteData(const std::string& rel, std::string_view data,
                 mode_t mode = 0644, int dirfd = -1) {
    ScopedFd fd = Create(dirfd < 0 ? root_ : dirfd, rel, mode);
    WriteAll(fd.get(), data.data(), data.size(), 0);
  }
  // Pseudo-random contents; equal `stream` gives equal bytes.
  void WriteRandom(const std::string& rel, uint64_t size, uint64_t stream) {
    ScopedFd fd = Create(root_, rel, 0644);
    Rng rng(opt_.seed * 0x100000001b3ull + stream);
    for (uint64_t off = 0; off < size; off += kWriteBuf) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kWriteBuf, size - off));
      rng.Fill(buf_.data(), n);
      WriteAll(fd.get(), buf_.data(), n, off);
    }
  }
  void WritePattern(const std::string& rel, uint64_t size,
                    std::string_view pattern) {
    ScopedFd fd = Create(root_, rel, 0644);
    for (size_t i = 0; i < kWriteBuf; ++i) buf_[i] = pattern[i % pattern.size()];
    for (uint64_t off = 0; off < size; off += kWriteBuf) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kWriteBuf, size - off));
      WriteAll(fd.get(), buf_.data(), n, off);
    }
  }
  // Sparse file of `size` with random extents {offset, length} written.
  void WriteSparse(const std::string& rel, uint64_t size,
                   const std::vector<std::pair<uint64_t, size_t>>& extents) {
    ScopedFd fd = Create(root_, rel, 0644);
    CheckSys(::ftruncate(fd.get(), static_cast<off_t>(size)), "ftruncate");
    Rng rng(opt_.seed ^ size);
    for (const auto& [off, len] : extents) {
      rng.Fill(buf_.data(), len);
      WriteAll(fd.get(), buf_.data(), len, off);
    }
  }

  // ---- sections ----
  void MakeFiles() {
    Mkdir("files");
    WriteData("files/empty", "");
    WriteData("files/empty2", "");
    uint64_t stream = 100;
    for (uint64_t size : {1, 4095, 4096, 4097}) {
      WriteRandom("files/size_" + std::to_string(size), size, ++stream);
    }
    const std::pair<const char*, size_t> chunks[] = {
        {"min", opt_.min_chunk}, {"avg", opt_.avg_chunk},
        {"max", opt_.max_chunk}};
    for (const auto& [label, size] : chunks) {
      std::string base = std::string("files/chunk_") + label;
      if (size > 0) WriteRandom(base + "_m1", size - 1, ++stream);
      WriteRandom(base, size, ++stream);
      WriteRandom(base + "_p1", size + 1, ++stream);
    }
    WriteRandom("files/random_6m", 6 * kMiB + 17, ++stream);
    WritePattern("files/repeated", 4 * kMiB + 3,
                 "ferry compressible line: the quick brown fox, again!\n");
    WritePattern("files/zeros", 2 * kMiB, std::string_view("\0", 1));
    WriteRandom("files/dup_a", kMiB + 5, 42);
    WriteRandom("files/dup_b", kMiB + 5, 42);
    WriteSparse("files/sparse_small", 64 * kMiB + 7,
                {{0, 100}, {10 * kMiB + 1, 70000}, {64 * kMiB - 10, 17}});
    if (opt_.sparse_huge) {
      const uint64_t size = 5 * kGiB + 123;
      WriteSparse("files/sparse_huge", size,
                  {{0, 4096}, {size / 2 + 1, 65536 + 3}, {size - 777, 777}});
    }
  }

  void MakeNames() {
    Mkdir("names");
    const std::string long_name = "long_name_" + std::string(245, 'L');
    const std::string names[] = {
        long_name, "new\nline", "tab\tname", " leading space",
        "trailing space ", "in  ner   spaces", "bad_utf8_\xff\xfe",
        "lone_continuation_\x80", "utf8_h\xc3\xa9llo_\xe2\x9c\x93", "back\\slash",
        "-dash", ".hidden", "quote\"'", "glob*?[x]", "colon:semi;",
        "ctrl_\x01\x1b"};
    for (const std::string& name : names) WriteData("names/" + name, name);
    const std::string long_dir = "names/dir_" + std::string(245, 'D');
    Mkdir(long_dir);
    WriteData(long_dir + "/" + long_name, "inside a 255-byte directory\n");
  }

  void MakeDeep() {
    Mkdir("deep");
    const size_t used = root_len_ + 1 + opt_.deep_path_slack;
    size_t target = PATH_MAX - 1 > used ? PATH_MAX - 1 - used : 0;
    if (opt_.deep_path_len > 0) {
      target = std::min<size_t>(opt_.deep_path_len, PATH_MAX - 1);
    }
    ScopedFd dir = OpenDirAt(root_, "deep");
    size_t len = std::strlen("deep");
    int level = 0;
    // remaining = bytes left for "/<leaf>"; keep the leaf <= NAME_MAX.
    while (target > len + 1 && target - len - 1 > NAME_MAX) {
      char prefix[16];
      std::snprintf(prefix, sizeof(prefix), "lvl%02d_", level++);
      std::string comp = prefix;
      comp.resize(kDeepComponentLen, 'a' + static_cast<char>(level % 26));
      CheckSys(::mkdirat(dir.get(), comp.c_str(), 0755), "mkdir deep");
      CheckSys(::fchmodat(dir.get(), comp.c_str(), 0755, 0), "chmod deep");
      dir = OpenDirAt(dir.get(), comp);
      len += 1 + comp.size();
    }
    size_t leaf_len = target > len + 1 ? target - len - 1 : 4;
    std::string leaf = "leaf_";
    leaf.resize(std::max<size_t>(leaf_len, leaf.size()), 'z');
    leaf.resize(leaf_len);
    WriteData(leaf, "deep leaf contents\n", 0644, dir.get());
    SetXattr(dir.get(), leaf, "user.ferry.deep", "deep xattr");
    CheckSys(::symlinkat("../", dir.get(), "up"), "symlink deep/up");
  }

  void MakeBig() {
    Mkdir("big");
    ScopedFd dir = OpenDirAt(root_, "big");
    size_t width = 6;
    for (size_t n = opt_.huge_dir_entries; n >= 1000000; n /= 10) ++width;
    for (size_t i = 0; i < opt_.huge_dir_entries; ++i) {
      std::string digits = std::to_string(i);
      std::string name = "f" + std::string(
          std::max<size_t>(digits.size(), width) - digits.size(), '0') + digits;
      CheckSys(::mknodat(dir.get(), name.c_str(), S_IFREG | 0644, 0),
               "mknod big");
    }
  }

  void MakeSpecial() {
    Mkdir("special");
    if (opt_.devices) {
      const std::pair<const char*, dev_t> devs[] = {
          {"special/chr_null", makedev(1, 3)},
          {"special/chr_bignum", makedev(511, 65537)}};
      for (const auto& [name, dev] : devs) {
        CheckSys(::mknodat(root_, name, S_IFCHR | 0600, dev), "mknod chr");
        Chmod(name, 0666);
      }
      CheckSys(::mknodat(root_, "special/blk_loop0", S_IFBLK | 0600,
                         makedev(7, 0)), "mknod blk");
      Chmod("special/blk_loop0", 0660);
    }
    CheckSys(::mkfifoat(root_, "special/fifo", 0600), "mkfifo");
    Chmod("special/fifo", 0640);
    // bind() through /proc/self/fd keeps sun_path short for any root length.
    ScopedFd dir = OpenDirAt(root_, "special");
    std::string path = ProcFdPath(dir.get(), "socket");
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("sun");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ScopedFd sock(static_cast<int>(
        CheckSys(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket")));
    CheckSys(::bind(sock.get(), reinterpret_cast<struct sockaddr*>(&addr),
                    sizeof(addr)), "bind " + path);
    Chmod("special/socket", 0755);
  }

  void MakeLinks() {
    Mkdir("links");
    Symlink("../does/not/exist", "links/dangling");
    Symlink("/etc/hostname", "links/absolute");
    Symlink("../files", "links/to_dir");
    Symlink("../files/size_4096", "links/to_file");
    Symlink("self_loop", "links/self_loop");
    std::string long_target;
    while (long_target.size() < 4000) long_target += "long_target_component/";
    long_target.resize(4000);
    Symlink(long_target, "links/long_target");
    Symlink("tab\there\nnl\xff", "links/weird_target");
  }

  void MakeHardlinks() {
    Mkdir("hardlinks");
    Mkdir("hardlinks/a");
    Mkdir("hardlinks/b");
    WriteRandom("hardlinks/a/orig", 10000, 7);
    Link("hardlinks/a/orig", "hardlinks/b/second");
    Link("hardlinks/a/orig", "hardlink_top");
    WriteData("hardlinks/empty1", "");
    Link("hardlinks/empty1", "hardlinks/a/empty2");
    Symlink("orig", "hardlinks/a/sym1");
    Link("hardlinks/a/sym1", "hardlinks/b/sym2");  // hard link to a symlink
  }

  void MakeModes() {
    Mkdir("modes");
    const std::pair<const char*, mode_t> files[] = {
        {"setuid", 04755}, {"setgid", 02755}, {"setuid_setgid", 06755},
        {"sticky_file", 01644}, {"m0600", 0600}, {"m0444", 0444},
        {"m0000", 0000}, {"m0007", 0007}, {"m0777", 0777}};
    for (const auto& [name, mode] : files) {
      WriteData(std::string("modes/") + name, name, mode);
    }
    const std::pair<const char*, mode_t> dirs[] = {
        {"sticky_dir", 01777}, {"setgid_dir", 02775}, {"dir0555", 0555},
        {"dir0700", 0700}, {"dir0000", 0000}};
    for (const auto& [name, mode] : dirs) {
      std::string rel = std::string("modes/") + name;
      Mkdir(rel);
      WriteData(rel + "/child", "child\n");
      Chmod(rel, mode);
    }
  }

  void MakeOwnership() {
    Mkdir("own");
    const std::tuple<const char*, uid_t, gid_t> files[] = {
        {"u1000", 1000, 1000}, {"nobody", 65534, 65534},
        {"odd", 12345, 54321}, {"uid_only", 4242, 0}, {"gid_only", 0, 4243}};
    for (const auto& [name, uid, gid] : files) {
      std::string rel = std::string("own/") + name;
      WriteData(rel, name);
      Chown(rel, uid, gid);
    }
    Mkdir("own/dir_odd");
    WriteData("own/dir_odd/child", "x");
    Chown("own/dir_odd", 12345, 54321);
    Symlink("u1000", "own/link_1000");
    Chown("own/link_1000", 1000, 1000);
    WriteData("own/suid_1000", "setuid owned by 1000");
    Chown("own/suid_1000", 1000, 1000);
    Chmod("own/suid_1000", 04755);  // after chown, which clears setuid
  }

  void MakeXattrs() {
    Mkdir("xattrs");
    WriteData("xattrs/file", "has xattrs\n");
    std::string binary;
    for (int i = 0; i < 256; ++i) binary += static_cast<char>(i);
    std::string random(1000, '\0');
    Rng(opt_.seed + 77).Fill(random.data(), random.size());
    SetXattr(root_, "xattrs/file", "user.binary", binary);
    SetXattr(root_, "xattrs/file", "user.empty", "");
    SetXattr(root_, "xattrs/file", "user.random_1k", random);
    for (int i = 0; i < 16; ++i) {
      SetXattr(root_, "xattrs/file", "user.many_" + std::to_string(i),
               "value " + std::to_string(i * i));
    }
    Mkdir("xattrs/dir");
    SetXattr(root_, "xattrs/dir", "user.dir_attr", "on a directory");
    SetXattr(root_, "hardlinks/a/orig", "user.on_hardlink", "shared");
    // POSIX ACLs are xattrs too (system.posix_acl_*); tar writers store them
    // under two pax keywords, which must not become two attributes.
    Mkdir("xattrs/acl_dir");
    SetXattr(root_, "xattrs/acl_dir", "system.posix_acl_access", Acl(05, 1000, 07));
    SetXattr(root_, "xattrs/acl_dir", "system.posix_acl_default", Acl(07, 1000, 05));
    WriteData("xattrs/acl_dir/file", "acl\n");
    SetXattr(root_, "xattrs/acl_dir/file", "system.posix_acl_access", Acl(06, 1000, 04));
    if (!opt_.trusted_xattrs) return;
    SetXattr(root_, "xattrs/file", "trusted.ferry", "trusted value");
    SetXattr(root_, "xattrs/file", "trusted.empty", "");
    Symlink("file", "xattrs/link_trusted");
    SetXattr(root_, "xattrs/link_trusted", "trusted.on_symlink", "sym");
    // VFS_CAP_REVISION_2: cap_net_bind_service permitted + effective.
    WriteData("xattrs/cap_file", "#!/bin/true\n", 0755);
    const uint32_t words[5] = {VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
                               1u << CAP_NET_BIND_SERVICE, 0, 0, 0};
    std::string cap;
    for (uint32_t w : words) {
      for (int b = 0; b < 4; ++b) cap += static_cast<char>((w >> (8 * b)) & 0xff);
    }
    SetXattr(root_, "xattrs/cap_file", "security.capability", cap);
  }

  // A POSIX ACL xattr value (version 2): owner rwx, named user `uid` with
  // `user_perm`, group and mask `group_perm`, other `other_perm`.
  static std::string Acl(unsigned group_perm, uint32_t uid, unsigned user_perm) {
    std::string v;
    auto put = [&](uint32_t x, int bytes) {
      for (int b = 0; b < bytes; ++b) v += static_cast<char>((x >> (8 * b)) & 0xff);
    };
    put(2, 4);
    const struct { uint16_t tag, perm; uint32_t id; } entries[] = {
        {0x01, 07, 0xffffffff},       {0x02, static_cast<uint16_t>(user_perm), uid},
        {0x04, static_cast<uint16_t>(group_perm), 0xffffffff},
        {0x10, 07, 0xffffffff},       {0x20, static_cast<uint16_t>(group_perm & 05), 0xffffffff}};
    for (const auto& e : entries) {
      put(e.tag, 2);
      put(e.perm, 2);
      put(e.id, 4);
    }
    return v;
  }

  void MakeTimes() {
    Mkdir("times");
    special_times_ = {{"times/pre_epoch", {-123456789, 500000000}},
                      {"times/epoch", {0, 0}},
                      {"times/post_2038", {4102444800, 999999999}},
                      {"times/whole_second", {1600000000, 0}},
                      {"times/max_nsec", {1600000000, 999999999}}};
    for (const auto& [rel, ts] : special_times_) WriteData(rel, rel);
  }

  // Seed-derived timestamp for `rel`; which = 0 for mtime, 1 for atime.
  struct timespec TimeFor(const std::string& rel, int which) const {
    auto it = special_times_.find(rel);
    if (it != special_times_.end()) return it->second;
    uint64_t h = XXH3_64bits_withSeed(rel.data(), rel.size(),
                                      opt_.seed * 2 + static_cast<uint64_t>(which));
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(1000000000 + h % 700000000);
    ts.tv_nsec = static_cast<long>((h >> 32) % 1000000000);
    return ts;
  }

  // Post-order walk: children first, then the directory itself.
  void StampTimes(int dirfd, const std::string& prefix) {
    std::vector<DirEntry> entries;
    if (!ListDirectoryEntries(dirfd, &entries)) ThrowErrno("list " + prefix);
    for (const auto& [name, type] : entries) {
      std::string rel = prefix.empty() ? name : prefix + "/" + name;
      bool is_dir = type == DT_DIR;
      if (type == DT_UNKNOWN) {
        struct stat st;
        CheckSys(::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW),
                 "stat " + EscapeBytes(rel));
        is_dir = S_ISDIR(st.st_mode);
      }
      if (is_dir) {
        ScopedFd child = OpenDirAt(dirfd, name);
        StampTimes(child.get(), rel);
      }
      struct timespec ts[2] = {TimeFor(rel, 1), TimeFor(rel, 0)};
      CheckSys(::utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW),
               "utimensat " + EscapeBytes(rel));
    }
  }

  int root_;
  size_t root_len_;
  const GenOptions& opt_;
  std::vector<char> buf_;
  std::map<std::string, struct timespec> special_times_;
};

}  // namespace

void GenerateEdgeCaseTree(const std::string& root, const GenOptions& opt) {
  if (::mkdir(root.c_str(), 0755) != 0 && errno != EEXIST) {
    ThrowErrno("mkdir " + root);
  }
  ScopedFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) ThrowErrno("open " + root);
  std::vector<std::string> names;
  if (!ListDirectory(root_fd.get(), &names)) ThrowErrno("list " + root);
  if (!names.empty()) {
    throw std::runtime_error("GenerateEdgeCaseTree: " + root + " is not empty");
  }
  // Absolute length of the root, for the deep-path budget.
  char abs[PATH_MAX];
  std::string link = ProcFdPath(root_fd.get(), "");
  link.pop_back();
  ssize_t n = ::readlink(link.c_str(), abs, sizeof(abs));
  size_t root_len = n > 0 ? static_cast<size_t>(n) : root.size();
  Generator(root_fd.get(), root_len, opt).Run();
}

}  // namespace ferry::testing
