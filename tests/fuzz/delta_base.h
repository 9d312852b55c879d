// The base image the delta inputs of image_reader_fuzz apply to, and what
// make_seeds builds its delta seed from (both must be the same bytes).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fs/image_writer.h"

namespace ferry::fuzz {

// A root with `n` symlinks and a subdirectory holding a file.
inline std::vector<uint8_t> DeltaFuzzImage(int n, uint32_t link_mode = 0777) {
  fs::ImageWriter w;
  fs::InodeSpec dir;
  dir.attr.mode = S_IFDIR | 0755;
  uint32_t root = w.AddInode(dir);
  w.inode(root).attr.parent = root;
  for (int i = 0; i < n; ++i) {
    fs::InodeSpec link;
    link.attr.mode = S_IFLNK | link_mode;
    link.attr.nlink = 1;
    link.symlink = "t" + std::to_string(i * 7919 % 1000);
    // AddInode may move the table: take the number before naming an entry.
    uint32_t ino = w.AddInode(link);
    w.inode(root).entries.emplace_back("e" + std::to_string(i * 31 % 997), ino);
  }
  uint32_t sub = w.AddInode(dir);
  w.inode(sub).attr.parent = root;
  w.inode(root).entries.emplace_back("sub", sub);
  fs::InodeSpec file;
  file.attr.mode = S_IFREG | 0644;
  file.attr.nlink = 1;
  file.xattrs = {{"user.k", "v"}};
  uint32_t f = w.AddInode(file);
  w.inode(sub).entries.emplace_back("f", f);
  return w.Serialize();
}

inline std::vector<uint8_t> DeltaFuzzBase() { return DeltaFuzzImage(24); }

}  // namespace ferry::fuzz
