// ferry_fuzz_make_seeds DIR: writes a few valid image metadata objects into
// DIR as the seed corpus of image_reader_fuzz, so that the fuzzer starts
// from well-formed structure (every section, sorted directories, xattrs,
// extents with holes, hard links, symlinks, device nodes) instead of having
// to discover the format from nothing.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "chunkstore/object_store.h"
#include "chunkstore/pack.h"
#include "fs/image_delta.h"
#include "fs/image_reader.h"
#include "fs/image_writer.h"
#include "tests/fuzz/delta_base.h"

namespace {

using ferry::fs::ImageWriter;
using ferry::fs::InodeSpec;

InodeSpec Node(uint32_t mode, uint64_t size = 0) {
  InodeSpec s;
  s.attr.mode = mode;
  s.attr.uid = 1000;
  s.attr.gid = 1000;
  s.attr.nlink = S_ISDIR(mode) ? 2 : 1;
  s.attr.size = size;
  s.attr.mtime_sec = 1700000000;
  s.attr.mtime_nsec = 123456789;
  s.attr.atime_sec = s.attr.ctime_sec = s.attr.mtime_sec;
  return s;
}

ferry::chunkstore::ChunkLocation Loc(uint8_t tag, uint8_t pack, uint64_t offset, uint32_t ulen) {
  ferry::chunkstore::ChunkLocation loc;
  loc.digest.bytes.fill(tag);
  loc.pack.bytes.fill(pack);
  loc.offset = offset;
  loc.clen = ulen / 2 + 9;
  loc.ulen = ulen;
  return loc;
}

// The root directory alone.
std::vector<uint8_t> EmptyRoot() {
  ImageWriter w;
  uint32_t root = w.AddInode(Node(S_IFDIR | 0755));
  w.inode(root).attr.parent = root;
  return w.Serialize();
}

// One of everything: files with extents and holes, a hard link, symlinks,
// xattrs, a subdirectory, device nodes, a FIFO and a socket.
std::vector<uint8_t> Mixed() {
  ImageWriter w;
  uint32_t root = w.AddInode(Node(S_IFDIR | 0755));
  w.inode(root).attr.parent = root;
  w.inode(root).xattrs = {{"user.root", "r"}, {"security.selinux", "system_u:object_r:x"}};

  uint32_t c0 = w.AddChunk(Loc(1, 1, 0, 4096));
  uint32_t c1 = w.AddChunk(Loc(2, 1, 2057, 100));
  uint32_t c2 = w.AddChunk(Loc(3, 2, 0, 65536));

  InodeSpec file = Node(S_IFREG | 0644, 4096 + 100);
  file.extents = {{0, c0}, {4096, c1}};
  file.xattrs = {{"user.b", "2"}, {"user.a", "1"}, {"trusted.c", std::string(300, 'v')}};
  uint32_t f = w.AddInode(file);

  InodeSpec sparse = Node(S_IFREG | 0600, 1 << 20);  // holes around one chunk
  sparse.extents = {{8192, c2}};
  uint32_t s = w.AddInode(sparse);

  uint32_t empty = w.AddInode(Node(S_IFREG | 0444, 0));

  InodeSpec link = Node(S_IFLNK | 0777);
  link.symlink = "sub/target";
  uint32_t l = w.AddInode(link);
  InodeSpec abs = Node(S_IFLNK | 0777);
  abs.symlink = "/etc/passwd";
  uint32_t a = w.AddInode(abs);

  uint32_t sub = w.AddInode(Node(S_IFDIR | 0700));
  w.inode(sub).attr.parent = root;
  InodeSpec chr = Node(S_IFCHR | 0600);
  chr.attr.rdev = makedev(1, 3);
  uint32_t dev = w.AddInode(chr);
  InodeSpec blk = Node(S_IFBLK | 0600);
  blk.attr.rdev = makedev(8, 0);
  uint32_t bdev = w.AddInode(blk);
  uint32_t fifo = w.AddInode(Node(S_IFIFO | 0644));
  uint32_t sock = w.AddInode(Node(S_IFSOCK | 0755));
  InodeSpec again = Node(S_IFREG | 0644, 100);  // same chunk as the first file
  again.extents = {{0, c1}};
  uint32_t f2 = w.AddInode(again);

  w.inode(f).attr.nlink = 2;
  w.inode(root).entries = {{"file", f},   {"hardlink", f}, {"sparse", s}, {"empty", empty},
                           {"link", l},   {"abs", a},      {"sub", sub},  {"fifo", fifo},
                           {"socket", sock}};
  w.inode(root).attr.nlink = 3;
  w.inode(sub).entries = {{"null", dev}, {"sda", bdev}, {"target", f2}, {std::string(255, 'n'), empty}};
  return w.Serialize();
}

// A chain of nested directories, each with a file.
std::vector<uint8_t> Deep(int depth) {
  ImageWriter w;
  uint32_t parent = w.AddInode(Node(S_IFDIR | 0755));
  w.inode(parent).attr.parent = parent;
  uint32_t chunk = w.AddChunk(Loc(7, 9, 0, 10));
  for (int i = 0; i < depth; ++i) {
    uint32_t dir = w.AddInode(Node(S_IFDIR | 0755));
    w.inode(dir).attr.parent = parent;
    InodeSpec file = Node(S_IFREG | 0644, 10);
    file.extents = {{0, chunk}};
    uint32_t f = w.AddInode(file);
    w.inode(parent).entries = {{"d" + std::to_string(i), dir}, {"f", f}};
    parent = dir;
  }
  return w.Serialize();
}

// A directory with many entries, for the binary search.
std::vector<uint8_t> Wide(int n) {
  ImageWriter w;
  uint32_t root = w.AddInode(Node(S_IFDIR | 0755));
  w.inode(root).attr.parent = root;
  std::vector<std::pair<std::string, uint32_t>> entries;
  for (int i = 0; i < n; ++i) {
    InodeSpec link = Node(S_IFLNK | 0777);
    link.symlink = "t" + std::to_string(i * 7919 % 1000);
    entries.emplace_back("e" + std::to_string(i * 31 % 997), w.AddInode(link));
  }
  w.inode(root).entries = std::move(entries);
  return w.Serialize();
}

bool Write(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  // A seed the reader refuses would be useless; check every one.
  auto reader = ferry::fs::ImageReader::Open(ferry::chunkstore::MakeBlob(bytes));
  if (!reader.ok()) {
    std::fprintf(stderr, "seed %s does not open: %s\n", name.c_str(),
                 reader.status().ToString().c_str());
    return false;
  }
  std::ofstream out(dir + "/" + name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::strcmp(argv[1], "--help") == 0) {
    std::fprintf(stderr, "usage: %s DIR\nWrites seed images for image_reader_fuzz into DIR.\n",
                 argv[0]);
    return argc == 2 ? 0 : 2;
  }
  std::string dir = argv[1];
  bool ok = Write(dir, "empty-root.img", EmptyRoot()) && Write(dir, "mixed.img", Mixed()) &&
            Write(dir, "deep.img", Deep(8)) && Write(dir, "wide.img", Wide(40));
  // A delta of the fuzzer's fixed base: one more entry, other modes.
  const std::vector<uint8_t> base = ferry::fuzz::DeltaFuzzBase();
  const std::vector<uint8_t> delta = ferry::fs::MakeDelta(
      base, ferry::Sha256(base), ferry::fuzz::DeltaFuzzImage(25, 0755));
  auto made = ferry::fs::ApplyDelta(delta, base);
  if (!made.ok() || !ferry::fs::ImageReader::Open(ferry::chunkstore::MakeBlob(*made)).ok()) {
    std::fprintf(stderr, "the delta seed does not rebuild an image\n");
    ok = false;
  } else {
    std::ofstream out(dir + "/delta.dlt", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(delta.data()), static_cast<std::streamsize>(delta.size()));
    ok = ok && out.good();
  }
  return ok ? 0 : 1;
}
