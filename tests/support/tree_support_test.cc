// Self-test of the tree generator / comparer test support.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "tests/support/fs_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"

namespace ferry::testing {
namespace {

bool IsRoot() { return ::geteuid() == 0; }

GenOptions SmallOptions() {
  GenOptions opt;
  opt.huge_dir_entries = 1000;
  opt.sparse_huge = false;
  return opt;
}

void CopyTree(const std::string& from, const std::string& to) {
  const std::string cmd = "cp -a '" + from + "' '" + to + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

// True when some line is about `rel` and mentions `keyword`.
bool HasDiff(const std::vector<std::string>& diffs, const std::string& rel,
             const std::string& keyword) {
  const std::string prefix = QuotePath(rel) + ": ";
  for (const std::string& d : diffs) {
    if (d.rfind(prefix, 0) == 0 && d.find(keyword) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Shifts the mtime of `path` (not following symlinks) by one nanosecond.
void BumpMtime(const std::string& path) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  if (++ts[1].tv_nsec == 1000000000) ts[1].tv_nsec = 0;
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
}

// Flips one byte at `offset` while keeping the file's mtime.
void FlipByte(const std::string& path, off_t offset) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  ScopedFd fd(::open(path.c_str(), O_RDWR));
  REQUIRE(fd.valid());
  char c = 0;
  REQUIRE(::pread(fd.get(), &c, 1, offset) == 1);
  c = static_cast<char>(c ^ 0x5a);
  REQUIRE(::pwrite(fd.get(), &c, 1, offset) == 1);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  REQUIRE(::futimens(fd.get(), ts) == 0);
}

// Relative path of the deepest file under root/deep.
std::string FindDeepLeaf(const std::string& root) {
  std::string rel = "deep";
  for (;;) {
    ScopedFd dir(::open((root + "/" + rel).c_str(), O_RDONLY | O_DIRECTORY));
    REQUIRE(dir.valid());
    std::vector<std::string> names;
    REQUIRE(ListDirectory(dir.get(), &names));
    std::string next;
    for (const std::string& n : names) {
      if (n.rfind("leaf_", 0) == 0) return rel + "/" + n;
      if (n.rfind("lvl", 0) == 0) next = n;
    }
    REQUIRE(!next.empty());
    rel += "/" + next;
  }
}

struct Mutation {
  std::string rel;      // path the difference must name
  std::string keyword;  // text the difference line must contain
  std::function<void(const std::string& root)> apply;
};

}  // namespace

TEST_CASE("tree support: cp -a copy compares equal, each change is found",
          "[tree_support]") {
  if (!IsRoot()) {
    WARN("skipped: needs root (devices, chown, trusted.*, mode 0000)");
    return;
  }
  ScopedTempDir tmp("ferry-tree-support");
  const std::string src = tmp.path() + "/src";
  GenerateEdgeCaseTree(src, SmallOptions());
  const std::string deep_leaf = FindDeepLeaf(src);
  CHECK(src.size() + 1 + deep_leaf.size() ==
        PATH_MAX - 1 - GenOptions().deep_path_slack);
  // Copies use a root path of the same length as src (see deep_path_slack).
  int copies = 0;
  auto fresh_copy = [&] {
    std::string dst = tmp.path() + "/c" + std::to_string(10 + copies++);
    CopyTree(src, dst);
    return dst;
  };

  {
    const std::string dst = fresh_copy();
    const std::vector<std::string> diffs = CompareTrees(src, dst);
    INFO(Join(diffs));
    REQUIRE(diffs.empty());
    CHECK(CompareTrees(dst, src).empty());
    RemoveTree(dst);
  }

  const std::vector<Mutation> mutations = {
      {"files/size_4096", "mtime",
       [](const std::string& r) { BumpMtime(r + "/files/size_4096"); }},
      {"links/dangling", "mtime",
       [](const std::string& r) { BumpMtime(r + "/links/dangling"); }},
      {"hardlinks/a", "mtime",
       [](const std::string& r) { BumpMtime(r + "/hardlinks/a"); }},
      {"modes/setuid", "mode: expected 04755, actual 0755",
       [](const std::string& r) {
         REQUIRE(::chmod((r + "/modes/setuid").c_str(), 0755) == 0);
       }},
      {"files/random_6m", "content",
       [](const std::string& r) { FlipByte(r + "/files/random_6m", 3 << 20); }},
      {"files/sparse_small", "content",
       [](const std::string& r) { FlipByte(r + "/files/sparse_small", 5000); }},
      {deep_leaf, "content",
       [&](const std::string& r) { FlipByte(r + "/" + deep_leaf, 0); }},
      {"names/new\nline", "content",
       [](const std::string& r) { FlipByte(r + "/names/new\nline", 1); }},
      {"xattrs/file", "user.binary",
       [](const std::string& r) {
         REQUIRE(::removexattr((r + "/xattrs/file").c_str(), "user.binary") == 0);
       }},
      {"xattrs/link_trusted", "trusted.on_symlink",
       [](const std::string& r) {
         REQUIRE(::lsetxattr((r + "/xattrs/link_trusted").c_str(),
                             "trusted.on_symlink", "SYM", 3, 0) == 0);
       }},
      {"hardlinks/b/second", "hard link group",
       [](const std::string& r) {
         // Replace one name of the 3-name inode by an identical copy.
         const std::string dir = r + "/hardlinks/b";
         struct stat st;
         REQUIRE(::stat(dir.c_str(), &st) == 0);
         CopyTree(dir + "/second", dir + "/tmp_copy");
         REQUIRE(::rename((dir + "/tmp_copy").c_str(),
                          (dir + "/second").c_str()) == 0);
         struct timespec ts[2] = {st.st_atim, st.st_mtim};
         REQUIRE(::utimensat(AT_FDCWD, dir.c_str(), ts, 0) == 0);
       }},
      {"own/u1000", "uid",
       [](const std::string& r) {
         REQUIRE(::lchown((r + "/own/u1000").c_str(), 1001, -1) == 0);
       }},
      {"special/chr_null", "rdev",
       [](const std::string& r) {
         const std::string p = r + "/special/chr_null";
         REQUIRE(::unlink(p.c_str()) == 0);
         REQUIRE(::mknod(p.c_str(), S_IFCHR | 0666, makedev(1, 5)) == 0);
       }},
      {"special/fifo", "type",
       [](const std::string& r) {
         const std::string p = r + "/special/fifo";
         REQUIRE(::unlink(p.c_str()) == 0);
         std::ofstream(p) << "";
       }},
      {"links/to_dir", "symlink target",
       [](const std::string& r) {
         const std::string p = r + "/links/to_dir";
         REQUIRE(::unlink(p.c_str()) == 0);
         REQUIRE(::symlink("../files/", p.c_str()) == 0);
       }},
      {"big/f000500", "missing in actual",
       [](const std::string& r) {
         REQUIRE(::unlink((r + "/big/f000500").c_str()) == 0);
       }},
      {"names/extra", "extra in actual",
       [](const std::string& r) { std::ofstream(r + "/names/extra") << "x"; }},
  };
  for (const Mutation& m : mutations) {
    const std::string dst = fresh_copy();
    m.apply(dst);
    const std::vector<std::string> diffs = CompareTrees(src, dst);
    INFO("mutation of " << QuotePath(m.rel) << ", diffs:\n" << Join(diffs));
    CHECK(HasDiff(diffs, m.rel, m.keyword));
    CHECK(diffs.size() <= 4);
    RemoveTree(dst);
  }

  {  // Options hide the differences they switch off.
    const std::string dst = fresh_copy();
    REQUIRE(::unlink((dst + "/special/socket").c_str()) == 0);
    CompareOptions opt;
    CHECK(CompareTrees(src, dst, opt).size() == 2);  // entry + dir mtime
    opt.compare_sockets = false;
    CHECK(CompareTrees(src, dst, opt).size() == 1);  // dir mtime only
    REQUIRE(::lchown((dst + "/own/odd").c_str(), 1, 2) == 0);
    CHECK(CompareTrees(src, dst, opt).size() == 3);
    opt.compare_ownership = false;
    CHECK(CompareTrees(src, dst, opt).size() == 1);
  }

  {  // The difference list is capped.
    const std::string dst = fresh_copy();
    for (int i = 0; i < 150; ++i) {
      const std::string name = std::to_string(100000 + i).substr(1);
      REQUIRE(::unlink((dst + "/big/f0" + name).c_str()) == 0);
    }
    const std::vector<std::string> diffs = CompareTrees(src, dst);
    REQUIRE(diffs.size() == kMaxReportedDifferences + 1);
    CHECK(diffs.back() == "... 51 more differences");  // 150 + dir mtime
  }
}

TEST_CASE("tree support: generation is deterministic", "[tree_support]") {
  if (!IsRoot()) {
    WARN("skipped: needs root (devices, chown, trusted.*, mode 0000)");
    return;
  }
  ScopedTempDir tmp("ferry-tree-support");
  GenOptions opt = SmallOptions();
  opt.huge_dir_entries = 10;
  GenerateEdgeCaseTree(tmp.path() + "/a", opt);
  GenerateEdgeCaseTree(tmp.path() + "/b", opt);
  const std::vector<std::string> same = CompareTrees(tmp.path() + "/a",
                                                     tmp.path() + "/b");
  INFO(Join(same));
  CHECK(same.empty());
  opt.seed = 2;
  GenerateEdgeCaseTree(tmp.path() + "/c", opt);
  const std::vector<std::string> diffs = CompareTrees(tmp.path() + "/a",
                                                      tmp.path() + "/c");
  CHECK(HasDiff(diffs, "files/random_6m", "content"));
  CHECK(HasDiff(diffs, "files/empty", "mtime"));
  CHECK_THROWS_AS(GenerateEdgeCaseTree(tmp.path() + "/c", opt),
                  std::runtime_error);
}

TEST_CASE("tree support: HashFileContents", "[tree_support]") {
  if (!IsRoot()) {
    WARN("skipped: needs root (devices, chown, trusted.*, mode 0000)");
    return;
  }
  ScopedTempDir tmp("ferry-tree-support");
  GenOptions opt = SmallOptions();
  opt.huge_dir = false;
  const std::string root = tmp.path() + "/t";
  GenerateEdgeCaseTree(root, opt);
  CHECK(HashFileContents(root + "/files/dup_a") ==
        HashFileContents(root + "/files/dup_b"));
  CHECK(HashFileContents(root + "/files/dup_a") !=
        HashFileContents(root + "/files/random_6m"));
  CHECK(HashFileContents(root + "/files/empty").size() == 32);
  // The hole-skipping path must agree with hashing every byte.
  for (const char* name : {"files/sparse_small", "files/random_6m"}) {
    std::ifstream in(root + "/" + name, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)),
                           std::istreambuf_iterator<char>());
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits(data.data(), data.size()));
    std::string hex;
    for (unsigned char b : canon.digest) {
      hex += "0123456789abcdef"[b >> 4];
      hex += "0123456789abcdef"[b & 0xf];
    }
    CHECK(HashFileContents(root + "/" + name) == hex);
  }
  CHECK_THROWS_AS(HashFileContents(root + "/nonexistent"), std::runtime_error);
}

}  // namespace ferry::testing
