// `ferry snapshot` end to end, with a real ferryd, overlayfs and FUSE: a
// writable mount of a generated edge-case tree is changed in every way a
// sandbox changes files, snapshotted, and the snapshot mounted read-only is
// compared entry by entry with the live mount; then a snapshot of the
// snapshot (a chain of two). Needs root and /dev/fuse.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/snapshot_fixture.h"
#include "tests/support/bytes.h"
#include "tests/support/daemon.h"
#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/tree_compare.h"
#include "tests/support/tree_gen.h"

namespace ferry::testing {
namespace {

using Env = SnapshotEnv;

TEST_CASE("ferry snapshot: a changed writable mount, mounted back, equals the live tree; chains") {
  Env env;
  std::string src = env.tmp.path() + "/edge";
  GenOptions gen;
  gen.huge_dir = false;
  GenerateEdgeCaseTree(src, gen);
  auto b = Ferry(env.store, {"build", src, "--tag", "edge", "-q"});
  INFO(b.err);
  REQUIRE(b.exit_code == 0);
  ScopedDaemon daemon(env.root);

  const std::string m = env.Mount("edge", "live", /*writable=*/true);
  // New files and directories, a new hard link and a new sparse file.
  stdfs::create_directories(m + "/new/sub");
  std::ofstream(m + "/new/hello") << "hello\n";
  Sh("ln " + m + "/new/hello " + m + "/new/sub/hello_link");
  std::ofstream(m + "/new/blob", std::ios::binary) << RandomString(3 * kMiB, 1);
  Sh("truncate -s 100M " + m + "/new/sparse");
  PWrite(m + "/new/sparse", "in the middle", 50 * kMiB);
  // A new name for a file of the base (overlayfs copies it up first), and
  // a hard link of the base broken (one of its three names changed).
  Sh("ln " + m + "/files/size_4095 " + m + "/new/link_to_base");
  std::ofstream(m + "/hardlinks/b/second", std::ios::app) << "x";
  // Modified: 1 MiB in the middle of a large file, an append, a truncate.
  PWrite(m + "/files/random_6m", RandomString(kMiB, 2), 2 * kMiB);
  std::ofstream(m + "/files/size_4097", std::ios::app) << "tail";
  // One chunk's worth written past 4 GiB into the 5 GiB sparse file (the
  // copy-up keeps its holes; the snapshot reads its data regions only).
  PWrite(m + "/files/sparse_huge", RandomString(4096, 3), (9ll << 29) + 12345);
  Sh("truncate -s 1000 " + m + "/files/repeated");
  // Deleted: a file and a whole directory.
  Sh("rm " + m + "/files/dup_b && rm -r " + m + "/times");
  // A directory deleted and recreated (opaque in the upper directory).
  Sh("rm -r " + m + "/modes && mkdir " + m + "/modes && echo again > " + m + "/modes/again");
  // Renames across directories: a file, and a directory (overlayfs without
  // redirect_dir refuses rename(2) of a lower directory; mv copies it).
  Sh("mv " + m + "/files/size_1 " + m + "/links/moved_size_1");
  Sh("mv " + m + "/own " + m + "/xattrs/own_moved");
  // Metadata only: chmod, chown, a new xattr.
  Sh("chmod 0640 " + m + "/files/size_4096 && chown 123:456 " + m + "/files/empty");
  REQUIRE(lsetxattr((m + "/xattrs/file").c_str(), "user.added", "v", 1, 0) == 0);
  // A file replaced by a symlink, a directory by a file.
  Sh("rm " + m + "/files/zeros && ln -s size_4096 " + m + "/files/zeros");
  Sh("rm -r " + m + "/xattrs/dir && echo now-a-file > " + m + "/xattrs/dir");

  nlohmann::json s1 = env.Snapshot(m, "snap1");
  CHECK(s1.at("image_id").get<std::string>().size() == 64);
  CHECK(s1.at("tag") == "snap1");
  CHECK(U64(s1, "files_read") > 0);
  // New bytes: the 3 MiB blob, the changed MiB and the chunks around it
  // (at most 1 MiB more), a few small files, and what the copy-up of the
  // sparse file wrote: overlayfs copies data in 1 MiB pieces, so zeros
  // around the written 4 KiB are data now (same bytes to a reader; they
  // compress to almost nothing, hence the bound on compressed bytes). The
  // rest of the image (its multi-MiB files, the copied-up random_6m's
  // unchanged bytes, the moved directory's files) is the base's chunks.
  CHECK(U64(s1, "new_bytes") >= 4 * kMiB);
  CHECK(U64(s1, "written_bytes") <= 5 * kMiB + 64 * 1024);

  const std::string r1 = env.Mount("snap1", "snap1", /*writable=*/false);
  // Where the live overlay (without index=on) is not a consistent view of
  // hard links, the snapshot holds what the upper and lower directories
  // say: the names of a base file left after one was copied up keep the
  // base's nlink (3) in the overlay, and a new name linked to a copied-up
  // file shows another inode than the merged name. Checked below instead.
  const std::set<std::string> overlay_link_quirks = {
      "\"hardlink_top\": nlink: expected 3, actual 2",
      "\"hardlinks/a/orig\": nlink: expected 3, actual 2",
      "\"new/link_to_base\": hard link group (first name of inode): expected \"new/"
      "link_to_base\", actual \"files/size_4095\""};
  CheckSameTree(m, r1, overlay_link_quirks);
  CHECK(Stat(r1 + "/files/size_4095").st_ino == Stat(r1 + "/new/link_to_base").st_ino);
  CHECK(Stat(r1 + "/new/link_to_base").st_nlink == 2);
  CHECK(Stat(r1 + "/hardlinks/a/orig").st_ino == Stat(r1 + "/hardlink_top").st_ino);
  CHECK(Stat(r1 + "/hardlinks/a/orig").st_nlink == 2);
  CHECK(Stat(r1 + "/hardlinks/b/second").st_nlink == 1);
  CHECK(Stat(r1 + "/hardlinks/b/second").st_size == 10001);
  // ... and differs from the base where the sandbox changed it.
  CompareOptions opt;
  opt.compare_dir_nlink = false;
  CHECK(CompareTrees(src, r1, opt).size() >= 20);

  // A snapshot of the snapshot: mount snap1 writable, change more.
  const std::string m2 = env.Mount("snap1", "live2", /*writable=*/true);
  std::ofstream(m2 + "/new/hello", std::ios::app) << "again\n";  // breaks nothing: both names
  Sh("rm -r " + m2 + "/new/sub && rm " + m2 + "/files/random_6m");
  Sh("mkdir " + m2 + "/second && echo two > " + m2 + "/second/file");
  PWrite(m2 + "/new/blob", "changed", kMiB);
  nlohmann::json s2 = env.Snapshot(m2, "snap2");
  CHECK(U64(s2, "new_bytes") <= kMiB + 64 * 1024);
  const std::string r2 = env.Mount("snap2", "snap2", /*writable=*/false);
  CheckSameTree(m2, r2);
  // The first snapshot is as it was.
  CheckSameTree(m, r1, overlay_link_quirks);
}

TEST_CASE("ferry snapshot: clear errors for a read-only mount, a missing directory, no daemon") {
  Env env;
  std::string src = env.tmp.path() + "/src";
  stdfs::create_directories(src);
  std::ofstream(src + "/f") << "f\n";
  REQUIRE(Ferry(env.store, {"build", src, "--tag", "small", "-q"}).exit_code == 0);
  {
    ScopedDaemon daemon(env.root);
    const std::string ro = env.Mount("small", "ro", /*writable=*/false);
    auto r = Ferry(env.store, {"snapshot", ro, "--tag", "x", "--daemon", env.root});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("read-only mount") != std::string::npos);
    r = Ferry(env.store, {"snapshot", src + "/nowhere", "--tag", "x", "--daemon", env.root});
    CHECK(r.exit_code == 3);
    CHECK(r.err.find(src + "/nowhere is not a directory") != std::string::npos);
    r = Ferry(env.store, {"snapshot", ro + "/nowhere", "--tag", "x", "--daemon", env.root});
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("nowhere") != std::string::npos);
    const std::string rw = env.Mount("small", "rw", /*writable=*/true);
    r = Ferry(env.store, {"snapshot", rw, "--tag", "../bad", "--daemon", env.root});
    CHECK(r.exit_code == 2);
    r = Ferry(env.store, {"snapshot", rw, "--daemon", env.root});  // no --tag
    CHECK(r.exit_code == 2);
    r = Ferry(env.store, {"snapshot", rw, "--tag", "x", "--zstd-level", "20", "--daemon", env.root});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("zstd-level") != std::string::npos);
    // --zstd-level reaches ferryd: the same compressible file, written at
    // level 1 and at level 19 (each snapshot reads it; neither finds the
    // other's chunk, since the file differs by one byte).
    std::string text;
    for (int i = 0; text.size() < 600000; ++i) text += "line " + std::to_string(i * 7919 % 1000) + " of a log\n";
    uint64_t written[2] = {0, 0};
    for (int k = 0; k < 2; ++k) {
      std::ofstream(rw + "/log") << text << k;
      auto j = env.Snapshot(rw, "lvl" + std::to_string(k), {"--zstd-level", k == 0 ? "1" : "19"});
      written[k] = U64(j, "written_bytes");
    }
    INFO("written at level 1: " << written[0] << ", at level 19: " << written[1]);
    CHECK(written[1] > 0);
    CHECK(written[1] < written[0]);
    // Nothing was published by the refused calls.
    auto ls = Ferry(env.store, {"ls"});
    CHECK(ls.out.find("x") == std::string::npos);
    while (!env.mounts.empty()) env.Umount(env.mounts.back().first);
  }
  auto r = Ferry(env.store, {"snapshot", src, "--tag", "x", "--daemon", env.root});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("ferryd") != std::string::npos);
  auto help = Ferry(env.store, {"snapshot", "--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("--tag") != std::string::npos);
  CHECK(help.out.find("--json") != std::string::npos);
}

}  // namespace
}  // namespace ferry::testing

int main(int argc, char** argv) {
  ferry::testing::RequireFuseOrSkip();
  return Catch::Session().run(argc, argv);
}
