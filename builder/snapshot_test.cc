// Unit tests for snapshots in the builder: a base image plus an overlayfs
// upper directory made by hand (whiteouts, opaque directories, the overlay's
// own xattrs), compared, mounted, with the tree it stands for; and what a
// snapshot costs (new chunk bytes) for unchanged and changed files.
// Needs root (mknod, trusted.* xattrs) and FUSE: RequireFuseOrSkip.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "builder/image_builder.h"
#include "chunkstore/file_store.h"
#include "fs/image_store.h"
#include "fs/image_walk.h"
#include "tests/support/bytes.h"
#include "tests/support/ferry_cli.h"
#include "tests/support/fs_util.h"
#include "tests/support/tree_compare.h"

namespace ferry::builder {
namespace {

namespace stdfs = std::filesystem;
using testing::ScopedTempDir;

using testing::RandomString;

constexpr uint64_t kMiB = 1 << 20;

void WriteFile(const std::string& path, const std::string& data) {
  stdfs::create_directories(stdfs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
  REQUIRE(stdfs::file_size(path) == data.size());
}

void Sh(const std::string& cmd) {
  INFO(cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
}

// Gives `to` the mode, owner and times of `from` (directories of the upper
// dir made by hand, which must look like the merged ones).
void CopyMeta(const std::string& from, const std::string& to) {
  struct stat st;
  REQUIRE(lstat(from.c_str(), &st) == 0);
  REQUIRE(lchown(to.c_str(), st.st_uid, st.st_gid) == 0);
  REQUIRE(chmod(to.c_str(), st.st_mode & 07777) == 0);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  REQUIRE(utimensat(AT_FDCWD, to.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

void Whiteout(const std::string& path) {
  REQUIRE(mknod(path.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0);
}

void SetXattr(const std::string& path, const std::string& name, const std::string& value) {
  REQUIRE(lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) == 0);
}

struct Fixture {
  ScopedTempDir tmp{"ferry-snapshot"};
  std::string store_path = tmp.path() + "/store";
  std::string base = tmp.path() + "/base";
  std::string upper = tmp.path() + "/upper";
  std::string expected = tmp.path() + "/expected";
  std::unique_ptr<chunkstore::FileStore> store;

  Fixture() {
    testing::RequireFuseOrSkip();
    auto s = chunkstore::FileStore::Open(store_path);
    REQUIRE(s.ok());
    store = std::move(*s);
    stdfs::create_directories(upper);
  }

  BuildSummary BuildBase() {
    ImageBuilder b(store.get(), {});
    REQUIRE(b.AddDirectory(base).ok());
    auto r = b.Finish("base");
    REQUIRE(r.ok());
    return *r;
  }

  // Mounts image `tag` (kept mounted while the result lives) and checks it
  // serves the tree `expected`, entry by entry.
  std::unique_ptr<testing::ScopedMount> MountAndCompare(const std::string& tag, const std::string& expected) {
    std::string mnt = tmp.path() + "/mnt-" + tag;
    stdfs::create_directories(mnt);
    auto m = std::make_unique<testing::ScopedMount>(store_path, tag, mnt);
    INFO(m->result().err);
    REQUIRE(m->ok());
    std::string all;
    for (const auto& d : testing::CompareTrees(expected, mnt)) all += d + "\n";
    INFO(all);
    CHECK(all.empty());
    return m;
  }

  // base + upper, as image `tag`.
  Result<BuildSummary> Snapshot(const std::string& tag) {
    ASSIGN_OR_RETURN(Digest id, fs::ResolveImage(*store, "base"));
    ASSIGN_OR_RETURN(auto image, fs::LoadImage(*store, id));
    ImageBuilder b(store.get(), {});
    RETURN_IF_ERROR(b.AddImage(*image));
    RETURN_IF_ERROR(b.AddOverlayUpper(upper));
    return b.Finish(tag);
  }
};

TEST_CASE("snapshot: base image plus overlay upper gives the merged tree") {
  Fixture fx;
  const std::string& base = fx.base;
  WriteFile(base + "/keep/one", RandomString(kMiB, 1));
  WriteFile(base + "/big", RandomString(8 * kMiB, 2));
  WriteFile(base + "/gone/x", "x");
  WriteFile(base + "/gone/sub/y", "y");
  WriteFile(base + "/opaque/old1", "old1");
  WriteFile(base + "/opaque/old2/z", "z");
  WriteFile(base + "/mixed/lower_only", "lower");
  WriteFile(base + "/mixed/deleted", "deleted");
  WriteFile(base + "/mixed/changed", "before");
  WriteFile(base + "/to_symlink", "a file before");
  WriteFile(base + "/links/h1", "linked");
  Sh("ln " + base + "/links/h1 " + base + "/links/h2");
  Sh("ln -s keep/one " + base + "/sym");
  Sh("truncate -s 3M " + base + "/sparse && printf data | dd of=" + base +
     "/sparse bs=1 seek=1048576 conv=notrunc status=none");
  SetXattr(base + "/keep/one", "user.base", "kept");
  fx.BuildBase();
  Sh("cp -a " + base + " " + fx.expected);

  // Each change is made in `expected` first, then given to the upper dir the
  // way overlayfs would store it.
  const std::string& up = fx.upper;
  const std::string& ex = fx.expected;
  // A whole directory deleted: one whiteout.
  Sh("rm -r " + ex + "/gone");
  Whiteout(up + "/gone");
  // A directory deleted and recreated: opaque, with only the new entries.
  Sh("rm -r " + ex + "/opaque && mkdir " + ex + "/opaque && echo new > " + ex + "/opaque/fresh");
  stdfs::create_directories(up + "/opaque");
  Sh("cp -a " + ex + "/opaque/fresh " + up + "/opaque/");
  SetXattr(up + "/opaque", "trusted.overlay.opaque", "y");
  // A merged directory: one file deleted, one changed, one new.
  Sh("rm " + ex + "/mixed/deleted && echo after > " + ex + "/mixed/changed && echo hi > " + ex +
     "/mixed/added && chmod 0600 " + ex + "/mixed/changed && chown 12:34 " + ex + "/mixed/added");
  stdfs::create_directories(up + "/mixed");
  Whiteout(up + "/mixed/deleted");
  Sh("cp -a " + ex + "/mixed/changed " + ex + "/mixed/added " + up + "/mixed/");
  // The overlay's bookkeeping on a copied-up file, not part of the image.
  SetXattr(up + "/mixed/changed", "trusted.overlay.origin", "junk");
  // 1 MiB changed in the middle of a large file (copied up whole).
  Sh("printf '%1048576s' | tr ' ' Q | dd of=" + ex + "/big bs=1M seek=3 conv=notrunc status=none");
  // A file replaced by a symlink, an xattr-only change, new hard links and
  // a new sparse file.
  Sh("rm " + ex + "/to_symlink && ln -s /nowhere " + ex + "/to_symlink");
  Sh("cp -a " + ex + "/keep/one " + ex + "/one_copy");  // so keep/ stays a lower-only dir
  SetXattr(ex + "/one_copy", "user.new", "value");
  WriteFile(ex + "/newdir/n1", "a new hard link");
  Sh("ln " + ex + "/newdir/n1 " + ex + "/newdir/n2");
  Sh("truncate -s 5M " + ex + "/newdir/holes && printf end >> " + ex + "/newdir/holes");
  Sh("cp -a " + ex + "/big " + ex + "/to_symlink " + ex + "/one_copy " + ex + "/newdir " + up + "/");
  for (const char* dir : {"", "/opaque", "/mixed"}) CopyMeta(ex + dir, up + dir);

  auto snap = fx.Snapshot("snap");
  INFO(snap.status().ToString());
  REQUIRE(snap.ok());
  // Read: big, one_copy, changed, added, fresh, n1 (once), holes.
  CHECK(snap->files_read == 7);

  auto m = fx.MountAndCompare("snap", ex);
  const std::string& mnt = m->path();
  // Sparse files keep their holes: 4 bytes of data at 1 MiB, 3 at 5 MiB.
  struct stat st;
  REQUIRE(stat((mnt + "/sparse").c_str(), &st) == 0);
  CHECK(st.st_blocks * 512 < static_cast<off_t>(kMiB));
  REQUIRE(stat((mnt + "/newdir/holes").c_str(), &st) == 0);
  CHECK(st.st_blocks * 512 < static_cast<off_t>(kMiB));
}

TEST_CASE("snapshot: unchanged files cost nothing; 1 MiB changed writes about 1 MiB") {
  Fixture fx;
  WriteFile(fx.base + "/one", RandomString(kMiB, 3));
  WriteFile(fx.base + "/large", RandomString(32 * kMiB, 4));
  BuildSummary base = fx.BuildBase();
  REQUIRE(base.ingest.new_bytes == 33 * kMiB);

  SECTION("an empty upper dir reads and writes no chunk") {
    auto snap = fx.Snapshot("same");
    REQUIRE(snap.ok());
    CHECK(snap->files_read == 0);
    CHECK(snap->ingest.bytes_in == 0);
    CHECK(snap->ingest.new_chunks == 0);
    CHECK(snap->ingest.new_bytes == 0);
    CHECK(snap->files == 2);
    CHECK(snap->logical_bytes == 33 * kMiB);
    // Its chunks are the base's, in the base's packs.
    auto base_image = fs::LoadImage(*fx.store, base.image);
    auto snap_image = fs::LoadImage(*fx.store, snap->image);
    REQUIRE((base_image.ok() && snap_image.ok()));
    std::set<std::string> base_packs;
    for (const fs::PackRecord& p : (*base_image)->packs()) {
      base_packs.emplace(reinterpret_cast<const char*>(p.digest), 32);
    }
    REQUIRE(!(*snap_image)->packs().empty());
    for (const fs::PackRecord& p : (*snap_image)->packs()) {
      CHECK(base_packs.count(std::string(reinterpret_cast<const char*>(p.digest), 32)) == 1);
    }
    CHECK((*snap_image)->chunks().size() == (*base_image)->chunks().size());
  }
  SECTION("1 MiB changed in a 32 MiB file, the 1 MiB file untouched") {
    std::string data = RandomString(32 * kMiB, 4);
    std::string change = RandomString(kMiB, 5);
    data.replace(10 * kMiB, kMiB, change);
    WriteFile(fx.upper + "/large", data);
    auto snap = fx.Snapshot("changed");
    REQUIRE(snap.ok());
    UNSCOPED_INFO("new chunk bytes: " << snap->ingest.new_bytes
                  << ", written: " << snap->ingest.written_bytes);
    CHECK(snap->files_read == 1);
    CHECK(snap->ingest.bytes_in == 32 * kMiB);  // the copied-up file, not `one`
    // The changed MiB, and at most the chunks on either side of it that
    // content-defined chunking cuts differently (512 KiB each at most).
    CHECK(snap->ingest.new_bytes >= kMiB);
    CHECK(snap->ingest.new_bytes <= 2 * kMiB);
    // Random bytes do not compress: written is about the same.
    CHECK(snap->ingest.written_bytes <= 2 * kMiB + 64 * 1024);
  }
}

TEST_CASE("snapshot: 1 MiB changed in a 1 GiB image writes about 1 MiB of new chunk bytes") {
  Fixture fx;
  constexpr uint64_t kPiece = 64 * kMiB, kPieces = 16;  // 1 GiB, written a piece at a time
  stdfs::create_directories(fx.base);
  {
    std::ofstream out(fx.base + "/large", std::ios::binary);
    for (uint64_t i = 0; i < kPieces; ++i) out << RandomString(kPiece, 100 + i);
  }
  REQUIRE(stdfs::file_size(fx.base + "/large") == kPieces * kPiece);
  BuildSummary base = fx.BuildBase();
  REQUIRE(base.ingest.new_bytes == kPieces * kPiece);
  // The upper dir holds the copied-up file with one MiB rewritten in the middle.
  Sh("cp " + fx.base + "/large " + fx.upper + "/large");
  {
    std::fstream f(fx.upper + "/large", std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(517 * kMiB));
    f << RandomString(kMiB, 7);
  }
  CopyMeta(fx.base + "/large", fx.upper + "/large");
  auto snap = fx.Snapshot("changed");
  INFO(snap.status().ToString());
  REQUIRE(snap.ok());
  std::printf("1 MiB changed in a 1 GiB image: %llu new chunk bytes (%llu new chunks), %llu bytes written\n",
              static_cast<unsigned long long>(snap->ingest.new_bytes),
              static_cast<unsigned long long>(snap->ingest.new_chunks),
              static_cast<unsigned long long>(snap->ingest.written_bytes));
  CHECK(snap->files_read == 1);
  CHECK(snap->ingest.bytes_in == kPieces * kPiece);
  // The changed MiB and at most the chunks either side of it that
  // content-defined chunking cuts anew (512 KiB each at most).
  CHECK(snap->ingest.new_bytes >= kMiB);
  CHECK(snap->ingest.new_bytes <= 2 * kMiB);
  CHECK(snap->ingest.written_bytes <= 2 * kMiB + 64 * 1024);
}

TEST_CASE("snapshot: laid out over its base and stored as a delta, inode numbers kept") {
  Fixture fx;
  WriteFile(fx.base + "/etc/conf", "setting=1\n");
  WriteFile(fx.base + "/etc/other", "other");
  WriteFile(fx.base + "/etc/gone", "bye");
  Sh("ln -s conf " + fx.base + "/etc/link");
  for (int i = 0; i < 300; ++i) WriteFile(fx.base + "/many/f" + std::to_string(i), RandomString(64, i));
  BuildSummary base_summary = fx.BuildBase();
  Sh("cp -a " + fx.base + " " + fx.expected);
  const std::string& ex = fx.expected;
  const std::string& up = fx.upper;
  // Rewritten (a new inode in the upper dir), deleted, and added.
  Sh("echo setting=2 > " + ex + "/etc/conf && rm " + ex + "/etc/gone && echo new > " + ex + "/etc/added");
  stdfs::create_directories(up + "/etc");
  Sh("cp -a " + ex + "/etc/conf " + ex + "/etc/added " + up + "/etc/");
  Whiteout(up + "/etc/gone");
  for (const char* dir : {"", "/etc"}) CopyMeta(ex + dir, up + dir);

  auto base_id = fs::ResolveImage(*fx.store, "base");
  REQUIRE(base_id.ok());
  auto base = fs::LoadImage(*fx.store, *base_id);
  REQUIRE(base.ok());
  BuildOptions opt;
  opt.delta_root = base->get();
  opt.delta_root_id = *base_id;
  ImageBuilder b(fx.store.get(), opt);
  REQUIRE(b.AddImage(**base).ok());
  REQUIRE(b.AddOverlayUpper(up).ok());
  auto snap = b.Finish("snap");
  INFO(snap.status().ToString());
  REQUIRE(snap.ok());
  REQUIRE(snap->delta_of.has_value());
  CHECK(*snap->delta_of == *base_id);
  // Stored is the delta, a small part of the object it makes.
  UNSCOPED_INFO("delta " << snap->metadata_bytes << " B of an object of " << snap->object_bytes << " B");
  CHECK(snap->metadata_bytes * 4 < snap->object_bytes);
  CHECK(snap->object_bytes >= base_summary.object_bytes);

  auto image = fs::LoadImage(*fx.store, snap->image);
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  const fs::ImageReader& s = **image;
  const fs::ImageReader& o = **base;
  REQUIRE(s.delta_base().has_value());
  CHECK(*s.delta_base() == *base_id);
  auto at = [](const fs::ImageReader& r, const std::string& dir, const std::string& name) {
    auto d = r.Lookup(fs::kRootIno, dir);
    REQUIRE(d.has_value());
    return r.Lookup(*d, name);
  };
  // Directories and unchanged entries keep their numbers; so does the file
  // the sandbox rewrote (same path, same type).
  CHECK(s.Lookup(fs::kRootIno, "etc") == o.Lookup(fs::kRootIno, "etc"));
  CHECK(s.Lookup(fs::kRootIno, "many") == o.Lookup(fs::kRootIno, "many"));
  for (const char* name : {"conf", "other", "link"}) {
    INFO(name);
    auto was = at(o, "etc", name);
    REQUIRE(was.has_value());
    CHECK(at(s, "etc", name) == was);
  }
  CHECK(at(s, "many", "f299") == at(o, "many", "f299"));
  // The deleted file's number is a free inode: a regular file no one links.
  auto gone = at(o, "etc", "gone");
  REQUIRE(gone.has_value());
  CHECK(!at(s, "etc", "gone").has_value());
  CHECK(S_ISREG(s.inode(*gone).mode));
  CHECK(s.inode(*gone).nlink == 0);
  // The new file comes after the base's last inode.
  auto added = at(s, "etc", "added");
  REQUIRE(added.has_value());
  CHECK(*added == o.inode_count() + 1);
  CHECK(s.inode_count() == o.inode_count() + 1);

  // And it serves the merged tree.
  fx.MountAndCompare("snap", ex);
}

TEST_CASE("snapshot: redirected and metacopy upper entries are refused, naming the path") {
  Fixture fx;
  WriteFile(fx.base + "/d/f", "f");
  fx.BuildBase();
  std::string xattr = GENERATE(std::string("trusted.overlay.redirect"),
                               std::string("trusted.overlay.metacopy"));
  stdfs::create_directories(fx.upper + "/d");
  WriteFile(fx.upper + "/d/moved", "m");
  SetXattr(fx.upper + "/d/moved", xattr, "/elsewhere");
  auto snap = fx.Snapshot("refused");
  REQUIRE(!snap.ok());
  CHECK(snap.status().code() == StatusCode::kFailedPrecondition);
  CHECK(snap.status().message().find("'d/moved'") != std::string::npos);
  CHECK(snap.status().message().find(xattr) != std::string::npos);
}

TEST_CASE("snapshot: a base image must come first") {
  Fixture fx;
  WriteFile(fx.base + "/f", "f");
  fx.BuildBase();
  auto image = fs::LoadImage(*fx.store, *fs::ResolveImage(*fx.store, "base"));
  REQUIRE(image.ok());
  ImageBuilder b(fx.store.get(), {});
  REQUIRE(b.AddDirectory(fx.base).ok());
  CHECK(b.AddImage(**image).code() == StatusCode::kFailedPrecondition);
}

// The paths of what `path` loads in image `tag`, in load order.
std::vector<std::string> LoadsOf(chunkstore::ObjectStore& store, const std::string& tag,
                                 const std::string& path, size_t* early = nullptr) {
  auto id = fs::ResolveImage(store, tag);
  REQUIRE(id.ok());
  auto image = fs::LoadImage(store, *id);
  REQUIRE(image.ok());
  std::vector<std::string> paths = fs::InodePaths(**image);
  std::vector<std::string> out;
  for (uint32_t ino = 1; ino <= (*image)->inode_count(); ++ino) {
    if (paths[ino - 1] != path) continue;
    for (const fs::LoadRecord& l : (*image)->Loads(ino)) out.push_back(paths[l.dep - 1]);
    if (early != nullptr) *early = (*image)->Early(ino).size();
  }
  return out;
}

TEST_CASE("snapshot: base files keep what they load, found again where a library was replaced") {
  Fixture fx;
  Sh("mkdir -p " + fx.base + "/bin " + fx.base + "/lib64 " + fx.base + "/lib/x86_64-linux-gnu");
  Sh("cp /usr/bin/true " + fx.base + "/bin/true");
  Sh("cp -L /lib64/ld-linux-x86-64.so.2 " + fx.base + "/lib64/");
  Sh("cp -L /lib/x86_64-linux-gnu/libc.so.6 " + fx.base + "/lib/x86_64-linux-gnu/");
  fx.BuildBase();
  size_t base_early = 0;
  std::vector<std::string> base_loads = LoadsOf(*fx.store, "base", "/bin/true", &base_early);
  REQUIRE(base_loads.size() >= 2);  // the loader and libc
  CHECK(base_early > 0);

  SECTION("unchanged") {
    REQUIRE(fx.Snapshot("snap").ok());
  }
  SECTION("libc replaced in the upper directory") {
    Sh("mkdir -p " + fx.upper + "/lib/x86_64-linux-gnu && cp -a " + fx.base +
       "/lib/x86_64-linux-gnu/libc.so.6 " + fx.upper + "/lib/x86_64-linux-gnu/");
    for (const char* dir : {"", "/lib", "/lib/x86_64-linux-gnu"}) CopyMeta(fx.base + dir, fx.upper + dir);
    auto snap = fx.Snapshot("snap");
    REQUIRE(snap.ok());
    CHECK(snap->files_read == 1);
  }
  size_t early = 0;
  CHECK(LoadsOf(*fx.store, "snap", "/bin/true", &early) == base_loads);
  CHECK(early == base_early);
}

}  // namespace
}  // namespace ferry::builder
